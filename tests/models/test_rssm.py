"""pymbrl.models.rssm: symlog, two-hot, categorical latents, KL free bits, the RSSM's resets and
shapes, image encoder/decoder checks, argument errors and a short world-model fit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pymbrl.models.rssm import (
    RSSM,
    ImageDecoder,
    ImageEncoder,
    RSSMConfig,
    TwoHot,
    WorldModel,
    kl_balance_losses,
    sample_one_hot,
    symexp,
    symexp_bins,
    symlog,
    two_hot,
    two_hot_mean,
    unimix_logits,
)


@pytest.fixture(autouse=True)
def _seeded_initialisation():
    """Weights are drawn from torch's global generator: seed it so every run is the same."""
    torch.manual_seed(0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_subnormal=False), min_size=1, max_size=30))
def test_symexp_inverts_symlog(values):
    x = torch.tensor(values, dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(symlog(symexp(x.clamp(-30, 30))), x.clamp(-30, 30), rtol=1e-9, atol=1e-12)


def test_two_hot_sums_to_one_decodes_back_and_clamps():
    bins = symexp_bins().double()
    x = torch.tensor([-1e5, -3.7, -0.01, 0.0, 0.5, 2.0, 123.4, 1e6], dtype=torch.float64)
    weights = two_hot(x, bins)
    assert weights.shape == (8, 255)
    torch.testing.assert_close(weights.sum(-1), torch.ones(8, dtype=torch.float64))
    assert (weights > 0).sum(-1).max() <= 2
    torch.testing.assert_close((weights * symlog(bins)).sum(-1), symlog(x))
    # Logits equal to the log of the target decode to x itself.
    torch.testing.assert_close(two_hot_mean(weights.clamp_min(1e-300).log(), bins), x, rtol=1e-6, atol=1e-9)
    small = symexp_bins(5, -2.0, 2.0).double()
    outside = two_hot(torch.tensor([-100.0, 100.0]), small)
    torch.testing.assert_close(outside, torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0]], dtype=torch.float64))
    coder = TwoHot(7, -3.0, 3.0)
    assert coder.loss(torch.zeros(4, 7), torch.zeros(4)).shape == (4,)


def test_unimix_keeps_every_probability_above_mix_over_classes():
    logits = torch.tensor([[[50.0, -50.0, 0.0, -50.0]]])
    probs = unimix_logits(logits, 0.01).exp()
    assert probs.min() >= 0.01 / 4 - 1e-7
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 1))


