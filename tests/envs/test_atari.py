"""pymbrl.envs.atari: the vector API (spaces, frame stack, same-step autoreset, info), FIRE and
lives in Breakout, reward clipping against the unclipped returns, seeding, game states through
torch.save, and refused inputs."""

from __future__ import annotations

import io
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from pymbrl.envs.atari import SCREEN_SHAPE, AtariVectorEnv
from pymbrl.models.env_model import to_planes

pytest.importorskip("ale_py")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_actions(n: int, steps: int, seed: int = 0, num_actions: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_actions, (steps, n))


def trajectory(env: AtariVectorEnv, actions: np.ndarray, game: int | None = None) -> list[tuple]:
    """Every step's (obs, rewards, terminated, truncated, final_obs, episode_return, episode_length),
    of one game when ``game`` is given."""
    out = []
    pick = slice(None) if game is None else game
    for a in actions:
        obs, rewards, terminated, truncated, info = env.step(a)
        out.append(tuple(x[pick] for x in (obs, rewards, terminated, truncated, info["final_obs"],
                                           info["episode_return"], info["episode_length"])))
    return out


def halfway(num_envs: int, steps: int, seed: int) -> tuple[AtariVectorEnv, np.ndarray, list[tuple], list[tuple]]:
    """Random actions, the trajectory of an env that plays them all, and a twin env stopped halfway
    with the trajectory so far: a refused call on the twin must leave it to finish the same way."""
    actions = random_actions(num_envs, steps, seed=seed)
    clean = AtariVectorEnv(num_envs=num_envs, seed=seed + 1)
    clean.reset()
    expected = trajectory(clean, actions)
    env = AtariVectorEnv(num_envs=num_envs, seed=seed + 1)
    env.reset()
    return env, actions, expected, trajectory(env, actions[:steps // 2])


def same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(all(np.array_equal(x, y) for x, y in zip(s, t)) for s, t in zip(a, b))


def only_plain_values(value) -> bool:
    """True when ``value`` holds only tensors, Python ints/floats/bools/str, lists and dicts."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and only_plain_values(v) for k, v in value.items())
    if isinstance(value, list):
        return all(only_plain_values(v) for v in value)
    return isinstance(value, (torch.Tensor, bool, int, float, str))


def through_torch_save(state: dict) -> dict:
    f = io.BytesIO()
    torch.save(state, f)
    f.seek(0)
    return torch.load(f, weights_only=True)


def test_spaces_shapes_and_dtypes():
    env = AtariVectorEnv("ALE/Breakout-v5", num_envs=3, seed=0)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert env.single_observation_space == gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert env.single_action_space == gym.spaces.Discrete(4)
    assert env.action_meanings == ("NOOP", "FIRE", "RIGHT", "LEFT")
    assert env.observation_space.shape == (3, 84, 84, 4) and env.action_space.shape == (3,)
    obs, info = env.reset()
    assert info == {} and obs.shape == (3, 84, 84, 4) and obs.dtype == np.uint8 and obs in env.observation_space
    assert to_planes(obs).shape == (3, 4, 84, 84)
    obs, rewards, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (3, 84, 84, 4) and obs.dtype == np.uint8
    assert rewards.shape == (3,) and rewards.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool and terminated.shape == truncated.shape == (3,)
    assert set(info) == {"final_obs", "_final_obs", "episode_return", "episode_length"}
    assert info["final_obs"].shape == (3, 84, 84, 4) and info["final_obs"].dtype == np.uint8
    assert info["_final_obs"].dtype == bool and info["episode_return"].dtype == np.float32
    assert info["episode_length"].dtype == np.int32
    env.close()

    small = AtariVectorEnv("ALE/Pong-v5", num_envs=1, seed=0, frame_stack=2, screen_size=42, frame_skip=1)
    assert small.single_observation_space.shape == (42, 42, 2) and small.single_action_space.n == 6
    assert small.reset()[0].shape == (1, 42, 42, 2) and small.step([0])[0].shape == (1, 42, 42, 2)


def test_newest_frame_is_last_and_the_stack_shifts_by_one():
    env = AtariVectorEnv(num_envs=2, seed=1)
    obs, _ = env.reset()
    # A new episode repeats its first frame.
    assert all(np.array_equal(obs[..., 0], obs[..., k]) for k in range(1, 4))
    changed = False
    for a in random_actions(2, 30, seed=1):
        new, *_ = env.step(a)
        assert np.array_equal(new[..., :-1], obs[..., 1:])
        changed |= not np.array_equal(new[..., -1], obs[..., -1])
        obs = new
    assert changed  # the ball moves: the frame coming in last is a new one
    # The same frames reach to_planes' channel dimension in the same order.
    assert torch.equal(to_planes(obs)[:, -1], torch.from_numpy(obs[..., -1]).float() / 255)


def test_frames_are_the_max_of_each_steps_last_two_frames_in_gray_resized_by_area():
    """Against ALE driven by hand: no noops, FIRE for 4 frames, then 4 frames an action."""
    import ale_py

    env = AtariVectorEnv(num_envs=1, seed=0, noop_max=0)
    obs, _ = env.reset()
    ale = ale_py.ALEInterface()
    ale.setFloat("repeat_action_probability", 0.0)  # ALE's own default is 0.25
    ale.loadROM(str(ale_py.roms.get_rom_path("breakout")))
    ale.reset_game()

    def play(code: int) -> tuple[np.ndarray, np.ndarray]:
        screens = []
        for _ in range(4):
            ale.act(code)
            screens.append(ale.getScreenGrayscale())
        return screens[-2], screens[-1]

    def resize(screen: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(screen)[None, None].float()
        return torch.nn.functional.interpolate(x, size=(84, 84), mode="area")[0, 0].round().to(torch.uint8).numpy()

    def close(a: np.ndarray, b: np.ndarray) -> bool:
        # The env pools games in one channels-last batch: its sums may round the other way at .5.
        return np.abs(a.astype(int) - b).max() <= 1 and (a != b).mean() < 0.01

    older, newer = play(1)
    assert close(obs[0, ..., -1], resize(np.maximum(older, newer)))
    max_mattered = False
    lives = ale.lives()
    for a in random_actions(1, 40, seed=20)[:, 0]:
        obs, *_ = env.step([a])
        older, newer = play([0, 1, 3, 4][a])
        if ale.lives() < lives:
            older, newer = play(1)
        lives = ale.lives()
        assert close(obs[0, ..., -1], resize(np.maximum(older, newer)))
        max_mattered |= not close(obs[0, ..., -1], resize(newer))
    assert max_mattered  # the moving ball shows in both frames


def test_fire_launches_the_ball_on_reset_and_after_every_lost_life():
    """With NOOP only, Breakout's ball is served only by the env's own FIRE presses; the fixed
    paddle misses it five times and the game ends. Without them the ball never leaves (and no
    life is lost), so the episode would run into max_episode_steps."""
    env = AtariVectorEnv(num_envs=1, seed=2, max_episode_steps=1000)
    env.reset()
    lives = [env.get_state(0)["lives"]]
    for t in range(1000):
        _, _, terminated, truncated, info = env.step([0])
        if terminated[0]:
            break
        lives.append(env.get_state(0)["lives"])
    assert terminated[0] and not truncated[0], "the game never ended: the ball was not served"
    assert lives[0] == 5 and sorted(set(lives), reverse=True) == [5, 4, 3, 2, 1]
    assert info["_final_obs"][0] and info["episode_length"][0] == t + 1 < 400
    assert env.get_state(0)["lives"] == 5 and env.get_state(0)["episode_length"] == 0  # the next episode


def test_reward_clipping_and_unclipped_episode_returns():
    """Asterix pays 50 points and more an object: clipped rewards are their signs, episode returns
    the unclipped sums; max_episode_steps truncates every game at the same step."""
    actions = random_actions(2, 75, seed=3, num_actions=9)
    runs = {}
    for clip in (True, False):
        env = AtariVectorEnv("ALE/Asterix-v5", num_envs=2, seed=4, clip_rewards=clip, max_episode_steps=30)
        assert "FIRE" not in env.action_meanings
        env.reset()
        runs[clip] = trajectory(env, actions)
    clipped = np.stack([step[1] for step in runs[True]])
    raw = np.stack([step[1] for step in runs[False]])
    assert (raw > 1).any() and np.array_equal(clipped, np.sign(raw))
    for clip in (True, False):
        truncated = np.stack([step[3] for step in runs[clip]])
        terminated = np.stack([step[2] for step in runs[clip]])
        assert not terminated.any() and truncated[[29, 59]].all() and truncated.sum() == 4
        for t in (29, 59):
            assert np.array_equal(runs[clip][t][5], raw[t - 29:t + 1].sum(0))  # episode_return
            assert np.array_equal(runs[clip][t][6], [30, 30])  # episode_length
        assert not np.stack([step[5] for step in runs[clip]])[truncated.sum(1) == 0].any()


def test_same_step_autoreset_fills_final_obs_only_where_a_game_ended():
    env = AtariVectorEnv(num_envs=3, seed=5, max_episode_steps=20, clip_rewards=False)
    obs, _ = env.reset()
    # Game 1 takes the state of a game 12 steps into its episode, so it alone reaches the limit
    # after 8 steps. (States are checksummed: they come from get_state, not from edits.)
    donor = AtariVectorEnv(num_envs=1, seed=6, max_episode_steps=20, clip_rewards=False)
    donor.reset()
    trajectory(donor, random_actions(1, 12, seed=6))
    state = donor.get_state(0)
    assert state["episode_length"] == 12
    obs[1] = env.set_state(1, state)
    score = state["episode_return"]
    for t, a in enumerate(random_actions(3, 8, seed=5)):
        new, rewards, terminated, truncated, info = env.step(a)
        score += rewards[1]
        ended = info["_final_obs"]
        if t < 7:
            assert not ended.any() and not info["final_obs"].any()
            assert not info["episode_return"].any() and not info["episode_length"].any()
        else:
            assert ended.tolist() == [False, True, False] and truncated.tolist() == ended.tolist()
            assert not terminated.any() and not info["final_obs"][[0, 2]].any()
            assert np.array_equal(info["final_obs"][1][..., :-1], obs[1][..., 1:])
            assert info["episode_length"].tolist() == [0, 20, 0]
            assert info["episode_return"].tolist() == [0.0, score, 0.0]
            # Game 1 starts over (its first frame, repeated); the others go on.
            assert all(np.array_equal(new[1][..., 0], new[1][..., k]) for k in range(1, 4))
            assert np.array_equal(new[[0, 2]][..., :-1], obs[[0, 2]][..., 1:])
            assert env.get_state(1)["episode_length"] == 0 and env.get_state(0)["episode_length"] == 8
        obs = new


def test_seeds_reproduce_bit_for_bit_and_differ_between_seeds_and_games():
    actions = random_actions(3, 40, seed=6)
    a = AtariVectorEnv(num_envs=3, seed=7, repeat_action_probability=0.25)
    first = a.reset()[0]
    expected = trajectory(a, actions)
    b = AtariVectorEnv(num_envs=3, seed=123, repeat_action_probability=0.25)
    assert np.array_equal(b.reset(seed=7)[0], first)
    assert same(trajectory(b, actions), expected)
    # A seeded reset starts over however far the games went (the emulators' own state included).
    assert np.array_equal(a.reset(seed=7)[0], first)
    assert same(trajectory(a, actions), expected)
    # An unseeded reset goes on with the streams: new episodes.
    a.reset()
    assert not same(trajectory(a, actions), expected)
    # Other seeds, and the games of one seed, start from other noop counts and play differently.
    other = AtariVectorEnv(num_envs=3, seed=8, repeat_action_probability=0.25)
    other.reset()
    assert not same(trajectory(other, actions), expected)
    frames = np.stack([step[0] for step in expected])
    assert not np.array_equal(frames[:, 0], frames[:, 1]) or not np.array_equal(frames[:, 0], frames[:, 2])


@pytest.mark.parametrize("sticky", [0.0, 0.25])
def test_get_state_set_state_replays_the_game_through_torch_save(sticky):
    actions = random_actions(2, 200, seed=9)
    env = AtariVectorEnv(num_envs=2, seed=10, repeat_action_probability=sticky, max_episode_steps=70)
    env.reset()
    trajectory(env, random_actions(2, 25, seed=11))
    state = env.get_state(0)
    assert only_plain_values(state) and state["game"] == "breakout"
    assert state["frames"].dtype == torch.uint8 and tuple(state["frames"].shape) == (84, 84, 4)
    assert tuple(state["screen"].shape) == SCREEN_SHAPE and state["emulator"].dim() == 1
    obs_at_state = state["frames"].numpy().copy()
    loaded = through_torch_save(state)
    expected = trajectory(env, actions, game=0)
    # Episodes end (truncated at 70 steps) inside the replay: the new episodes' noops come from the
    # restored generator.
    assert any(step[3] for step in expected)

    # Back into the same game after it moved on, and into another game of a fresh env.
    assert np.array_equal(env.set_state(0, loaded), obs_at_state)
    assert same(trajectory(env, actions, game=0), expected)
    fresh = AtariVectorEnv(num_envs=2, seed=99, repeat_action_probability=sticky, max_episode_steps=70)
    fresh.reset()
    assert np.array_equal(fresh.set_state(1, loaded), obs_at_state)
    assert same(trajectory(fresh, actions[:, ::-1], game=1), expected)
    # get_state hands out copies.
    again = fresh.get_state(1)
    again["frames"].zero_()
    again["screen"].zero_()
    assert fresh.get_state(1)["frames"].any() and fresh.get_state(1)["screen"].any()


def test_refused_states_name_the_key_and_change_nothing():
    env, actions, expected, got = halfway(2, 40, seed=12)
    good = env.get_state(0)
    pong = AtariVectorEnv("ALE/Pong-v5", num_envs=1, seed=0)
    pong.reset()
    pong_emulator = pong.get_state(0)["emulator"]
    without = {k: v for k, v in good.items() if k != "frames"}
    for bad, text in [
        (without, "state: missing key 'frames'"),
        ({**good, "extra": 1}, "state: unknown key 'extra'"),
        ({**good, "game": "pong"}, r"state\['game'\]: expected 'breakout', got 'pong'"),
        ({**good, "frames": good["frames"][:, :, :3]}, r"state\['frames'\]: expected a uint8 tensor \[84, 84, 4\]"),
        ({**good, "frames": good["frames"].float()}, r"state\['frames'\]: expected a uint8 tensor"),
        ({**good, "screen": good["screen"][:100]}, r"state\['screen'\]: expected a uint8 tensor \[210, 160\]"),
        ({**good, "emulator": good["emulator"][:100]}, r"state\['emulator'\]: checksum mismatch for game 0"),
        ({**good, "emulator": pong_emulator}, r"state\['emulator'\]: checksum mismatch for game 0"),
        ({**good, "emulator": "abc"}, r"state\['emulator'\]: expected a uint8 tensor"),
        ({**good, "rng": {"bit_generator": "PCG64"}}, r"state\['rng'\]"),
        ({**good, "lives": -1}, r"state\['lives'\]: expected an integer >= 0"),
        ({**good, "lives": 2.0}, r"state\['lives'\]: expected an integer"),
        ({**good, "episode_return": float("nan")}, r"state\['episode_return'\]"),
        ({**good, "episode_length": "3"}, r"state\['episode_length'\]"),
        ({**good, "previous_action": 18}, r"state\['previous_action'\]"),
        ({**good, "lives": 10**30}, r"state\['lives'\]: expected an integer in \[0, 255\]"),
        ({**good, "episode_length": 27_000}, r"state\['episode_length'\]: expected an integer in \[0, 26999\]"),
        ({**good, "episode_length": good["episode_length"] + 1}, r"state\['episode_length'\]: checksum mismatch"),
        ({**good, "episode_return": good["episode_return"] + 1.0}, r"state\['episode_return'\]: checksum mismatch"),
        ({**good, "settings": {**good["settings"], "frame_skip": 3}},
         r"state\['settings'\]\['frame_skip'\]: expected 4 \(this env's\), got 3"),
        ({**good, "settings": None}, r"state\['settings'\]: expected a dict"),
        ({**good, "checksum": "0" * 32}, r"state\['checksum'\]: expected a dict"),
        ({**good, "checksum": {**good["checksum"], "state": "0" * 32}}, r"state: its fields come from different"),
        ([1, 2], "state: expected a dict"),
    ]:
        with pytest.raises(ValueError, match=text):
            env.set_state(0, bad)
    with pytest.raises(IndexError, match=r"index: expected an integer in \[0, 2\), got 2"):
        env.set_state(2, good)
    got.extend(trajectory(env, actions[20:]))
    assert same(got, expected)


def _flipped(t: torch.Tensor, bit: int) -> torch.Tensor:
    out = t.clone()
    out[bit // 8] ^= 1 << (bit % 8)
    return out


def test_corrupted_emulator_bytes_never_reach_ale():
    # Half of 400 bit-flipped emulator states used to be accepted, and one crashed ALE at the next
    # step: every flip and truncation is now refused by the checksum, naming the game and the field.
    env, actions, expected, got = halfway(2, 30, seed=15)
    good = env.get_state(1)
    emulator = good["emulator"]
    rng = np.random.default_rng(0)
    for bit in [0, 7, *rng.integers(0, 8 * len(emulator), 60).tolist(), 8 * len(emulator) - 1]:
        with pytest.raises(ValueError, match=r"state\['emulator'\]: checksum mismatch for game 1"):
            env.set_state(1, {**good, "emulator": _flipped(emulator, bit)})
    for size in (0, 1, len(emulator) // 2, len(emulator) - 1):
        with pytest.raises(ValueError, match=r"state\['emulator'\]: checksum mismatch for game 1"):
            env.set_state(1, {**good, "emulator": emulator[:size].clone()})
    for key in ("screen", "frames"):
        with pytest.raises(ValueError, match=rf"state\['{key}'\]: checksum mismatch for game 1"):
            env.set_state(1, {**good, key: _flipped(good[key].reshape(-1), 5).reshape(good[key].shape)})
    rng_state = {**good["rng"], "state": {**good["rng"]["state"], "state": good["rng"]["state"]["state"] ^ 1}}
    with pytest.raises(ValueError, match=r"state\['rng'\]: checksum mismatch for game 1"):
        env.set_state(1, {**good, "rng": rng_state})
    # Fields of two valid states mixed together are refused as well.
    other = env.get_state(0)
    mixed = {**good, "emulator": other["emulator"],
             "checksum": {**good["checksum"], "emulator": other["checksum"]["emulator"]}}
    with pytest.raises(ValueError, match="state: its fields come from different"):
        env.set_state(1, mixed)
    got.extend(trajectory(env, actions[15:]))
    assert same(got, expected)


def test_states_of_other_settings_are_refused():
    env = AtariVectorEnv(num_envs=1, seed=0, max_episode_steps=100)
    env.reset()
    other = AtariVectorEnv(num_envs=1, seed=0)
    other.reset()
    with pytest.raises(ValueError, match=r"state\['settings'\]\['max_episode_steps'\]: expected 27000"):
        other.set_state(0, env.get_state(0))


def test_bad_actions_are_refused_and_change_nothing():
    env, actions, expected, got = halfway(3, 30, seed=14)
    for bad, error, text in [
        (np.array([0, 1, 4]), ValueError, r"actions: expected integers in \[0, 4\), got 4 at index 2"),
        (np.array([0, -1, 2]), ValueError, r"actions: expected integers in \[0, 4\), got -1 at index 1"),
        (np.array([0, 1]), ValueError, r"actions: expected shape \(3,\), got \(2,\)"),
        (np.zeros((3, 1), dtype=np.int64), ValueError, "actions: expected shape"),
        (np.array([0.0, 1.0, 2.0]), TypeError, "actions: expected integers, got dtype float64"),
        (np.array([True, False, True]), TypeError, "actions: expected integers, got dtype bool"),
        (torch.tensor([0.5, 1, 2]), TypeError, "actions: expected integers"),
        ("abc", TypeError, "actions: expected integers"),
        (None, TypeError, "actions"),
    ]:
        with pytest.raises(error, match=text):
            env.step(bad)
    got.extend(trajectory(env, actions[15:]))
    assert same(got, expected)
    env.step([0, 1, 2])
    env.step(torch.tensor([3, 2, 1]))


def test_constructor_refuses_bad_arguments(monkeypatch):
    for env_id in ("ALE/NoSuchGame-v5", "ALE/Breakout-v4", "BreakoutNoFrameskip-v4", "CartPole-v1", "Breakout"):
        with pytest.raises(ValueError, match=f"env_id: expected the id of an ale-py game.*got '{env_id}'"):
            AtariVectorEnv(env_id, num_envs=1)
    with pytest.raises(TypeError, match="env_id: expected a str"):
        AtariVectorEnv(3, num_envs=1)
    for kwargs, text in [
        ({"num_envs": 0}, "num_envs: expected an integer >= 1"),
        ({"num_envs": 2.0}, "num_envs: expected an integer"),
        ({"noop_max": -1}, "noop_max: expected an integer >= 0"),
        ({"frame_skip": 0}, "frame_skip: expected an integer >= 1"),
        ({"frame_stack": 0}, "frame_stack: expected an integer >= 1"),
        ({"screen_size": 0}, "screen_size: expected an integer >= 1"),
        ({"clip_rewards": 1}, "clip_rewards: expected a bool"),
        ({"repeat_action_probability": 1.5}, "repeat_action_probability: expected a finite number in"),
        ({"max_episode_steps": -1}, "max_episode_steps: expected an integer >= 0"),
        # Sizes are bounded before any emulator or array is made (num_envs=10**6 used to load a
        # million ROMs; frame_stack=10**9 to allocate a 7 TB observation buffer).
        ({"num_envs": 10**6}, r"num_envs: expected an integer in \[1, 1024\], got 1000000"),
        ({"frame_stack": 10**9}, r"frame_stack: expected an integer in \[1, 64\]"),
        ({"screen_size": 10**5}, r"screen_size: expected an integer in \[1, 1024\]"),
        ({"frame_skip": 10**9}, r"frame_skip: expected an integer in \[1, 1000\]"),
        ({"noop_max": 10**9}, r"noop_max: expected an integer in \[0, 10000\]"),
        ({"num_envs": 1024, "screen_size": 1024, "frame_stack": 64}, "num_envs: expected num_envs \\* screen_size"),
        ({"max_episode_steps": 2**31}, r"max_episode_steps: expected an integer in \[0, 2147483647\]"),
        ({"seed": -1}, "seed: expected an integer in"),
    ]:
        with pytest.raises(ValueError, match=text):
            AtariVectorEnv(**{"num_envs": 1, **kwargs})
    monkeypatch.setitem(sys.modules, "ale_py", None)
    with pytest.raises(ValueError, match=r"env_id: ALE/Breakout-v5: ale-py is not installed: .*'pymbrl\[atari\]'"):
        AtariVectorEnv("ALE/Breakout-v5", num_envs=1)


def test_step_and_states_before_reset_and_after_close():
    env = AtariVectorEnv(num_envs=2, seed=0)
    with pytest.raises(gym.error.ResetNeeded, match="step: call reset"):
        env.step([0, 0])
    with pytest.raises(gym.error.ResetNeeded):
        env.get_state(0)
    env.reset()
    env.step([0, 0])
    env.close()
    with pytest.raises(gym.error.ClosedEnvironmentError, match="step: the env is closed"):
        env.step([0, 0])
    with pytest.raises(gym.error.ResetNeeded):
        env.get_state(0)
    with pytest.raises(gym.error.ClosedEnvironmentError):
        env.reset()
