"""pymbrl.envs.atari.AtariVectorEnv(backend="ale-py"): ale-py's threaded vector env inside pymbrl's
contract: the frames ale-py makes, laid out frames last; the info keys of every step; unclipped
episode returns; truncation in agent steps; seeds that reproduce; no per-game states; refused
inputs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from pymbrl.envs.atari import AtariVectorEnv

pytest.importorskip("ale_py.vector_env")


def play(env: AtariVectorEnv, actions: np.ndarray) -> list[tuple]:
    """Every step's (obs, rewards, terminated, truncated, final_obs, episode_return, episode_length)."""
    out = []
    for a in actions:
        obs, rewards, terminated, truncated, info = env.step(a)
        assert set(info) == {"final_obs", "_final_obs", "episode_return", "episode_length"}
        assert np.array_equal(info["_final_obs"], terminated | truncated)
        out.append((obs, rewards, terminated, truncated, info["final_obs"], info["episode_return"],
                    info["episode_length"]))
    return out


def same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(all(np.array_equal(x, y) for x, y in zip(s, t)) for s, t in zip(a, b))


def random_actions(n: int, steps: int, seed: int = 0, num_actions: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_actions, (steps, n))


def test_frames_are_ale_pys_laid_out_frames_last_with_pymbrls_spaces():
    from ale_py.vector_env import AtariVectorEnv as AleVectorEnv

    env = AtariVectorEnv("ALE/Breakout-v5", num_envs=2, seed=0, backend="ale-py", num_threads=1)
    assert env.single_observation_space == gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert env.action_meanings == ("NOOP", "FIRE", "RIGHT", "LEFT")
    obs, info = env.reset()
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8 and info == {}
    # ale-py's own env, given the seeds this env drew for its games, makes the same frames.
    seeds = np.array([int(np.random.Generator(np.random.PCG64(np.random.SeedSequence(0, spawn_key=(i,))))
                          .integers(0, 2**31 - 1)) for i in range(2)])
    peer = AleVectorEnv("breakout", 2, num_threads=1, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
                        reward_clipping=False, max_num_frames_per_episode=2**31 - 1)
    theirs, _ = peer.reset(seed=seeds)
    assert np.array_equal(obs, theirs.transpose(0, 2, 3, 1))
    for a in random_actions(2, 30, seed=1):
        obs, rewards, *_ = env.step(a)
        theirs, scores, *_ = peer.step(a)
        assert np.array_equal(obs, theirs.transpose(0, 2, 3, 1)) and np.array_equal(rewards, np.sign(scores))
        assert obs.flags.c_contiguous and rewards.dtype == np.float32
    peer.close()
    # Newest frame last: the stack shifts by one each step.
    new, *_ = env.step(np.array([0, 0]))
    assert np.array_equal(new[..., :-1], obs[..., 1:])


def test_game_overs_autoreset_with_final_obs_and_unclipped_returns():
    """Pressing FIRE and never moving loses Breakout's five lives in about 120 steps."""
    env = AtariVectorEnv(num_envs=2, seed=3, backend="ale-py", clip_rewards=False)
    obs, _ = env.reset()
    steps = play(env, np.ones((300, 2), np.int64))
    terminated = np.stack([s[2] for s in steps])
    assert terminated.any(0).all() and not np.stack([s[3] for s in steps]).any()
    rewards = np.stack([s[1] for s in steps])
    for game in range(2):
        end = int(np.flatnonzero(terminated[:, game])[0])
        _, _, _, _, final_obs, episode_return, episode_length = steps[end]
        assert episode_length[game] == end + 1 and episode_return[game] == rewards[:end + 1, game].sum()
        # The last observation continues the one before; the new episode's does not.
        before = steps[end - 1][0][game]
        assert np.array_equal(final_obs[game][..., :-1], before[..., 1:])
        assert not np.array_equal(steps[end][0][game][..., :-1], before[..., 1:])
        others = [t for t in range(300) if not terminated[t, game]]
        assert not any(steps[t][4][game].any() or steps[t][5][game] or steps[t][6][game] for t in others)