def test_straight_through_sample_is_one_hot_with_gradients():
    logits = torch.randn(5, 3, 6, requires_grad=True)
    sample = sample_one_hot(logits, torch.Generator().manual_seed(1))
    assert sample.shape == (5, 3, 6)
    assert torch.equal(sample.detach().sum(-1), torch.ones(5, 3))
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    (sample * torch.arange(6.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_kl_free_bits():
    logits = torch.randn(2, 3, 4, 5)
    dyn, rep = kl_balance_losses(logits, logits.clone(), free_nats=1.0)
    torch.testing.assert_close(dyn, torch.ones(2, 3))
    torch.testing.assert_close(rep, torch.ones(2, 3))
    dyn, rep = kl_balance_losses(10 * logits, -10 * logits, free_nats=1.0)
    assert (dyn > 1.0).all() and (rep > 1.0).all()


def test_observe_restarts_at_is_first():
    rssm = RSSM(2, 8, RSSMConfig.tiny(), seed=0)
    embeds, actions = torch.randn(3, 6, 8), torch.randn(3, 6, 2)
    is_first = torch.zeros(3, 6, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[:, 3] = True
    post, prior = rssm.observe(embeds, actions, is_first, sample=False)
    fresh_post, fresh_prior = rssm.observe(embeds[:, 3:], actions[:, 3:], is_first[:, 3:], sample=False)
    for a, b in zip((post, prior), (fresh_post, fresh_prior)):
        for x, y in zip(a, b):
            torch.testing.assert_close(x[:, 3:], y)
    # The action at a reset belongs to the previous episode and must not matter.
    other = actions.clone()
    other[:, 3] = 100.0
    torch.testing.assert_close(rssm.observe(embeds, other, is_first, sample=False)[0].deter, post.deter)


def test_imagine_and_feature_shapes():
    config = RSSMConfig.tiny()
    rssm = RSSM(2, 8, config, seed=0)
    post, _ = rssm.observe(torch.randn(3, 5, 8), torch.randn(3, 5, 2), torch.zeros(3, 5, dtype=torch.bool))
    assert post.deter.shape == (3, 5, 64) and post.stoch.shape == (3, 5, 4, 4)
    assert rssm.features(post).shape == (3, 5, config.features)
    states, actions = rssm.imagine(post, lambda f: torch.tanh(f[:, :2]), horizon=4)
    assert states.deter.shape == (5, 15, 64) and states.stoch.shape == (5, 15, 4, 4)
    assert actions.shape == (4, 15, 2)
    torch.testing.assert_close(states.deter[0], post.deter.reshape(15, 64))


def test_world_model_loss_falls_on_a_fixed_batch():
    model = WorldModel(4, 2, RSSMConfig.tiny(), seed=0)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(8, 10, 4, generator=g).cumsum(1)
    actions = torch.randn(8, 10, 2, generator=g)
    rewards = obs[..., 0].clone()
    is_first = torch.zeros(8, 10, dtype=torch.bool)
    is_first[:, 0] = True
    is_terminal = torch.zeros(8, 10, dtype=torch.bool)
    is_terminal[:, -1] = True
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        total, parts = model.loss(obs, actions, rewards, is_first, is_terminal)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        first = total.item() if first is None else first
    assert parts["posterior"].deter.shape == (8, 10, 64)
    assert set(parts) >= {"decoder", "reward", "continue", "kl_dynamics", "kl_representation"}
    assert total.item() < 0.35 * first, (first, total.item())
    assert parts["reward"] < 1.5 and parts["decoder"] < 1.0, parts


def test_image_encoder_and_decoder_shapes_and_checks():
    encoder, decoder = ImageEncoder(depth=4), ImageDecoder(10, depth=4)
    obs = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    embed = encoder(obs)
    assert embed.shape == (2, 3, encoder.embed_dim) and encoder.embed_dim == 32 * 16
    features = torch.randn(2, 3, 10)
    assert decoder(features).shape == (2, 3, 64, 64, 3)
    assert decoder.loss(features, obs).shape == (2, 3)
    with pytest.raises(ValueError, match="obs"):
        encoder(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="obs"):
        encoder(torch.zeros(2, 64, 64, 3, dtype=torch.float64))
    model = WorldModel((64, 64, 3), 2, RSSMConfig.tiny(), seed=0)
    total, _ = model.loss(obs, torch.zeros(2, 3, 2), torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool),
                          torch.zeros(2, 3, dtype=torch.bool))
    assert torch.isfinite(total)


def test_bad_arguments_name_the_argument():
    config = RSSMConfig.tiny()
    rssm = RSSM(2, 8, config, seed=0)
    with pytest.raises(ValueError, match="action_dim"):
        RSSM(0, 8, config)
    with pytest.raises(TypeError, match="config"):
        RSSM(2, 8, {"deter": 3})
    with pytest.raises(ValueError, match="deter"):
        RSSMConfig(deter=0)
    with pytest.raises(ValueError, match="unimix"):
        RSSMConfig(unimix=2.0)
    with pytest.raises(ValueError, match="embeds"):
        rssm.observe(torch.randn(3, 5, 7), torch.randn(3, 5, 2), torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="actions"):
        rssm.observe(torch.randn(3, 5, 8), torch.randn(3, 5, 3), torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_first"):
        rssm.observe(torch.randn(3, 5, 8), torch.randn(3, 5, 2), torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="horizon"):
        rssm.imagine(rssm.initial(2), lambda f: f[:, :2], horizon=-1)
    with pytest.raises(ValueError, match="mix"):
        unimix_logits(torch.zeros(2, 3), mix=1.5)
    with pytest.raises(ValueError, match="bins"):
        two_hot(torch.zeros(3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="obs_shape"):
        WorldModel((32, 32, 3), 2, config)
    with pytest.raises(ValueError, match="high"):
        symexp_bins(10, 1.0, -1.0)
