"""pymbrl.envs.minipacman: the vector API (spaces, same-step autoreset, info), returns, seeding,
each mode's rewards, refused inputs, the single-game env (env checker, registration, rendering),
game states, and the core against the pure-Python reference of the same rules."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import pymbrl.envs
from pymbrl.envs.minipacman import (ACTION_NAMES, MAP, MAX_ENVS, MAX_FRAMES, MAX_LEVEL, MODES, PALETTE, MiniPacmanEnv,
                                    MiniPacmanVectorEnv)

REFERENCE = Path(__file__).resolve().parents[2] / "bench" / "minipacman_reference.py"


def random_actions(n: int, steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5, (steps, n))


def trajectory(env: MiniPacmanVectorEnv, actions: np.ndarray) -> list[tuple]:
    out = []
    for a in actions:
        obs, rewards, terminated, truncated, info = env.step(a)
        out.append((obs, rewards, terminated, truncated, info["final_obs"]))
    return out


def same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(all(np.array_equal(x, y) for x, y in zip(s, t)) for s, t in zip(a, b))


def test_constants():
    assert MAP.shape == (15, 19) and MAP.dtype == np.uint8
    assert MAP[0].all() and MAP[:, 0].all() and (MAP == 0).sum() == 138
    assert not MAP.flags.writeable
    assert list(MODES) == ["regular", "avoid", "hunt", "ambush", "rush"]
    assert MODES["avoid"].level_timer == 128 and MODES["avoid"].death_reward == -20.0
    assert MODES["rush"].ends_level_on == "pills" and MODES["hunt"].ends_level_on == "ghosts"
    assert ACTION_NAMES == ("stay", "right", "up", "left", "down")
    assert PALETTE["pacman"] == (0, 255, 0) and PALETTE["wall"] == (255, 255, 255)


def test_vector_api_shapes_dtypes_and_spaces():
    env = MiniPacmanVectorEnv(num_envs=6, seed=0)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert env.single_observation_space == gym.spaces.Box(0, 255, (15, 19, 3), np.uint8)
    assert env.single_action_space == gym.spaces.Discrete(5)
    assert env.observation_space.shape == (6, 15, 19, 3) and env.action_space.shape == (6,)
    obs, info = env.reset()
    assert info == {} and obs.shape == (6, 15, 19, 3) and obs.dtype == np.uint8
    assert obs in env.observation_space
    obs, rewards, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (6, 15, 19, 3) and obs.dtype == np.uint8
    assert rewards.shape == (6,) and rewards.dtype == np.float32
    assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_ and terminated.shape == (6,)
    assert set(info) == {"final_obs", "_final_obs", "episode_return", "episode_length"}
    assert info["final_obs"].shape == (6, 15, 19, 3) and info["final_obs"].dtype == np.uint8
    assert info["_final_obs"].dtype == np.bool_ and info["episode_return"].dtype == np.float32
    assert info["episode_length"].dtype == np.int32
    # Each frame shows the map: white walls, and Pacman once.
    walls = (obs == PALETTE["wall"]).all(-1)
    assert (walls == MAP.astype(bool)[None]).all()
    assert ((obs == PALETTE["pacman"]).all(-1).sum((1, 2)) == 1).all()
    env.close()


def test_same_step_autoreset_gives_the_last_frame_in_final_obs():
    env = MiniPacmanVectorEnv(num_envs=16, seed=1)
    env.reset()
    ended_seen = 0
    for a in random_actions(16, 300):
        before = [env.get_state(i)["frame"] for i in range(16)]
        obs, rewards, terminated, truncated, info = env.step(a)
        ended = info["_final_obs"]
        assert (ended == (terminated | truncated)).all()
        assert not info["final_obs"][~ended].any()  # zeros where nothing ended
        assert (info["episode_length"][~ended] == 0).all() and (info["episode_return"][~ended] == 0).all()
        for i in np.flatnonzero(ended):
            ended_seen += 1
            assert info["episode_length"][i] == before[i] + 1
            assert env.get_state(i)["frame"] == 0  # already in its next episode
            assert not np.array_equal(info["final_obs"][i], obs[i])
            # The new episode's first frame: food on every free cell but the actors'.
            food = (obs[i] == PALETTE["food"]).all(-1).sum()
            assert food >= 138 - 4
    assert ended_seen > 20


def test_episode_return_is_the_sum_of_rewards_and_length_the_steps():
    env = MiniPacmanVectorEnv(num_envs=8, mode="avoid", frame_cap=60, seed=2)
    env.reset()
    sums, steps = np.zeros(8), np.zeros(8, dtype=int)
    ends = 0
    for a in random_actions(8, 400, seed=2):
        _, rewards, terminated, truncated, info = env.step(a)
        sums += rewards
        steps += 1
        for i in np.flatnonzero(info["_final_obs"]):
            ends += 1
            assert info["episode_return"][i] == pytest.approx(sums[i], abs=1e-4)
            assert info["episode_length"][i] == steps[i]
            sums[i], steps[i] = 0.0, 0
    assert ends > 30
    assert (steps <= 60).all()


def test_frame_cap_truncates_and_zero_means_never():
    env = MiniPacmanVectorEnv(num_envs=4, frame_cap=3, seed=3)
    env.reset()
    for t in range(3):
        _, _, terminated, truncated, info = env.step(np.zeros(4, dtype=np.int64))  # staying: ghosts are 5+ moves away
        assert not terminated.any()
        assert truncated.all() == (t == 2)
    assert (info["episode_length"] == 3).all()
    env = MiniPacmanVectorEnv(num_envs=4, frame_cap=0, seed=3)
    env.reset()
    for _ in range(30):
        _, _, _, truncated, _ = env.step(np.zeros(4, dtype=np.int64))
        assert not truncated.any()


def test_seed_reproduces_and_other_seeds_differ():
    actions = random_actions(5, 200, seed=4)
    runs = []
    for seed in (7, 7, 8):
        env = MiniPacmanVectorEnv(num_envs=5, seed=seed)
        env.reset()
        runs.append(trajectory(env, actions))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])
    # reset(seed=...) restarts every game's stream; torch actions act as numpy's.
    env = MiniPacmanVectorEnv(num_envs=5, seed=123)
    env.reset()
    env.step(actions[0])
    env.reset(seed=7)
    assert same(trajectory(env, torch.from_numpy(actions)), runs[0])
    # Threads change nothing but the speed.
    one, two = MiniPacmanVectorEnv(300, seed=5), MiniPacmanVectorEnv(300, seed=5, num_threads=2)
    assert two.num_threads == 2 and one.num_threads == 1
    one.reset(), two.reset()
    big = random_actions(300, 50, seed=5)
    assert same(trajectory(one, big), trajectory(two, big))


def test_returned_arrays_are_never_overwritten():
    env = MiniPacmanVectorEnv(num_envs=32, seed=6)
    obs, _ = env.reset()
    kept = [(obs, obs.copy())]
    for a in random_actions(32, 100, seed=6):
        obs, rewards, terminated, truncated, info = env.step(a)
        kept.append((obs, obs.copy()))
        kept.append((info["final_obs"], info["final_obs"].copy()))
        kept.append((rewards, rewards.copy()))
    assert all(np.array_equal(a, b) for a, b in kept)
    assert len({id(a) for a, _ in kept}) == len(kept)


# Per mode: (step, food) parts of the reward on the step Pacman dies, and rewards that random play shows.
MODE_SIGNATURES = {
    "regular": {1.0, 3.0},  # food; a pill (on food)
    "avoid": {0.1, 0.0},
    "hunt": {1.0},
    "ambush": {-0.1},
    "rush": {-0.1},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_each_modes_rewards_appear_and_death_terminates(mode):
    m = MODES[mode]
    env = MiniPacmanVectorEnv(num_envs=64, mode=mode, seed=9)
    env.reset()
    seen, deaths = set(), 0
    for a in random_actions(64, 300, seed=9):
        _, rewards, terminated, truncated, _ = env.step(a)
        seen.update(np.round(rewards.astype(np.float64), 4).tolist())
        assert not (terminated & truncated).any()
        for r in rewards[terminated]:
            deaths += 1
            # Dying pays the death reward once, besides the step and maybe the food under Pacman.
            assert any(np.isclose(r, m.death_reward + m.step_reward + food, atol=1e-5) for food in (0.0, m.food_reward))
    assert deaths > 20
    assert round(m.step_reward + m.food_reward, 4) in seen
    assert MODE_SIGNATURES[mode] <= seen, sorted(seen)


def test_bad_actions_are_refused_and_change_nothing():
    actions = random_actions(4, 60, seed=10)
    clean = MiniPacmanVectorEnv(num_envs=4, seed=11)
    clean.reset()
    expected = trajectory(clean, actions)
    env = MiniPacmanVectorEnv(num_envs=4, seed=11)
    env.reset()
    got = []
    for t, a in enumerate(actions):
        if t == 30:
            for bad, error, text in [
                (np.array([0, 1, 2, 5]), ValueError, r"actions: expected integers in \[0, 5\), got 5 at index 3"),
                (np.array([0, -1, 2, 1]), ValueError, "actions: expected integers in"),
                (np.array([0, 1, 2]), ValueError, r"actions: expected shape \(4,\), got \(3,\)"),
                (np.zeros((4, 1), dtype=np.int64), ValueError, "actions: expected shape"),
                (np.array([0.0, 1.0, 2.0, 3.0]), TypeError, "actions: expected integers, got dtype float64"),
                (np.array([True, False, True, False]), TypeError, "actions: expected integers, got dtype bool"),
                (torch.tensor([0.5, 1, 2, 3]), TypeError, "actions: expected integers"),
                ("abcd", TypeError, "actions: expected integers"),
                (None, TypeError, "actions"),
            ]:
                with pytest.raises(error, match=text):
                    env.step(bad)
        got.extend(trajectory(env, a[None]))
    assert same(got, expected)
    # Lists of ints are fine.
    env.step([0, 1, 2, 3])


def test_constructor_and_reset_refuse_bad_arguments():
    with pytest.raises(ValueError, match="mode: expected one of 'regular', 'avoid', 'hunt', 'ambush', 'rush', got 'easy'"):
        MiniPacmanVectorEnv(mode="easy")
    with pytest.raises(ValueError, match="num_envs: expected an integer >= 1, got 0"):
        MiniPacmanVectorEnv(num_envs=0)
    with pytest.raises(TypeError, match="num_envs: expected an integer"):
        MiniPacmanVectorEnv(num_envs=2.0)
    with pytest.raises(ValueError, match="frame_cap: expected an integer >= 0"):
        MiniPacmanVectorEnv(frame_cap=-1)
    # Sizes are bounded before anything is allocated (num_envs=2**40 used to try to allocate 2**40 games).
    with pytest.raises(ValueError, match=r"num_envs: expected an integer in \[1, 65536\], got 1099511627776"):
        MiniPacmanVectorEnv(num_envs=2**40)
    with pytest.raises(ValueError, match=r"num_envs: expected an integer in \[1, 65536\]"):
        MiniPacmanVectorEnv(num_envs=MAX_ENVS + 1)
    with pytest.raises(ValueError, match=r"frame_cap: expected an integer in \[0, 2147483647\]"):
        MiniPacmanVectorEnv(frame_cap=2**31)
    with pytest.raises(ValueError, match="frame_cap: expected an integer that fits in 64 bits"):
        MiniPacmanVectorEnv(frame_cap=2**70)
    with pytest.raises(ValueError, match=r"render_scale: expected an integer in \[1, 64\], got 100000"):
        MiniPacmanEnv(render_scale=100_000)
    with pytest.raises(ValueError, match="seed: expected an integer in"):
        MiniPacmanVectorEnv(seed=-1)
    with pytest.raises(ValueError, match="num_threads"):
        MiniPacmanVectorEnv(num_threads=0)
    env = MiniPacmanVectorEnv(num_envs=2, seed=0)
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step([0, 0])
    with pytest.raises(TypeError, match="seed"):
        env.reset(seed="1")
    with pytest.raises(ValueError, match="mode: expected one of"):
        MiniPacmanEnv(mode="Regular")
    with pytest.raises(ValueError, match="render_mode"):
        MiniPacmanEnv(render_mode="human")


def test_state_round_trip_replays_and_bad_states_are_refused():
    env = MiniPacmanVectorEnv(num_envs=3, mode="hunt", seed=12)
    env.reset()
    for a in random_actions(3, 20, seed=12):
        env.step(a)
    snapshot = env.get_state(1)
    assert snapshot["pacman"].shape == (2,) and snapshot["ghosts"].shape[1] == 3
    assert snapshot["food"].shape == (15, 19) and snapshot["food"].dtype == np.bool_
    assert snapshot["rng"].dtype == np.uint64
    later = random_actions(3, 100, seed=13)
    first = trajectory(env, later)
    frame = env.set_state(1, snapshot)
    assert frame.shape == (15, 19, 3)
    second = trajectory(env, later)
    assert all(np.array_equal(x[0][1], y[0][1]) and x[1][1] == y[1][1] for x, y in zip(first, second))

    # Placing actors: Pacman powered next to a ghost eats it (hunt: 10, and the last ghost ends the level).
    state = env.get_state(0)
    state.update(pacman=np.array([3, 1]), ghosts=np.array([[3, 2, 2]]), pills=np.zeros((0, 2), dtype=np.int64),
                 power=5, level=1)
    state["food"][:] = False
    frame = env.set_state(0, state)
    assert tuple(frame[3, 2]) == (255, round(255 * 5 / 20), 0) and tuple(frame[3, 1]) == PALETTE["pacman"]
    _, rewards, _, _, _ = env.step([1, 0, 0])
    assert rewards[0] == 10.0 and env.get_state(0)["level"] == 2

    bad = dict(state, ghosts=np.array([[0, 0, 0]]))
    with pytest.raises(ValueError, match=r"ghosts: expected a free cell of the 15x19 map, got \(0, 0\)"):
        env.set_state(0, bad)
    with pytest.raises(ValueError, match="power: expected an integer in"):
        env.set_state(0, dict(state, power=21))
    with pytest.raises(ValueError, match="ghosts: expected shape"):
        env.set_state(0, dict(state, ghosts=np.array([1, 2, 3])))
    with pytest.raises(KeyError, match="level"):
        env.set_state(0, {k: v for k, v in state.items() if k != "level"})
    with pytest.raises(IndexError, match="index"):
        env.get_state(3)
    with pytest.raises(TypeError, match="state: expected a dict"):
        env.set_state(0, [1, 2])


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("key, value, message", [
    # Each of these used to be accepted: level 2e9 laid out a ghost per level at the next level
    # change, a huge frame wrapped the int32 episode length, a NaN return came out as the return.
    ("level", 2_000_000_000, r"level: expected an integer in \[1, 1000\], got 2000000000"),
    ("level", MAX_LEVEL + 1, r"level: expected an integer in \[1, 1000\]"),
    ("frame", 2**40, r"frame: expected an integer in \[0, 1000\), got 1099511627776"),
    ("frame", 1000, r"frame: expected an integer in \[0, 1000\)"),
    ("timer", 2**62, r"timer: expected an integer in \[0, 128\)"),
    ("timer", 128, r"timer: expected an integer in \[0, 128\)"),
    ("episode_return", float("nan"), "episode_return: expected a finite number"),
    ("episode_return", float("inf"), "episode_return: expected a finite number"),
    ("episode_return", 1e300, "episode_return: expected a finite number within"),
    ("ghosts", np.array([[1, 1, 0]] * 2), "ghosts: expected at most 1 on level 1, got 2"),
    ("ghosts", np.ones((10**4, 3), dtype=np.int64), "ghosts: expected at most 500 rows"),
    ("rng", np.array([-1, 2, 3, 4]), r"rng: expected integers in \[0, 2\*\*64\), got -1 at index 0"),
    ("rng", np.zeros(4, dtype=np.uint64), "rng: expected a state with a non-zero word"),
    ("pacman", np.array([2**40, 1]), "pacman: expected a 32-bit integer"),
])
def test_set_state_bounds_every_field_and_changes_nothing_when_refused(key, value, message):
    env = MiniPacmanVectorEnv(num_envs=2, mode="avoid", seed=4)
    env.reset()
    for a in random_actions(2, 10, seed=4):
        env.step(a)
    state = env.get_state(0)
    state["level"] = 1
    state["ghosts"] = state["ghosts"][:1]
    env.set_state(0, state)
    before = [env.get_state(i) for i in range(2)]
    with pytest.raises(ValueError, match=message):
        env.set_state(0, {**state, key: value})
    assert all(_same_state(env.get_state(i), b) for i, b in enumerate(before))


def test_levels_and_episodes_are_bounded_so_no_counter_overflows():
    # The last food of the last level: the next level stays the last (its ghosts are laid out).
    env = MiniPacmanVectorEnv(num_envs=1, mode="regular", frame_cap=0, seed=5)
    env.reset()
    state = env.get_state(0)
    food = np.zeros((15, 19), dtype=bool)
    food[3, 2] = True
    state.update(pacman=np.array([3, 1]), ghosts=np.array([[13, 17, 2]]), pills=np.zeros((0, 2), dtype=np.int64),
                 food=food, level=MAX_LEVEL, frame=MAX_FRAMES - 1)
    env.set_state(0, state)
    _, _, terminated, truncated, info = env.step([1])
    # frame_cap=0 still ends an episode at MAX_FRAMES steps, whose length fits int32.
    assert truncated[0] and not terminated[0] and info["episode_length"][0] == MAX_FRAMES
    state.update(frame=10)
    env.set_state(0, state)
    env.step([1])
    after = env.get_state(0)
    assert after["level"] == MAX_LEVEL and len(after["ghosts"]) == (MAX_LEVEL + 1) // 2


def test_single_env_passes_the_env_checker():
    env = gym.make("pymbrl/MiniPacman-v0", render_mode="rgb_array")  # with a spec, so render modes are checked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_single_env_plays_an_episode_and_renders():
    env = MiniPacmanEnv(mode="avoid", frame_cap=500, seed=14, render_mode="rgb_array")
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    obs, info = env.reset(seed=14)
    assert obs.shape == (15, 19, 3) and info == {}
    image = env.render()
    assert image.shape == (120, 152, 3) and (image[::8, ::8] == obs).all()
    total, steps, over = 0.0, 0, False
    rng = np.random.default_rng(14)
    while not over:
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(5)))
        assert isinstance(reward, float)
        total += reward
        steps += 1
        over = terminated or truncated
    assert steps <= 500
    if terminated:  # the last frame still shows the death: a ghost on Pacman's cell shows Pacman
        assert (obs == PALETTE["pacman"]).all(-1).sum() == 1
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    with pytest.raises(ValueError, match=r"action: expected an integer in \[0, 5\), got 5"):
        env.reset()
        env.step(5)
    with pytest.raises(TypeError, match="action: expected an integer"):
        env.step(1.0)
    # The same seed, the same episode.
    a, _ = env.reset(seed=3)
    b, _ = MiniPacmanEnv(mode="avoid", frame_cap=500, seed=99).reset(seed=3)
    assert np.array_equal(a, b)


def test_registered_id():
    assert pymbrl.envs.MINIPACMAN_ID == "pymbrl/MiniPacman-v0"
    env = gym.make("pymbrl.envs:pymbrl/MiniPacman-v0", mode="hunt", frame_cap=50)
    assert isinstance(env.unwrapped, MiniPacmanEnv)
    assert env.unwrapped.mode == "hunt" and env.unwrapped.frame_cap == 50
    obs, _ = env.reset(seed=0)
    assert obs.shape == (15, 19, 3)
    env.close()


def _reference():
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} is not in this checkout")
    spec = importlib.util.spec_from_file_location("minipacman_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", list(MODES))
def test_core_plays_the_same_game_as_the_python_reference(mode):
    """The pure-Python statement of the rules, drawing from the core's generator, gives the same
    frames, rewards and ends step for step, across deaths, truncations and levels."""
    ref = _reference()
    seed = 2024
    env = MiniPacmanVectorEnv(num_envs=1, mode=mode, frame_cap=150, seed=seed)
    game = ref.MiniPacman(mode, frame_cap=150, rng=ref.Xoshiro256.for_game(seed, 0))
    obs, _ = env.reset()
    assert np.array_equal(obs[0], game.render())
    rng = np.random.default_rng(15)
    levels, ends = set(), 0
    for t in range(2500):
        # Mostly keep going one way, so that Pacman clears corridors and sometimes levels.
        action = int(rng.integers(5)) if t % 4 == 0 else ([1, 2, 3, 4][(t // 12) % 4])
        obs, rewards, terminated, truncated, info = env.step([action])
        frame, reward, dead, cut = game.step(action)
        assert np.array_equal(info["final_obs"][0] if info["_final_obs"][0] else obs[0], frame), t
        assert (rewards[0], terminated[0], truncated[0]) == (np.float32(reward), dead, cut), t
        levels.add(game.level)
        if dead or cut:
            ends += 1
            assert np.array_equal(obs[0], game.reset())
    assert ends > 10
    if mode == "avoid":
        assert max(levels) >= 2
