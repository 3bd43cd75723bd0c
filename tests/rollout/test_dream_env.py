"""pymbrl.rollout.dream_env and pymbrl.envs.spaces: the dream as a gymnasium Env (env checker, seeding,
rendering) and as a VectorEnv (shapes, next-step autoreset, truncation), the action codec, and the
arguments they refuse."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.world_models import MDNRNN, ConvVAE
from pymbrl.rollout.dream_env import DreamEnv, DreamVectorEnv

Z, H = 4, 8
BOX = gym.spaces.Box(-2.0, 3.0, (2,), np.float32)


@pytest.fixture(autouse=True)
def _seeded_initialisation():
    torch.manual_seed(0)


def mdnrnn(action_dim: int = 3, done_bias: float | None = None, reward_head: bool = False) -> MDNRNN:
    """A random M; with ``done_bias`` its done logit is that constant."""
    m = MDNRNN(Z, action_dim, hidden=H, mixtures=2, reward_head=reward_head)
    if done_bias is not None:
        with torch.no_grad():
            m.head.weight[3 * Z * 2] = 0.0
            m.head.bias[3 * Z * 2] = done_bias
    return m.eval()


def start_latents(n: int = 5) -> torch.Tensor:
    return torch.randn(n, Z, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), BOX], ids=["discrete", "box"])
def test_dream_env_passes_the_env_checker_and_renders(space):
    vae = ConvVAE(Z).eval()
    env = DreamEnv(mdnrnn(ActionCodec(space).dim), space, start_latents(), vae=vae, max_steps=10,
                   render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    expected = ("infinity", "symmetric and normalized", "not having a spec")  # unbounded z, the Box, no registry
    unexpected = [str(w.message) for w in caught if not any(e in str(w.message) for e in expected)]
    assert not unexpected
    obs, _ = env.reset(seed=1)
    assert obs.shape == (Z + H,) and obs.dtype == np.float32
    assert np.array_equal(obs[Z:], np.zeros(H))  # a dream starts with M's state at zero
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    with torch.no_grad():
        decoded = vae.decode(torch.from_numpy(obs[None, :Z]))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(frame, np.round(decoded * 255), atol=1)
    env.step(space.sample())
    assert not np.array_equal(env.render(), frame)  # it draws the current latent
    assert DreamEnv(mdnrnn(ActionCodec(space).dim), space, start_latents()).render() is None


def test_reset_with_a_seed_repeats_the_dream():
    """reset(seed=s) twice: the same first observation and the same next step; another seed gives
    another dream. The start latent is one of start_z."""
    z0 = start_latents(50)
    env = DreamEnv(mdnrnn(2, reward_head=True), BOX, z0, max_steps=10)
    action = np.array([0.5, -1.0], np.float32)
    runs = []
    for seed in (7, 7, 8):
        obs, _ = env.reset(seed=seed)
        assert any(torch.equal(torch.from_numpy(obs[:Z]), row) for row in z0)
        runs.append((obs, *env.step(action)))
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][1], runs[2][1])


def test_dream_env_endings_rewards_and_truncation():
    """Without a reward head, 1 per step; a forced done ends the episode after one step; else it is
    truncated at max_steps (and not terminated)."""
    env = DreamEnv(mdnrnn(done_bias=20.0), gym.spaces.Discrete(3), start_latents(), max_steps=4)
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(1)
    assert (reward, terminated, truncated) == (1.0, True, False)
    env = DreamEnv(mdnrnn(done_bias=-20.0), gym.spaces.Discrete(3), start_latents(), max_steps=4)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(4)]
    assert flags == [(False, False)] * 3 + [(False, True)]
    env.reset()
    assert env.step(2)[2:4] == (False, False)  # reset restarts the step count
    with pytest.raises(ValueError, match="action"):
        env.step(3)


def test_vector_env_shapes_and_seeding():
    env = DreamVectorEnv(mdnrnn(2, reward_head=True), BOX, start_latents(), num_envs=6, max_steps=10)
    assert env.observation_space.shape == (6, Z + H) and env.action_space.shape == (6, 2)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, _ = env.reset(seed=4)
    assert obs.shape == (6, Z + H) and obs.dtype == np.float32
    actions = np.tile(np.array([[1.0, 0.0]], np.float32), (6, 1))
    out = env.step(actions)
    assert out[0].shape == (6, Z + H) and out[1].shape == out[2].shape == out[3].shape == (6,)
    assert out[2].dtype == out[3].dtype == np.bool_
    obs2, _ = env.reset(seed=4)
    np.testing.assert_array_equal(obs, obs2)
    again = env.step(actions)
    for a, b in zip(out[:4], again[:4]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="actions"):
        env.step(np.zeros((5, 2), np.float32))


def test_vector_env_next_step_autoreset():
    """Every dream ends at every step (forced done): the step after an end returns reward 0, not
    terminated, and the first observation of a new dream, [a start latent, zeros]."""
    z0 = start_latents(3)
    env = DreamVectorEnv(mdnrnn(done_bias=20.0), gym.spaces.Discrete(3), z0, num_envs=4, max_steps=100)
    env.reset(seed=0)
    for i in range(6):
        obs, reward, terminated, truncated, _ = env.step(np.array([0, 1, 2, 1]))
        assert not truncated.any()
        if i % 2 == 0:  # a step of a dream: it ends
            assert terminated.all() and np.array_equal(reward, np.ones(4))
            assert np.abs(obs[:, Z:]).max() > 0  # M's state after a step
        else:  # the autoreset step
            assert not terminated.any() and np.array_equal(reward, np.zeros(4))
            assert np.array_equal(obs[:, Z:], np.zeros((4, H)))
            for row in obs[:, :Z]:
                assert any(torch.equal(torch.from_numpy(row), z) for z in z0)


def test_vector_env_truncates_at_max_steps_and_restarts_the_count():
    env = DreamVectorEnv(mdnrnn(done_bias=-20.0), gym.spaces.Discrete(3), start_latents(), num_envs=3, max_steps=3)
    env.reset(seed=0)
    rows = [env.step(np.zeros(3, np.int64))[1:4] for _ in range(8)]
    truncated = [bool(r[2].all()) for r in rows]
    assert truncated == [False, False, True, False, False, False, True, False]
    assert not any(r[1].any() for r in rows)  # never terminated
    assert [float(r[0][0]) for r in rows] == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]


def test_mismatched_spaces_and_missing_vae_are_refused():
    with pytest.raises(ValueError, match="action_space"):
        DreamEnv(mdnrnn(3), gym.spaces.Discrete(4), start_latents())
    with pytest.raises(ValueError, match="action_space"):
        DreamVectorEnv(mdnrnn(3), BOX, start_latents(), num_envs=2)
    with pytest.raises(ValueError, match="action_space"):
        DreamEnv(mdnrnn(2), gym.spaces.Box(-np.inf, np.inf, (2,)), start_latents())
    with pytest.raises(ValueError, match="vae"):
        DreamEnv(mdnrnn(3), gym.spaces.Discrete(3), start_latents(), render_mode="rgb_array")
    with pytest.raises(ValueError, match="render_mode"):
        DreamEnv(mdnrnn(3), gym.spaces.Discrete(3), start_latents(), vae=ConvVAE(Z), render_mode="human")
    with pytest.raises(ValueError, match="start_z"):
        DreamEnv(mdnrnn(3), gym.spaces.Discrete(3), torch.zeros(0, Z))
    with pytest.raises(ValueError, match="start_z"):
        DreamVectorEnv(mdnrnn(3), gym.spaces.Discrete(3), torch.zeros(2, Z + 1))
    with pytest.raises(ValueError, match="tau"):
        DreamEnv(mdnrnn(3), gym.spaces.Discrete(3), start_latents(), tau=0.0)
    with pytest.raises(ValueError, match="num_envs"):
        DreamVectorEnv(mdnrnn(3), gym.spaces.Discrete(3), start_latents(), num_envs=0)
    # Bounded before the dreams' states are allocated.
    with pytest.raises(ValueError, match=r"num_envs: expected an integer in \[1, 65536\], got 10000000000"):
        DreamVectorEnv(mdnrnn(3), gym.spaces.Discrete(3), start_latents(), num_envs=10**10)


def test_actions_that_a_cast_would_change_are_refused():
    # 1.7 used to be cast to action 1 (and 2**64 + 1 to 1) without a word.
    env = DreamEnv(mdnrnn(3), gym.spaces.Discrete(3), start_latents())
    env.reset(seed=0)
    for bad, error in [(1.7, TypeError), (np.float32(1.0), TypeError), (2**64 + 1, ValueError), (-1, ValueError),
                       ("1", TypeError)]:
        with pytest.raises(error, match="action: expected"):
            env.step(bad)
    env.step(np.int64(2))
    vec = DreamVectorEnv(mdnrnn(3), gym.spaces.Discrete(3), start_latents(), num_envs=2)
    vec.reset(seed=0)
    for bad, error in [(np.array([0.5, 1.0]), TypeError), (np.array([0, 3]), ValueError),
                       (np.array([0, 2**40]), ValueError), (np.array([True, False]), TypeError)]:
        with pytest.raises(error, match="actions: expected"):
            vec.step(bad)
    box = DreamVectorEnv(mdnrnn(2), BOX, start_latents(), num_envs=2)
    box.reset(seed=0)
    for bad in (np.full((2, 2), np.nan), np.full((2, 2), 1e300), np.full((2, 2), 3.5)):
        with pytest.raises(ValueError, match="actions: expected an element of Box"):
            box.step(bad)
    box.step(np.zeros((2, 2), np.float64))


# --------------------------------------------------------------------------------------------------
# ActionCodec


def test_codec_refuses_actions_outside_the_space_and_huge_spaces():
    codec = ActionCodec(gym.spaces.Discrete(3))
    # -1 used to encode as action 2's one-hot vector.
    with pytest.raises(ValueError, match=r"env_actions: expected integers in \[0, 3\), got -1"):
        codec.to_vector(np.array([0, -1]))
    with pytest.raises(ValueError, match=r"env_actions: expected integers in \[0, 3\), got 3"):
        codec.to_vector(np.array([3]))
    with pytest.raises(TypeError, match="env_actions: expected integers, got dtype float64"):
        codec.to_vector(np.array([1.0]))
    # Discrete(10**6) used to build a 4 TB identity matrix for one action.
    with pytest.raises(ValueError, match="action_space: expected at most 65536 discrete actions"):
        ActionCodec(gym.spaces.Discrete(10**6))
    np.testing.assert_array_equal(codec.to_vector(np.array([[2], [0]])), np.eye(3, dtype=np.float32)[[[2], [0]]])


def test_discrete_codec():
    codec = ActionCodec(gym.spaces.Discrete(3))
    assert codec.dim == 3
    vectors = codec.to_vector(np.array([2, 0, 1]))
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, np.eye(3)[[2, 0, 1]])
    np.testing.assert_array_equal(codec.to_env(vectors), [2, 0, 1])
    scores = torch.tensor([[0.1, -0.5, 0.3], [0.9, 0.2, -1.0]])
    np.testing.assert_array_equal(codec.to_env(scores), [2, 0])
    assert torch.equal(codec.model_input(scores), torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


def test_box_codec_maps_the_box_onto_minus_one_one():
    space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
    codec = ActionCodec(space)
    assert codec.dim == 2
    actions = np.array([[-2.0, 0.0], [2.0, 10.0], [1.0, 2.5]], np.float32)
    vectors = codec.to_vector(actions)
    np.testing.assert_allclose(vectors, [[-1, -1], [1, 1], [0.5, -0.5]])
    np.testing.assert_allclose(codec.to_env(vectors), actions, rtol=1e-6)
    np.testing.assert_allclose(codec.to_env(torch.tensor([[3.0, -7.0]])), [[2.0, 0.0]])  # clipped to the box
    assert torch.equal(codec.model_input(torch.tensor([[1.5, -0.25]])), torch.tensor([[1.0, -0.25]]))


@pytest.mark.parametrize("space", [gym.spaces.Box(-1, 1, (2, 2)), gym.spaces.Box(-np.inf, 1, (2,)),
                                   gym.spaces.MultiDiscrete([2, 3])])
def test_codec_refuses_other_spaces(space):
    with pytest.raises(ValueError, match="action_space"):
        ActionCodec(space)
    with pytest.raises(ValueError, match="env_id"):
        ActionCodec(space, "env_id")
