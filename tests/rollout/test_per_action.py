"""I2A's imagination: every state x every first action, one batch per step."""

import pytest
import torch

from pymbrl.rollout.per_action import per_action_rollouts


class Counter:
    """next frame = frame + action; reward = 10 x action: every row's history is readable in its output."""

    num_actions = 4

    def __init__(self):
        self.calls = []

    def predict(self, frames, actions):
        self.calls.append(len(frames))
        return frames + actions.float()[:, None, None, None], 10.0 * actions.float()


def fixed_policy(action):
    def policy(frames):
        logits = torch.full((len(frames), 4), -1e9)
        logits[:, action] = 0.0
        return logits
    return policy


def test_every_state_takes_every_first_action_then_the_rollout_policy():
    model = Counter()
    starts = torch.arange(3.0)[:, None, None, None].expand(3, 1, 2, 2).contiguous() * 100
    out = per_action_rollouts(model, fixed_policy(2), starts, 4, sample=False)
    assert out.frames.shape == (4, 3, 4, 1, 2, 2) and out.rewards.shape == (4, 3, 4) and out.actions.shape == (4, 3, 4)
    assert model.calls == [12, 12, 12, 12]  # one model call of B x A rows per step
    assert (out.actions[0] == torch.arange(4)).all() and (out.actions[1:] == 2).all()
    for b in range(3):
        for a in range(4):
            expected = 100 * b + a + 2 * torch.arange(4.0)
            assert torch.equal(out.frames[:, b, a, 0, 0, 0], expected)
            assert torch.equal(out.rewards[:, b, a], torch.tensor([10.0 * a, 20, 20, 20]))


def test_sampling_follows_the_policy_and_the_generator():
    model = Counter()
    starts = torch.zeros(50, 1, 1, 1)

    def uniform(frames):
        return torch.zeros(len(frames), 4)

    def run(seed):
        return per_action_rollouts(model, uniform, starts, 3, generator=torch.Generator().manual_seed(seed)).actions

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))
    later = run(3)[1:].flatten()
    counts = torch.bincount(later, minlength=4).float() / len(later)
    assert counts.min() > 0.18  # all four actions, about a quarter each
    assert (per_action_rollouts(model, fixed_policy(3), starts, 3).actions[1:] == 3).all()


def test_no_gradient_reaches_the_outputs():
    model = Counter()
    starts = torch.zeros(2, 1, 1, 1, requires_grad=True)
    out = per_action_rollouts(model, fixed_policy(0), starts, 2)
    assert not out.frames.requires_grad


def test_bad_arguments():
    with pytest.raises(ValueError, match="length"):
        per_action_rollouts(Counter(), fixed_policy(0), torch.zeros(2, 1, 1, 1), 0)
    with pytest.raises(ValueError, match="frames"):
        per_action_rollouts(Counter(), fixed_policy(0), torch.zeros(2, 1, 1), 2)
