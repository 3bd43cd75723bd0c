"""pymbrl.models.muzero: the value transform and its inverse, two-hot supports, hidden-state
scaling, gradient scaling, and the networks' (MuZero's MLP and conv, Stochastic MuZero's MLP)
shapes, initial predictions, gradients, argument errors and a short fit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pymbrl.models.muzero import (
    ConvMuZeroNetwork,
    InferenceOutput,
    MuZeroNetwork,
    StochasticMuZeroNetwork,
    inverse_scalar_transform,
    make_network,
    scalar_to_support,
    scalar_transform,
    scale_gradient,
    scale_hidden_state,
    support_to_scalar,
)


@pytest.fixture(autouse=True)
def _seeded_initialisation():
    """Weights are drawn from torch's global generator: seed it so every run is the same."""
    torch.manual_seed(0)


floats32 = st.floats(-1e8, 1e8, width=32, allow_subnormal=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(floats32, min_size=1, max_size=50))
def test_inverse_transform_undoes_the_transform(values):
    x = torch.tensor(values + [0.0, -0.0, 1e-6, -1e-6, 1e8, -1e8])
    y = scalar_transform(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(inverse_scalar_transform(y), x, rtol=1e-4, atol=0.0)


def test_transform_matches_its_definition_and_the_closed_form_inverse():
    x = torch.linspace(-1000, 1000, 2001, dtype=torch.float64)
    eps = 1e-3
    torch.testing.assert_close(scalar_transform(x), torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + eps * x)
    y = scalar_transform(x)
    paper = torch.sign(y) * (((torch.sqrt(1 + 4 * eps * (y.abs() + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)
    torch.testing.assert_close(inverse_scalar_transform(y), paper)
    # eps = 0 is the plain square-root squashing, still exactly invertible.
    torch.testing.assert_close(inverse_scalar_transform(scalar_transform(x, 0.0), 0.0), x)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-2e4, 2e4, width=32), min_size=1, max_size=30), st.integers(1, 30))
def test_two_hot_weights_sum_to_one_and_their_expectation_is_the_clamped_transform(values, support_size):
    x = torch.tensor(values)
    target = scalar_to_support(x, support_size)
    assert target.shape == (len(values), 2 * support_size + 1) and target.dtype == torch.float32
    assert (target >= 0).all() and ((target > 0).sum(-1) <= 2).all()
    torch.testing.assert_close(target.sum(-1), torch.ones(len(values)))
    support = torch.arange(-support_size, support_size + 1, dtype=torch.float32)
    expected = scalar_transform(x).clamp(-support_size, support_size)
    torch.testing.assert_close(target @ support, expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(1, 30))
def test_decoding_the_log_of_a_two_hot_recovers_in_range_values(data, support_size):
    bound = float(inverse_scalar_transform(torch.tensor(float(support_size))))
    values = data.draw(st.lists(st.floats(-bound, bound, width=32), min_size=1, max_size=30))
    x = torch.tensor(values)
    decoded = support_to_scalar(torch.log(scalar_to_support(x, support_size)), support_size)
    torch.testing.assert_close(decoded, x, rtol=1e-4, atol=1e-5)


def test_supports_work_on_any_leading_shape_and_clamp_out_of_range_values():
    x = torch.tensor([[0.0, 3.5, -1e6], [1e6, -2.0, 7.0]])
    target = scalar_to_support(x, 5)
    assert target.shape == (2, 3, 11)
    assert target[0, 2, 0] == 1 and target[1, 0, 10] == 1  # all weight on the end bins
    assert support_to_scalar(torch.zeros(4, 2, 3, 11), 5).shape == (4, 2, 3)
    assert scalar_to_support(torch.tensor(2.0), 3).shape == (7,)


def test_nan_reaches_the_target_instead_of_an_arbitrary_bin():
    target = scalar_to_support(torch.tensor([float("nan"), 1.0]), 4)
    assert target[0].isnan().any() and not target[1].isnan().any()


def test_symmetric_logits_decode_to_exactly_zero():
    logits = torch.zeros(3, 601)
    assert (support_to_scalar(logits, 300) == 0).all()
    symmetric = torch.randn(5, 11)
    symmetric = symmetric + symmetric.flip(-1)
    assert (support_to_scalar(symmetric, 5) == 0).all()


def test_scale_hidden_state_maps_each_sample_to_the_unit_interval_and_constants_to_zero():
    s = torch.randn(6, 3, 4, 4) * 50 + 7
    scaled = scale_hidden_state(s)
    assert scaled.shape == s.shape
    flat = scaled.flatten(1)
    assert (flat.amin(1) == 0).all() and torch.allclose(flat.amax(1), torch.ones(6))
    constant = scale_hidden_state(torch.full((2, 5), 3.0, requires_grad=True))
    assert (constant == 0).all()
    constant.sum().backward()  # no NaN in the backward pass either


def test_scale_gradient_is_an_identity_whose_gradient_is_scaled():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for scale in (0.0, 0.3, 0.5, 1.0):
        y = scale_gradient(x, scale)
        assert torch.equal(y, x)
        (grad,) = torch.autograd.grad((y * torch.arange(12.0, dtype=torch.float64).view(4, 3)).sum(), x)
        torch.testing.assert_close(grad, scale * torch.arange(12.0, dtype=torch.float64).view(4, 3))
    reference = x * 0.3 + x.detach() * 0.7
    torch.testing.assert_close(scale_gradient(x, 0.3), reference)


def test_transform_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="support_size"):
        scalar_to_support(torch.zeros(2), 0)
    with pytest.raises(ValueError, match="logits"):
        support_to_scalar(torch.zeros(2, 10), 5)
    with pytest.raises(ValueError, match="eps"):
        scalar_transform(torch.zeros(2), -1.0)
    with pytest.raises(ValueError, match="scale"):
        scale_gradient(torch.zeros(2), 2.0)
    with pytest.raises(ValueError, match="hidden_state"):
        scale_hidden_state(torch.zeros(3))
    with pytest.raises(TypeError, match="x"):
        scalar_transform([1.0, 2.0])


def mlp():
    return MuZeroNetwork(4, 3, hidden_size=32, latent_size=16, support_size=10)


def conv(**kwargs):
    return ConvMuZeroNetwork((4, 10, 10), 5, channels=8, num_blocks=1, head_channels=4, hidden_size=16, **kwargs)


NETWORKS = {"mlp": (mlp, (4,), (16,), 3), "conv": (conv, (4, 10, 10), (8, 5, 5), 5)}


@pytest.fixture(params=sorted(NETWORKS))
def case(request):
    make, obs_shape, hidden_shape, num_actions = NETWORKS[request.param]
    return make(), obs_shape, hidden_shape, num_actions


def check_output(out: InferenceOutput, batch: int, hidden_shape: tuple, num_actions: int) -> None:
    assert out.value_logits.shape == out.reward_logits.shape == (batch, 21)
    assert out.policy_logits.shape == (batch, num_actions)
    assert out.hidden_state.shape == (batch, *hidden_shape)
    assert all(t.dtype == torch.float32 for t in out)
    assert (out.hidden_state >= 0).all() and (out.hidden_state <= 1).all()


def test_shapes_dtypes_and_a_fresh_network_predicts_zero_value_and_reward(case):
    net, obs_shape, hidden_shape, num_actions = case
    root = net.initial_inference(torch.randn(6, *obs_shape))
    check_output(root, 6, hidden_shape, num_actions)
    assert (root.value == 0).all() and (root.reward == 0).all() and root.value.shape == (6,)
    step = net.recurrent_inference(root.hidden_state, torch.arange(6) % num_actions)
    check_output(step, 6, hidden_shape, num_actions)
    assert (step.value == 0).all() and (step.reward == 0).all()
    assert not torch.equal(step.hidden_state, root.hidden_state)


def test_gradients_reach_every_parameter_from_recurrent_outputs(case):
    net, obs_shape, _, num_actions = case
    obs, action = torch.randn(8, *obs_shape), torch.arange(8) % num_actions
    target = scalar_to_support(torch.linspace(-5, 5, 8), net.support_size)

    def loss() -> torch.Tensor:
        root = net.initial_inference(obs)
        out = net.recurrent_inference(scale_gradient(root.hidden_state, 0.5), action)
        value = -(target * out.value_logits.log_softmax(-1)).sum(-1)
        reward = -(target * out.reward_logits.log_softmax(-1)).sum(-1)
        policy = torch.nn.functional.cross_entropy(out.policy_logits, action % 2, reduction="none")
        return (value + reward + policy).mean()

    # The zero output layers pass no gradient back on the first step, so their heads' hidden
    # layers (the conv heads have some) start learning on the second.
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        loss().backward()
        opt.step()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_network_argument_errors_name_the_argument(case):
    net, obs_shape, _, num_actions = case
    hidden = net.initial_inference(torch.randn(2, *obs_shape)).hidden_state
    with pytest.raises(ValueError, match="obs"):
        net.initial_inference(torch.randn(2, obs_shape[0] + 1, *obs_shape[1:]))
    with pytest.raises(ValueError, match=r"action: expected integers in \[0, "):
        net.recurrent_inference(hidden, torch.tensor([0, num_actions]))
    with pytest.raises(ValueError, match="action"):
        net.recurrent_inference(hidden, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="action"):
        net.recurrent_inference(hidden, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="action"):
        net.recurrent_inference(hidden, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="hidden_state"):
        net.recurrent_inference(hidden[:, :1], torch.tensor([0, 1]))


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match="support_size"):
        MuZeroNetwork(4, 2, support_size=0)
    with pytest.raises(ValueError, match="obs_dim"):
        MuZeroNetwork(0, 2)
    with pytest.raises(ValueError, match="num_actions"):
        MuZeroNetwork(4, 0)
    with pytest.raises(ValueError, match="support_size"):
        ConvMuZeroNetwork((4, 10, 10), 2, support_size=0)
    with pytest.raises(ValueError, match="obs_shape"):
        ConvMuZeroNetwork((10, 10), 2)
    with pytest.raises(ValueError, match="num_blocks"):
        ConvMuZeroNetwork((4, 10, 10), 2, num_blocks=-1)


