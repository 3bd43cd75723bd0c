"""pymbrl.models.world_models: V's reconstruction fit and frame checks, the mixture's log-density
and temperature, M's step/forward agreement and loss terms (done weighting, reward head, mask), and
the controller's flat parameter layout over a batch of candidates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pymbrl.models.world_models import (
    MDNRNN,
    Controller,
    ConvVAE,
    Mixture,
    frames_to_tensor,
    mixture_log_prob,
    sample_mixture,
)


@pytest.fixture(autouse=True)
def _seeded_initialisation():
    """Weights are drawn from torch's global generator: seed it so every run is the same."""
    torch.manual_seed(0)


def squares(n: int = 8) -> np.ndarray:
    """n black 64x64 frames, each with one coloured 20x20 square at one of four places."""
    frames = np.zeros((n, 64, 64, 3), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for i in range(n):
        r, c = divmod(i % 4, 2)
        frames[i, 8 + 28 * r:28 + 28 * r, 8 + 28 * c:28 + 28 * c] = colours[(i // 4) % 4]
    return frames


def mixture(log_weights, means, log_stds, lead=()) -> Mixture:
    """A Mixture from [K, z_dim] arrays, broadcast to leading shape ``lead``."""
    parts = [torch.as_tensor(np.asarray(a, np.float64)).expand(*lead, *np.shape(a)) for a in
             (log_weights, means, log_stds)]
    return Mixture(*parts, torch.zeros(lead, dtype=torch.float64), None)


# --------------------------------------------------------------------------------------------------
# V


def test_vae_reconstruction_loss_falls_on_a_fixed_batch():
    """Adam on eight coloured-square frames: the loss (summed squared error + floored KL) falls well
    below where it started, and its reported parts add up to it."""
    vae = ConvVAE(z_dim=8)
    frames = torch.from_numpy(squares(8))
    opt = torch.optim.Adam(vae.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(15):
        loss, parts = vae.loss(frames, generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        # The floor applies per frame, so the mean of the floored KLs is at least the floored mean.
        assert losses[-1] >= (parts["reconstruction"] + max(parts["kl"], 0.5 * 8)) * (1 - 1e-6)
    assert losses[-1] < 0.4 * losses[0]
    mu, logvar = vae.encode(frames)
    assert mu.shape == logvar.shape == (8, 8)
    recon = vae.decode(mu)
    assert recon.shape == (8, 3, 64, 64) and recon.min() >= 0 and recon.max() <= 1


def test_the_kl_floor_applies_to_each_frame():
    """The paper's loss: mean over frames of max(KL_i, kl_tolerance * z_dim). Two frames with KL
    about 2.2 and 13.5 against a floor of 4 give (4 + 13.5) / 2, not max((2.2 + 13.5) / 2, 4)."""
    vae = ConvVAE(z_dim=8)
    with torch.no_grad():
        for layer in (vae.mu, vae.logvar):
            layer.weight.zero_()
            layer.bias.zero_()
        vae.mu.weight[0, :] = 0.316
    frames = torch.zeros(2, 64, 64, 3, dtype=torch.uint8)
    frames[1] = 255
    mu, logvar = vae.encode(frames)
    kl = (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(-1)).detach()
    assert kl[0] < 4 < kl[1]
    loss, parts = vae.loss(frames, torch.Generator().manual_seed(0))
    assert float(loss.detach()) - parts["reconstruction"] == pytest.approx(float(kl.clamp(min=4).mean()), rel=1e-4)
    assert parts["kl"] == pytest.approx(float(kl.mean()), rel=1e-5)


def test_frames_to_tensor_layout_and_scale():
    """Channels-last uint8 frames of any leading shape become [N, 3, 64, 64] floats in [0, 1]."""
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64, 3), dtype=np.uint8)
    x = frames_to_tensor(frames)
    assert x.shape == (6, 3, 64, 64) and x.dtype == torch.float32
    torch.testing.assert_close(x[4, 2], torch.from_numpy(frames[1, 1, :, :, 2]).float() / 255)


@pytest.mark.parametrize("bad", [np.zeros((2, 64, 64, 3), np.float32), np.zeros((2, 32, 32, 3), np.uint8),
                                 np.zeros((2, 3, 64, 64), np.uint8), np.zeros((2, 64, 64, 4), np.uint8)])
def test_frames_of_the_wrong_dtype_or_shape_are_refused(bad):
    """A float, small, channels-first or RGBA frame names ``frames`` in its error, in V too."""
    with pytest.raises(ValueError, match="frames"):
        frames_to_tensor(bad)
    vae = ConvVAE(z_dim=4)
    with pytest.raises(ValueError, match="frames"):
        vae.encode(torch.as_tensor(bad))
    with pytest.raises(ValueError, match="frames"):
        vae.loss(torch.as_tensor(bad))


# --------------------------------------------------------------------------------------------------
# The mixture


def test_mixture_log_prob_matches_a_hand_computation():
    """log sum_k w_k N(x; m_k, s_k), per latent dimension, with components on the second-last axis."""
    weights = np.array([[0.2, 0.5], [0.3, 0.25], [0.5, 0.25]])  # [K=3, z_dim=2]
    means = np.array([[-1.0, 0.5], [0.0, 2.0], [1.5, -1.0]])
    stds = np.array([[0.5, 1.0], [1.0, 0.3], [2.0, 0.7]])
    x = np.array([[0.3, 0.1], [-2.0, 1.9], [1.5, -1.0], [4.0, 3.0]])  # 4 targets
    expected = np.zeros((4, 2))
    for n in range(4):
        for d in range(2):
            density = sum(weights[k, d] * math.exp(-0.5 * ((x[n, d] - means[k, d]) / stds[k, d]) ** 2)
                          / (stds[k, d] * math.sqrt(2 * math.pi)) for k in range(3))
            expected[n, d] = math.log(density)
    got = mixture_log_prob(mixture(np.log(weights), means, np.log(stds), (4,)), torch.from_numpy(x))
    assert got.shape == (4, 2)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_a_single_component_samples_with_std_scaled_by_sqrt_tau():
    """One Gaussian N(1, 2^2) per dimension: samples keep the mean and have std 2 sqrt(tau)."""
    n = 20_000
    m = mixture([[0.0, 0.0]], [[1.0, 1.0]], [[math.log(2.0)] * 2], (n,))
    for tau in (0.1, 1.0, 2.0):
        z = sample_mixture(m, tau, torch.Generator().manual_seed(1))
        assert z.shape == (n, 2)
        np.testing.assert_allclose(z.mean(0).numpy(), [1.0, 1.0], atol=0.1)
        np.testing.assert_allclose(z.std(0).numpy(), [2.0 * math.sqrt(tau)] * 2, rtol=0.03)


def test_temperature_reweights_the_components():
    """Weights 0.7 / 0.3 at means -10 / +10 (narrow): the heavier component's share is
    softmax(log w / tau): ~1 at tau 0.1, 0.7 at tau 1, ~0.60 at tau 2 (towards even)."""
    n = 20_000
    w = np.array([0.7, 0.3])
    m = mixture(np.log(w)[:, None].repeat(3, 1), [[-10.0] * 3, [10.0] * 3], np.full((2, 3), math.log(0.1)), (n,))
    shares = []
    for tau in (0.1, 1.0, 2.0):
        z = sample_mixture(m, tau, torch.Generator().manual_seed(2))
        near_heavy = (z + 10).abs() < 2
        near_light = (z - 10).abs() < 2
        assert bool((near_heavy | near_light).all())
        share = near_heavy.double().mean(0).numpy()
        expected = w ** (1 / tau) / (w ** (1 / tau)).sum()
        np.testing.assert_allclose(share, [expected[0]] * 3, atol=0.015)
        shares.append(share.mean())
    assert shares[0] > 0.99 and shares[0] > shares[1] > shares[2]


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_a_temperature_not_above_zero_is_refused(tau):
    m = mixture([[0.0]], [[0.0]], [[0.0]], (3,))
    with pytest.raises(ValueError, match="tau"):
        sample_mixture(m, tau)


# --------------------------------------------------------------------------------------------------
# M


def sequence(B: int = 3, T: int = 6, z_dim: int = 4, action_dim: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, z_dim, generator=g)
    actions = torch.nn.functional.one_hot(torch.randint(0, action_dim, (B, T), generator=g), action_dim).float()
    next_z = torch.randn(B, T, z_dim, generator=g)
    dones = torch.zeros(B, T)
    return z, actions, next_z, dones


def test_step_by_step_reproduces_forward():
    """Stepping M through a sequence gives forward's hidden states, mixtures and final state."""
    m = MDNRNN(4, 2, hidden=16, mixtures=3, reward_head=True)
    z, actions, _, _ = sequence()
    out, hs, final = m(z, actions)
    assert out.log_weights.shape == out.means.shape == out.log_stds.shape == (3, 6, 3, 4)
    assert out.done_logits.shape == out.rewards.shape == (3, 6) and hs.shape == (3, 6, 16)
    torch.testing.assert_close(out.log_weights.exp().sum(-2), torch.ones(3, 6, 4))
    state = m.initial_state(3)
    for t in range(6):
        step, state = m.step(z[:, t], actions[:, t], state)
        torch.testing.assert_close(state.h, hs[:, t], atol=1e-5, rtol=0)
        for got, want in zip(step, out):
            torch.testing.assert_close(got, want[:, t], atol=1e-5, rtol=0)
    torch.testing.assert_close(state.h, final.h, atol=1e-5, rtol=0)
    torch.testing.assert_close(state.c, final.c, atol=1e-5, rtol=0)


def test_loss_falls_on_a_tiny_deterministic_sequence():
    """next z = the action's sign on every dimension, the episode ends at the last step: M learns it
    (NLL and done loss both fall)."""
    m = MDNRNN(2, 2, hidden=16, mixtures=2)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 2, (8, 10), generator=g)
    actions = torch.nn.functional.one_hot(idx, 2).float()
    next_z = (2.0 * idx.float() - 1.0)[..., None].expand(8, 10, 2)
    z = torch.cat([torch.zeros(8, 1, 2), next_z[:, :-1]], 1)
    dones = torch.zeros(8, 10)
    dones[:, -1] = 1
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    first = last = None
    for i in range(80):
        loss, parts = m.loss(z, actions, next_z, dones)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or parts
        last = parts
    assert last["nll"] < first["nll"] - 2.0 and last["nll"] < 0  # a sharp density: negative NLL
    assert last["done"] < 0.5 * first["done"]


def test_done_weight_scales_only_the_done_steps():
    """loss(done_weight=w) - loss(done_weight=1) = (w - 1) * BCE at the done steps / steps; with no
    dones the weight changes nothing."""
    m = MDNRNN(4, 2, hidden=8, mixtures=2)
    z, actions, next_z, dones = sequence()
    base, _ = m.loss(z, actions, next_z, dones, done_weight=1.0)
    heavy, _ = m.loss(z, actions, next_z, dones, done_weight=10.0)
    torch.testing.assert_close(heavy, base)
    dones[0, 2] = dones[2, 5] = 1
    base, parts1 = m.loss(z, actions, next_z, dones, done_weight=1.0)
    heavy, parts10 = m.loss(z, actions, next_z, dones, done_weight=10.0)
    logits = m(z, actions)[0].done_logits
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, dones, reduction="none")
    torch.testing.assert_close(heavy - base, 9.0 * (bce * dones).sum() / dones.numel())
    assert parts10["nll"] == parts1["nll"] and parts10["done"] > parts1["done"]


def test_reward_head_needs_rewards_and_counts_their_error():
    m = MDNRNN(4, 2, hidden=8, mixtures=2, reward_head=True)
    z, actions, next_z, dones = sequence()
    with pytest.raises(ValueError, match="rewards"):
        m.loss(z, actions, next_z, dones)
    predicted = m(z, actions)[0].rewards.detach()
    loss_exact, parts = m.loss(z, actions, next_z, dones, rewards=predicted)
    loss_off, parts_off = m.loss(z, actions, next_z, dones, rewards=predicted + 2.0)
    assert parts["reward"] == pytest.approx(0.0, abs=1e-10)
    assert parts_off["reward"] == pytest.approx(4.0, rel=1e-5)
    torch.testing.assert_close(loss_off - loss_exact, torch.tensor(4.0))


def test_mask_leaves_padded_steps_out():
    """Changing next z, dones and rewards where the mask is False leaves the loss as it was;
    changing them on a real step does not."""
    m = MDNRNN(4, 2, hidden=8, mixtures=2, reward_head=True)
    z, actions, next_z, dones = sequence()
    rewards = torch.randn(3, 6, generator=torch.Generator().manual_seed(5))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = mask[2, 1:] = False
    loss, parts = m.loss(z, actions, next_z, dones, mask, rewards)
    next2, dones2, rewards2 = next_z.clone(), dones.clone(), rewards.clone()
    next2[~mask] += 50.0
    dones2[~mask] = 1.0
    rewards2[~mask] -= 30.0
    padded, parts_padded = m.loss(z, actions, next2, dones2, mask, rewards2)
    torch.testing.assert_close(padded, loss)
    assert parts_padded == parts
    next2[1, 3] += 5.0
    assert m.loss(z, actions, next2, dones2, mask, rewards2)[0] > loss + 1e-3
    # The mean runs over real steps only: one real step alone gives that step's loss.
    one = torch.zeros(3, 6, dtype=torch.bool)
    one[1, 3] = True
    out = m(z, actions)[0]
    nll = -mixture_log_prob(out, next_z)[1, 3].mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out.done_logits[1, 3], dones[1, 3])
    expected = nll + bce + (out.rewards[1, 3] - rewards[1, 3]) ** 2
    torch.testing.assert_close(m.loss(z, actions, next_z, dones, one, rewards)[0], expected)


