"""pymbrl.rollout.dream: batched dreams of a CMA-ES population -- shapes, forced endings, the
row -> candidate bookkeeping once finished dreams leave the batch, and argument errors."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.world_models import MDNRNN, Controller
from pymbrl.rollout.dream import dream_rollouts, dream_step

CODEC = ActionCodec(gym.spaces.Discrete(2))


@pytest.fixture(autouse=True)
def _seeded_initialisation():
    torch.manual_seed(0)


def forced(bias: float, reward_head: bool = False) -> MDNRNN:
    """A random M whose done logit is the constant ``bias``."""
    m = MDNRNN(3, 2, hidden=8, mixtures=2, reward_head=reward_head)
    done = 3 * 3 * 2
    with torch.no_grad():
        m.head.weight[done] = 0.0
        m.head.bias[done] = bias
    return m.eval()


# A hand-made M with 2 LSTM units: unit 0 holds tanh(action[0]) (forget gate shut), unit 1 adds
# tanh(action[1]) per step (forget gate open), so each row counts at its own candidate's rate; the
# done logit is 50 (h1 - tanh(1/2)), so a dream ends at the first step s with s tanh(action[1]) > 1/2,
# and the reward head pays h0. The z inputs have no weight, so the sampled latents change nothing:
# each candidate's dreams all last the same, known number of steps, and earn a known amount.
THRESHOLD = 0.5


def counting_mdnrnn(reward_head: bool = False) -> MDNRNN:
    m = MDNRNN(2, 2, hidden=2, mixtures=1, reward_head=reward_head)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        lstm = m.lstm
        lstm.bias_ih_l0[0:2] = 30.0  # input gates open
        lstm.bias_ih_l0[2] = -30.0  # unit 0 forgets
        lstm.bias_ih_l0[3] = 30.0  # unit 1 accumulates
        lstm.weight_ih_l0[4, 2] = 1.0  # unit 0's cell input: action[0] (input column z_dim + 0)
        lstm.weight_ih_l0[5, 3] = 1.0  # unit 1's cell input: action[1]
        lstm.bias_ih_l0[6:8] = 30.0  # output gates open
        m.head.weight[6] = torch.tensor([0.0, 50.0])
        m.head.bias[6] = -50.0 * math.tanh(THRESHOLD)
        if reward_head:
            m.head.weight[7] = torch.tensor([1.0, 0.0])
    return m.eval()


def rate_action(end: int) -> float:
    """action[1] that makes the counting M end a dream at step ``end`` (0: never)."""
    rate = 0.0 if end == 0 else min(THRESHOLD / (end - 0.5), 0.6)
    return math.atanh(rate)


def ending_at(steps: list[int], controller: Controller) -> torch.Tensor:
    """Controller parameters (W = 0, so actions = tanh(b)) that make the counting M end candidate
    p's dreams at step ``steps[p]`` (0: never), with b0 = (p + 1) / 10 (its reward per step is then
    tanh(tanh(tanh(b0))))."""
    params = torch.zeros(len(steps), controller.num_params)
    for p, s in enumerate(steps):
        params[p, -2] = (p + 1) / 10
        params[p, -1] = math.atanh(rate_action(s))
    return params


def identity(scores: torch.Tensor) -> torch.Tensor:
    return scores


def test_shapes_and_forced_endings():
    """Done logit +20: every dream ends after its first step and earns 1; -20: every dream runs
    ``max_steps``, earning 1 per step."""
    controller = Controller(3 + 8, 2)
    params = torch.randn(5, controller.num_params)
    start_z = torch.randn(4, 3)
    g = torch.Generator().manual_seed(0)
    out = dream_rollouts(forced(20.0), controller, params, start_z, CODEC.model_input, trials=3, tau=1.0,
                         max_steps=40, generator=g)
    assert out.returns.shape == out.steps.shape == (5, 3) and out.mean.shape == (5,)
    assert out.steps.dtype == torch.int64
    assert torch.equal(out.steps, torch.ones(5, 3, dtype=torch.int64))
    assert torch.equal(out.returns, torch.ones(5, 3))
    out = dream_rollouts(forced(-20.0), controller, params, start_z, CODEC.model_input, trials=3, tau=1.0,
                         max_steps=40, generator=g)
    assert torch.equal(out.steps, torch.full((5, 3), 40))
    assert torch.equal(out.returns, torch.full((5, 3), 40.0))
    torch.testing.assert_close(out.mean, torch.full((5,), 40.0))


def test_the_counting_mdnrnn_ends_where_it_should():
    """One step at a time, the hand-made M says done exactly at the intended step."""
    m = counting_mdnrnn()
    for target in (1, 2, 7, 33, 0):
        state = m.initial_state(1)
        z = torch.zeros(1, 2)
        for s in range(1, 40):
            step = dream_step(m, z, torch.tensor([[0.3, rate_action(target)]]), state, 1.0)
            state, z = step.state, step.z
            assert bool(step.done[0]) == (0 < target <= s), (target, s)


@pytest.mark.parametrize("reward_head", [False, True])
def test_each_candidate_keeps_its_own_dreams_as_the_batch_is_compacted(reward_head):
    """Candidates whose dreams end at steps 1, 5, 17, 20, 33 and never (max_steps 50), 8 trials
    each: the finished ones leave the batch at steps 16, 32 and 48, and every candidate's steps and
    returns are still its own (1 per step, or h0 = tanh(action[0]) per step with a reward head)."""
    m = counting_mdnrnn(reward_head)
    controller = Controller(2 + 2, 2)
    ends = [1, 5, 17, 20, 33, 0]
    order = [3, 0, 5, 2, 4, 1]  # not sorted by ending, so rows that leave are interleaved
    ends = [ends[i] for i in order]
    params = ending_at(ends, controller)
    start_z = torch.randn(6, 2)
    out = dream_rollouts(m, controller, params, start_z, identity, trials=8, tau=1.0, max_steps=50,
                         generator=torch.Generator().manual_seed(0))
    expected_steps = torch.tensor([[50 if e == 0 else e] * 8 for e in ends])
    assert torch.equal(out.steps, expected_steps)
    if reward_head:
        per_step = torch.tanh(torch.tanh(torch.tanh(params[:, -2])))  # h0 = tanh(c0), c0 = tanh(a0)
        assert len(set(per_step.tolist())) == 6
        torch.testing.assert_close(out.returns, per_step[:, None] * expected_steps, rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(out.returns, expected_steps.float())
    # Each candidate alone (nothing to compact) gives the same.
    for p in range(6):
        alone = dream_rollouts(m, controller, params[p:p + 1], start_z, identity, trials=3, tau=1.0, max_steps=50)
        assert torch.equal(alone.steps, expected_steps[p:p + 1, :3])
        torch.testing.assert_close(alone.returns, out.returns[p:p + 1, :3])


def test_a_candidate_that_ends_early_among_survivors():
    """Candidate 0 pushes the done logit up at once, the others never: candidate 0's dreams all end
    after one step while the rest last max_steps, also after 3/4 of the batch has been dropped."""
    m = counting_mdnrnn()
    controller = Controller(4, 2)
    params = ending_at([1, 0, 0, 0], controller)
    # Candidate 0 first and then three survivors, in a batch where 1/4 ends: not compacted; with
    # candidates 1-3 ending at step 2 instead, the batch is compacted down to candidate 0's rows.
    out = dream_rollouts(m, controller, params, torch.zeros(1, 2), identity, trials=16, tau=1.0, max_steps=70)
    assert torch.equal(out.steps[0], torch.ones(16, dtype=torch.int64))
    assert torch.equal(out.steps[1:], torch.full((3, 16), 70))
    params = ending_at([0, 2, 2, 2], controller)
    out = dream_rollouts(m, controller, params, torch.zeros(1, 2), identity, trials=16, tau=1.0, max_steps=70)
    assert torch.equal(out.steps[0], torch.full((16,), 70))
    assert torch.equal(out.returns[0], torch.full((16,), 70.0))
    assert torch.equal(out.steps[1:], torch.full((3, 16), 2))


def test_an_ended_dream_stays_ended():
    """A hand-made M says done after the first step (from the start latent 0) and never again
    (from the next latent, ~1): every dream lasts one step and earns 1, even though its row goes on
    being stepped until the batch is checked."""
    m = MDNRNN(2, 2, hidden=2, mixtures=1)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.lstm.bias_ih_l0[0:2] = 30.0
        m.lstm.bias_ih_l0[2:4] = -30.0
        m.lstm.bias_ih_l0[6:8] = 30.0
        m.lstm.weight_ih_l0[4, 0] = 5.0  # unit 0's cell input: z[0]
        m.head.bias[2] = 1.0  # the next latent's mean: [1, 0] ...
        m.head.bias[4:6] = -10.0  # ... with std e^-7 (the clamp)
        m.head.weight[6, 0] = -50.0
        m.head.bias[6] = 5.0  # done while h0 < 0.1
    controller = Controller(4, 2)
    out = dream_rollouts(m.eval(), controller, torch.zeros(3, controller.num_params), torch.zeros(1, 2), identity,
                         trials=4, tau=1.0, max_steps=40)
    assert torch.equal(out.steps, torch.ones(3, 4, dtype=torch.int64))
    assert torch.equal(out.returns, torch.ones(3, 4))


def test_the_same_generator_seed_gives_the_same_dreams():
    """With a reward head and random weights, returns depend on the sampled latents: the same seed
    repeats them, another seed does not."""
    m = MDNRNN(3, 2, hidden=8, mixtures=2, reward_head=True).eval()
    controller = Controller(11, 2)
    params = torch.randn(4, controller.num_params)
    start_z = torch.randn(5, 3)

    def run(seed):
        return dream_rollouts(m, controller, params, start_z, CODEC.model_input, trials=2, tau=1.15, max_steps=20,
                              generator=torch.Generator().manual_seed(seed))
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a.returns, b.returns) and torch.equal(a.steps, b.steps)
    assert not torch.equal(a.returns, c.returns)


def test_a_v_only_controller_reads_z_alone():
    controller = Controller(3, 2)
    out = dream_rollouts(forced(-20.0), controller, torch.randn(2, controller.num_params), torch.randn(3, 3),
                         CODEC.model_input, trials=2, max_steps=5, uses_hidden=False)
    assert torch.equal(out.steps, torch.full((2, 2), 5))
    with pytest.raises(ValueError, match="params"):
        dream_rollouts(forced(-20.0), controller, torch.randn(2, controller.num_params), torch.randn(3, 3),
                       CODEC.model_input, trials=2, max_steps=5, uses_hidden=True)


def test_bad_arguments_are_refused():
    m = forced(-20.0)
    controller = Controller(11, 2)
    params = torch.zeros(2, controller.num_params)
    start_z = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="params"):
        dream_rollouts(m, controller, torch.zeros(2, controller.num_params + 1), start_z, CODEC.model_input)
    with pytest.raises(ValueError, match="params"):
        dream_rollouts(m, controller, torch.zeros(controller.num_params), start_z, CODEC.model_input)
    with pytest.raises(ValueError, match="start_z"):
        dream_rollouts(m, controller, params, torch.zeros(0, 3), CODEC.model_input)
    with pytest.raises(ValueError, match="start_z"):
        dream_rollouts(m, controller, params, torch.zeros(3, 4), CODEC.model_input)
    for tau in (0.0, -1.0):
        with pytest.raises(ValueError, match="tau"):
            dream_rollouts(m, controller, params, start_z, CODEC.model_input, tau=tau, max_steps=3)
    with pytest.raises(ValueError, match="trials"):
        dream_rollouts(m, controller, params, start_z, CODEC.model_input, trials=0)
    with pytest.raises(ValueError, match="max_steps"):
        dream_rollouts(m, controller, params, start_z, CODEC.model_input, max_steps=0)