def test_conv_network_takes_minatar_frames_and_any_downsampling():
    net = ConvMuZeroNetwork((4, 10, 10), 3, downsample=0, channels=8, num_blocks=1)
    frames = torch.rand(2, 10, 10, 4) > 0.8  # MinAtar: bool [H, W, C]
    out = net.initial_inference(frames.permute(0, 3, 1, 2))
    assert out.hidden_state.shape == (2, 8, 10, 10)
    assert ConvMuZeroNetwork((3, 11, 7), 2, downsample=2, channels=8).hidden_shape == (8, 3, 2)
    net.eval()
    with torch.no_grad():
        single = net.recurrent_inference(out.hidden_state[:1], torch.tensor([2]))
    assert single.hidden_state.shape == (1, 8, 10, 10)


def test_mlp_fits_the_values_of_a_fixed_batch():
    net = MuZeroNetwork(4, 2)
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(64, 4, generator=g)
    values = 40 * torch.tanh(obs @ torch.tensor([1.0, -0.5, 0.8, 0.3]))
    target = scalar_to_support(values, net.support_size)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def error() -> float:
        with torch.no_grad():
            return float(((net.initial_inference(obs).value - values) ** 2).mean())

    before = error()
    for _ in range(300):
        logits = net.initial_inference(obs).value_logits
        loss = -(target * logits.log_softmax(-1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert error() < before / 100, (before, error())


def stochastic(**kwargs):
    return StochasticMuZeroNetwork(4, 3, num_chance_outcomes=5, hidden_size=32, latent_size=16, **kwargs)


def test_stochastic_network_steps_through_afterstates_and_chance_codes():
    net = stochastic()
    root = net.initial_inference(torch.randn(6, 4))
    check_output(root, 6, (16,), 3)
    after = net.afterstate_inference(root.hidden_state, torch.arange(6) % 3)
    assert after.chance_logits.shape == (6, 5) and after.q_logits.shape == (6, 21)
    assert after.afterstate.shape == (6, 16) and (after.q == 0).all() and after.q.shape == (6,)
    assert (after.afterstate >= 0).all() and (after.afterstate <= 1).all()
    code = torch.nn.functional.one_hot(torch.arange(6) % 5, 5).float()
    step = net.chance_inference(after.afterstate, code)
    check_output(step, 6, (16,), 3)
    assert (step.value == 0).all() and (step.reward == 0).all()
    other = net.chance_inference(after.afterstate, code.roll(1, dims=1))
    assert not torch.equal(step.hidden_state, other.hidden_state)  # the outcome decides the next state


def test_the_chance_code_is_one_hot_with_the_encoders_gradient():
    net = stochastic()
    obs = torch.randn(8, 4)
    code, probs = net.encode(obs)
    assert torch.equal(code, torch.nn.functional.one_hot(probs.argmax(-1), 5).float())
    assert torch.allclose(probs.sum(-1), torch.ones(8))
    # Straight through: the code's gradient is the softmax's.
    weights = torch.randn(8, 5)
    (grad,) = torch.autograd.grad((code * weights).sum(), net.chance_encoder[-1].bias, retain_graph=True)
    (expected,) = torch.autograd.grad((probs * weights).sum(), net.chance_encoder[-1].bias)
    assert torch.allclose(grad, expected) and grad.abs().sum() > 0


def test_gradients_reach_every_stochastic_parameter():
    net = stochastic()
    obs, next_obs, action = torch.randn(8, 4), torch.randn(8, 4), torch.arange(8) % 3
    target = scalar_to_support(torch.linspace(-5, 5, 8), net.support_size)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):  # the zero output layers pass gradients back from the second step
        root = net.initial_inference(obs)
        after = net.afterstate_inference(root.hidden_state, action)
        code, probs = net.encode(next_obs)
        out = net.chance_inference(after.afterstate, code)
        loss = sum(-(target * logits.log_softmax(-1)).sum(-1).mean()
                   for logits in (after.q_logits, out.value_logits, out.reward_logits))
        loss = loss + torch.nn.functional.cross_entropy(after.chance_logits, code.detach()) \
            + torch.nn.functional.cross_entropy(out.policy_logits, action) + (code.detach() - probs).square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_stochastic_network_errors_name_the_argument():
    net = stochastic()
    hidden = net.initial_inference(torch.randn(2, 4)).hidden_state
    with pytest.raises(ValueError, match="num_chance_outcomes"):
        StochasticMuZeroNetwork(4, 3, num_chance_outcomes=0)
    with pytest.raises(ValueError, match="action"):
        net.afterstate_inference(hidden, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="code"):
        net.chance_inference(hidden, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="code"):
        net.chance_inference(hidden, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="obs"):
        net.encode(torch.zeros(2, 5))
    assert isinstance(make_network((4,), 3, num_chance_outcomes=7), StochasticMuZeroNetwork)
    assert make_network((4,), 3, num_chance_outcomes=7).num_chance_outcomes == 7
    with pytest.raises(ValueError, match="obs_shape: .*Stochastic MuZero"):
        make_network((4, 10, 10), 3, num_chance_outcomes=7)