def test_mismatched_actions_are_refused():
    m = MDNRNN(4, 2, hidden=8)
    z, actions, _, _ = sequence()
    with pytest.raises(ValueError, match="actions"):
        m(z, actions[..., :1])
    with pytest.raises(ValueError, match="actions"):
        m.step(z[:, 0], actions[:2, 0], m.initial_state(3))


# --------------------------------------------------------------------------------------------------
# C


def test_controller_num_params():
    assert Controller(10, 3).num_params == 10 * 3 + 3
    assert Controller(10, 3, hidden=5).num_params == 10 * 5 + 5 + 5 * 3 + 3


def test_linear_controller_is_tanh_of_x_w_plus_b_with_w_first_row_major():
    """The flat vector is W [in, out] row-major, then b."""
    c = Controller(3, 2)
    params = torch.arange(8, dtype=torch.float32) / 10 - 0.35
    W = params[:6].reshape(3, 2)
    b = params[6:]
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.3, -1.0]])
    out = c(params, x)
    assert out.shape == (2, 2)
    expected = [[math.tanh(sum(float(x[m, i]) * float(W[i, j]) for i in range(3)) + float(b[j])) for j in range(2)]
                for m in range(2)]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-7)
    # One weight at a time: W[1, 0] is entry 2 (row-major), b[1] the last.
    unit = torch.zeros(8)
    unit[2] = 1.0
    np.testing.assert_allclose(c(unit, x)[:, 0].numpy(), np.tanh(x[:, 1].numpy()), rtol=1e-6)
    np.testing.assert_allclose(c(unit, x)[:, 1].numpy(), [0.0, 0.0])
    unit = torch.zeros(8)
    unit[7] = 2.0
    np.testing.assert_allclose(c(unit, x).numpy(), [[0.0, math.tanh(2.0)]] * 2, rtol=1e-6)


