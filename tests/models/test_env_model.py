"""I2A's environment model: shapes, what pool-and-inject sees, learning a known dynamics, k-step errors."""

import numpy as np
import pytest
import torch

from pymbrl.models.env_model import CopyModel, EnvModel, Transitions, open_loop, prediction_error, to_planes, train_env_model

SHAPE = (3, 7, 9)


def moving_dot(n, seed=0):
    """A white dot on a black 7x9 frame; action 1-4 moves it right/up/left/down (the border stops it),
    reward 1 when it moved: a deterministic dynamics a model can learn exactly."""
    rng = np.random.default_rng(seed)
    pos = np.stack([rng.integers(0, 7, n), rng.integers(0, 9, n)], 1)
    actions = rng.integers(0, 5, n)
    moves = np.array([[0, 0], [0, 1], [-1, 0], [0, -1], [1, 0]])
    nxt = np.clip(pos + moves[actions], 0, [6, 8])
    frames = np.zeros((n, 7, 9, 3), np.uint8)
    next_frames = np.zeros_like(frames)
    frames[np.arange(n), pos[:, 0], pos[:, 1]] = 255
    next_frames[np.arange(n), nxt[:, 0], nxt[:, 1]] = 255
    rewards = (nxt != pos).any(1).astype(np.float32)
    return Transitions(frames, actions.astype(np.int64), next_frames, rewards)


def test_to_planes_converts_uint8_frames_to_channels_first_floats():
    frames = np.zeros((2, 7, 9, 3), np.uint8)
    frames[1, 3, 4] = (255, 0, 51)
    planes = to_planes(frames)
    assert planes.shape == (2, 3, 7, 9) and planes.dtype == torch.float32
    assert planes[1, :, 3, 4].tolist() == pytest.approx([1.0, 0.0, 0.2])
    with pytest.raises(ValueError, match="frames"):
        to_planes(frames.astype(np.float32))


def test_forward_shapes_and_bad_frames():
    model = EnvModel(SHAPE, 5)
    logits, rewards = model(torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 4]))
    assert logits.shape == (4, *SHAPE) and rewards.shape == (4,)
    frames, _ = model.predict(torch.rand(4, *SHAPE), torch.zeros(4, dtype=torch.long))
    assert ((frames >= 0) & (frames <= 1)).all()
    with pytest.raises(ValueError, match="frames"):
        model(torch.rand(4, 3, 7, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="frame_shape"):
        EnvModel((7, 9), 5)


@pytest.mark.parametrize("inject", [True, False])
def test_pool_and_inject_lets_a_far_cell_change_the_prediction(inject):
    """With one block of 3x3 convs a cell sees 2 cells around it; the global pool reaches the whole frame."""
    torch.manual_seed(0)
    model = EnvModel(SHAPE, 5, blocks=1, pool_and_inject=inject)
    frames = torch.zeros(2, *SHAPE)
    frames[1, :, 6, 8] = 1.0  # far corner lit in the second frame only
    logits, _ = model(frames, torch.zeros(2, dtype=torch.long))
    changed = (logits[0, :, 0, 0] - logits[1, :, 0, 0]).abs().max().item()
    assert (changed > 1e-6) == inject


def test_training_learns_a_deterministic_dynamics():
    torch.manual_seed(0)
    train, test = moving_dot(4000, seed=1), moving_dot(500, seed=2)
    model = EnvModel(SHAPE, 5, channels=16)

    def test_error():
        with torch.no_grad():
            frames, rewards = model.predict(to_planes(test.frames), torch.from_numpy(test.actions))
        wrong = ((frames - to_planes(test.next_frames)).abs() > 0.5).any(1).flatten(1).any(1)
        return wrong.float().mean().item(), (rewards - torch.from_numpy(test.rewards)).abs().mean().item()

    before, _ = test_error()
    history = train_env_model(model, train, epochs=8, batch_size=64, lr=3e-3, seed=0)
    after, reward_error = test_error()
    assert history[-1]["frame_loss"] < history[0]["frame_loss"] / 3
    assert before > 0.9 and after < 0.05  # frames with any wrong cell
    assert reward_error < 0.1


def test_train_env_model_refuses_mismatched_data():
    data = moving_dot(10)
    with pytest.raises(ValueError, match="data"):
        train_env_model(EnvModel(SHAPE, 5), data._replace(rewards=data.rewards[:5]))


class Exact:
    """The moving-dot dynamics written out, as a model."""

    num_actions = 5

    def predict(self, frames, actions):
        out = torch.zeros_like(frames)
        r, c = torch.nonzero(frames[:, 0] > 0.5, as_tuple=True)[1:]
        dr = torch.tensor([0, 0, -1, 0, 1])[actions]
        dc = torch.tensor([0, 1, 0, -1, 0])[actions]
        r2, c2 = (r + dr).clamp(0, 6), (c + dc).clamp(0, 8)
        out[torch.arange(len(frames)), :, r2, c2] = 1.0
        return out, ((r2 != r) | (c2 != c)).float()


def trajectories(b, t, seed=0):
    rng = np.random.default_rng(seed)
    frames = np.zeros((b, t + 1, 7, 9, 3), np.uint8)
    actions = rng.integers(0, 5, (b, t))
    rewards = np.zeros((b, t), np.float32)
    pos = np.stack([rng.integers(0, 7, b), rng.integers(0, 9, b)], 1)
    moves = np.array([[0, 0], [0, 1], [-1, 0], [0, -1], [1, 0]])
    frames[np.arange(b), 0, pos[:, 0], pos[:, 1]] = 255
    for k in range(t):
        nxt = np.clip(pos + moves[actions[:, k]], 0, [6, 8])
        rewards[:, k] = (nxt != pos).any(1)
        pos = nxt
        frames[np.arange(b), k + 1, pos[:, 0], pos[:, 1]] = 255
    return frames, actions, rewards


def test_prediction_error_is_zero_for_the_true_dynamics_and_grows_for_the_copy_model():
    frames, actions, rewards = trajectories(64, 15)
    exact = prediction_error(Exact(), frames, actions, rewards)
    assert exact.horizons == (1, 5, 15) and exact.samples == 64
    assert exact.frame_mse == (0.0, 0.0, 0.0) and exact.cell_error == (0.0, 0.0, 0.0) and exact.reward_mae == (0.0, 0.0, 0.0)
    copy = prediction_error(CopyModel(SHAPE, 5), frames, actions, rewards, horizons=(1, 15))
    moved = (frames[:, 1] != frames[:, 0]).any(-1).any(-1).any(-1).mean()
    # a moved dot is wrong in 2 of the 63 cells
    assert copy.cell_error[0] == pytest.approx(2 * moved / 63, abs=1e-6)
    assert copy.cell_error[1] > copy.cell_error[0]
    assert copy.reward_mae[0] == pytest.approx(rewards[:, 0].mean())


def test_open_loop_feeds_predictions_back():
    frames, actions, _ = trajectories(8, 6)
    predicted, _ = open_loop(Exact(), to_planes(frames[:, 0]), torch.from_numpy(actions))
    assert predicted.shape == (6, 8, 3, 7, 9)
    assert torch.equal(predicted, to_planes(frames[:, 1:]).transpose(0, 1))


def test_prediction_error_refuses_bad_shapes_and_horizons():
    frames, actions, rewards = trajectories(4, 5)
    with pytest.raises(ValueError, match="horizons"):
        prediction_error(Exact(), frames, actions, rewards, horizons=(1, 6))
    with pytest.raises(ValueError, match="frames, actions, rewards"):
        prediction_error(Exact(), frames[:, 1:], actions, rewards)