def test_clipped_rewards_are_signs_and_truncation_counts_agent_steps():
    """Asterix pays 50 points and more an object."""
    actions = random_actions(2, 65, seed=3, num_actions=9)
    runs = {}
    for clip in (True, False):
        env = AtariVectorEnv("ALE/Asterix-v5", num_envs=2, seed=4, clip_rewards=clip, max_episode_steps=30,
                             backend="ale-py", num_threads=2)
        env.reset()
        runs[clip] = play(env, actions)
    raw = np.stack([s[1] for s in runs[False]])
    assert (raw > 1).any() and np.array_equal(np.stack([s[1] for s in runs[True]]), np.sign(raw))
    assert same([s[:1] + s[2:] for s in runs[True]], [s[:1] + s[2:] for s in runs[False]])
    steps = runs[False]
    truncated = np.stack([s[3] for s in steps])
    assert not np.stack([s[2] for s in steps]).any() and truncated[[29, 59]].all() and truncated.sum() == 4
    for t in (29, 59):
        _, _, _, _, final_obs, episode_return, episode_length = steps[t]
        assert np.array_equal(episode_return, raw[t - 29:t + 1].sum(0)) and episode_length.tolist() == [30, 30]
        assert np.array_equal(final_obs[..., :-1], steps[t - 1][0][..., 1:])
        # A truncated game starts over: a first observation, not the next frame of the old one.
        assert not np.array_equal(steps[t][0][..., :-1], steps[t - 1][0][..., 1:])
        assert np.array_equal(steps[t + 1][0][..., :-1], steps[t][0][..., 1:])


def test_seeds_reproduce_bit_for_bit_on_worker_threads():
    actions = random_actions(3, 60, seed=6)
    a = AtariVectorEnv(num_envs=3, seed=7, backend="ale-py", num_threads=2, repeat_action_probability=0.25)
    first = a.reset()[0]
    expected = play(a, actions)
    b = AtariVectorEnv(num_envs=3, seed=123, backend="ale-py", num_threads=1, repeat_action_probability=0.25)
    assert np.array_equal(b.reset(seed=7)[0], first)
    assert same(play(b, actions), expected)
    assert np.array_equal(a.reset(seed=7)[0], first)
    assert same(play(a, actions), expected)
    a.reset()  # unseeded: the games' streams go on, new episodes
    assert not same(play(a, actions), expected)
    other = AtariVectorEnv(num_envs=3, seed=8, backend="ale-py", repeat_action_probability=0.25)
    other.reset()
    assert not same(play(other, actions), expected)


def test_no_per_game_states_and_refused_inputs_change_nothing():
    actions = random_actions(2, 20, seed=9)
    clean = AtariVectorEnv(num_envs=2, seed=10, backend="ale-py")
    clean.reset()
    expected = play(clean, actions)
    env = AtariVectorEnv(num_envs=2, seed=10, backend="ale-py")
    env.reset()
    got = play(env, actions[:10])
    for call in (lambda: env.get_state(0), lambda: env.set_state(0, {})):
        with pytest.raises(NotImplementedError, match="backend='ale-py' has no per-game states.*backend='pymbrl'"):
            call()
    for bad, error, text in [
        (np.array([0, 4]), ValueError, r"actions: expected integers in \[0, 4\), got 4 at index 1"),
        (np.array([0, 1, 2]), ValueError, r"actions: expected shape \(2,\), got \(3,\)"),
        (np.array([0.0, 1.0]), TypeError, "actions: expected integers, got dtype float64"),
        (None, TypeError, "actions"),
    ]:
        with pytest.raises(error, match=text):
            env.step(bad)
    got.extend(play(env, torch.as_tensor(actions[10:])))
    assert same(got, expected)
    env.close()
    for call in (env.reset, lambda: env.step([0, 0])):
        with pytest.raises(gym.error.ClosedEnvironmentError):
            call()


def test_constructor_refuses_a_bad_backend_or_thread_count():
    for kwargs, error, text in [
        ({"backend": "envpool"}, ValueError, r"backend: expected one of \('pymbrl', 'ale-py'\), got 'envpool'"),
        ({"backend": None}, ValueError, "backend: expected one of"),
        ({"num_threads": 2}, ValueError, "num_threads: backend='pymbrl' steps its games on the calling thread"),
        ({"num_threads": -1, "backend": "ale-py"}, ValueError, "num_threads: expected an integer >= 0"),
        ({"num_threads": 1.5, "backend": "ale-py"}, TypeError, "num_threads: expected an integer"),
        ({"num_threads": 10**6, "backend": "ale-py"}, ValueError, r"num_threads: expected an integer in \[0, 1024\]"),
    ]:
        with pytest.raises(error, match=text):
            AtariVectorEnv(num_envs=1, **kwargs)