def test_hidden_controller_layout():
    """With a hidden layer: W1 [in, h], b1, W2 [h, out], b2."""
    c = Controller(3, 2, hidden=4)
    g = torch.Generator().manual_seed(0)
    params = torch.randn(c.num_params, generator=g)
    x = torch.randn(5, 3, generator=g)
    W1, b1 = params[:12].reshape(3, 4), params[12:16]
    W2, b2 = params[16:24].reshape(4, 2), params[24:]
    torch.testing.assert_close(c(params, x), torch.tanh(torch.tanh(x @ W1 + b1) @ W2 + b2))


@pytest.mark.parametrize("hidden", [0, 6])
def test_batched_candidates_equal_separate_calls(hidden):
    c = Controller(5, 3, hidden)
    g = torch.Generator().manual_seed(1)
    params = 3 * torch.randn(4, c.num_params, generator=g)
    inputs = torch.randn(4, 7, 5, generator=g)
    out = c(params, inputs)
    assert out.shape == (4, 7, 3)
    assert out.abs().max() <= 1.0 and out.abs().max() > 0.9  # large weights saturate, never past 1
    for p in range(4):
        torch.testing.assert_close(out[p], c(params[p], inputs[p]))


def test_controller_refuses_wrong_shapes():
    c = Controller(5, 3)
    with pytest.raises(ValueError, match="params"):
        c(torch.zeros(c.num_params + 1), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="params"):
        c(torch.zeros(c.num_params), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="params"):
        c(torch.zeros(3, c.num_params), torch.zeros(2, 7, 5))  # 3 candidates, inputs for 2
    with pytest.raises(ValueError, match="params"):
        c(torch.zeros(3, c.num_params), torch.zeros(3, 5))  # batched params need [P, M, in]
