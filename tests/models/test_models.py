"""pymbrl.models: batched ensemble layers, the Gaussian ensemble, the trainer's bootstrap, holdout,
early stopping and elites, and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pymbrl.models import DynamicsModel, EnsembleLinear, GaussianEnsemble, ModelTrainer, Normalizer


@pytest.fixture(autouse=True)
def _seeded_initialisation():
    """Model weights are drawn from torch's global generator: seed it so every run is the same."""
    torch.manual_seed(0)


def linear_system(n: int, seed: int = 0):
    """x' = x + 0.1 A x + 0.05 B a, r = c . x: exactly learnable by a residual model."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=g)
    act = torch.rand(n, 1, generator=g) * 2 - 1
    a = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.5], [0.2, 0.0, -0.3]])
    nxt = obs + 0.1 * obs @ a.T + 0.05 * act
    rew = obs @ torch.tensor([1.0, -0.5, 0.25])
    return obs, act, nxt, rew


def test_ensemble_linear_is_each_member_s_own_linear_layer():
    layer = EnsembleLinear(4, 5, 3)
    x = torch.randn(4, 7, 5)
    out = layer(x)
    for m in range(4):
        expected = x[m] @ layer.weight[m] + layer.bias[m]
        assert torch.allclose(out[m], expected, atol=1e-6)


def test_members_are_independent():
    model = GaussianEnsemble(3, 1, ensemble_size=3, num_elites=2, hidden=8, layers=2)
    obs, act, nxt, rew = linear_system(10)
    mean, logvar = model(obs, act)
    mean[1].sum().backward()
    grads = model.hidden[0].weight.grad
    assert grads[1].abs().sum() > 0 and grads[0].abs().sum() == 0 and grads[2].abs().sum() == 0


def test_shared_rows_equal_per_member_rows_and_logvar_is_bounded():
    model = GaussianEnsemble(3, 2, ensemble_size=4, num_elites=2, hidden=16, layers=3)
    obs, act = torch.randn(6, 3) * 50, torch.randn(6, 2) * 50
    mean, logvar = model(obs, act)
    mean2, logvar2 = model(obs.expand(4, 6, 3), act.expand(4, 6, 2))
    assert mean.shape == logvar.shape == (4, 6, 4)
    assert torch.allclose(mean, mean2) and torch.allclose(logvar, logvar2)
    assert (logvar < model.max_logvar).all() and (logvar > model.min_logvar).all()


def test_normalizer_standardises_and_leaves_constant_features_alone():
    norm = Normalizer(3)
    x = torch.stack([torch.randn(500) * 4 + 2, torch.full((500,), 7.0), torch.rand(500)], dim=1)
    norm.fit(x)
    y = norm(x)
    assert torch.allclose(y[:, [0, 2]].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y[:, [0, 2]].std(0, unbiased=False), torch.ones(2), atol=1e-4)
    assert float(norm.std[1]) == 1.0 and torch.allclose(y[:, 1], torch.zeros(500))


def _recording(model):
    """Wraps model.loss to record, per call, the row ids (feature 0 of obs holds the row id)."""
    calls = []
    loss = model.loss

    def recorded(obs, act, target):
        calls.append(obs[..., 0].round().long().clone())
        return loss(obs, act, target)

    model.loss = recorded
    return calls


def test_bootstrap_samples_are_drawn_once_per_train_call():
    """mbrl-lib redrew the bootstrap indices at every epoch; here every epoch of a train call must
    show each member exactly its own bootstrap sample."""
    obs, act, nxt, rew = linear_system(600)
    obs[:, 0] = torch.arange(600, dtype=torch.float32)  # row ids, to see which rows were used
    model = GaussianEnsemble(3, 1, ensemble_size=3, num_elites=2, hidden=8, layers=2)
    calls = _recording(model)
    result = ModelTrainer(model, seed=1, max_epochs=4, patience=10, batch_size=100).train(obs, act, nxt, rew)
    assert result.epochs == 4 and result.bootstrap.shape == (3, 480)
    per_epoch = len(calls) // 4
    for e in range(4):
        seen = torch.cat(calls[e * per_epoch:(e + 1) * per_epoch], dim=1)  # [E, 480]
        for m in range(3):
            assert torch.equal(seen[m].sort().values, result.bootstrap[m].sort().values)
    # Bootstrap: with replacement, so members differ and repeat rows.
    assert not torch.equal(result.bootstrap[0].sort().values, result.bootstrap[1].sort().values)
    assert result.bootstrap[0].unique().numel() < 480


def test_every_train_call_uses_all_the_transitions_it_is_given():
    """mbrl-lib's MBPO threw earlier model data away at retraining: a train call on the whole
    buffer must split all of it between training and holdout."""
    obs, act, nxt, rew = linear_system(1000)
    model = GaussianEnsemble(3, 1, ensemble_size=2, num_elites=1, hidden=8, layers=2)
    trainer = ModelTrainer(model, seed=0, max_epochs=1)
    trainer.train(obs[:500], act[:500], nxt[:500], rew[:500])
    result = trainer.train(obs, act, nxt, rew)
    used = torch.cat([result.bootstrap.reshape(-1), result.holdout]).unique()
    assert result.holdout.numel() == 200
    assert used.numel() > 900 and int(used.max()) >= 990 and int(used.min()) <= 9
    assert set(result.holdout.tolist()).isdisjoint(result.bootstrap.reshape(-1).tolist())


def test_early_stopping_waits_patience_epochs_and_keeps_the_best_weights():
    obs, act, nxt, rew = linear_system(400)
    model = GaussianEnsemble(3, 1, ensemble_size=2, num_elites=1, hidden=8, layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = ModelTrainer(model, seed=0, lr=0.0, patience=3).train(obs, act, nxt, rew)
    assert result.epochs == 3  # nothing can improve with lr 0
    for name, value in model.state_dict().items():
        if "normalizer" not in name and name != "elites":
            assert torch.equal(value, before[name]), name


def test_training_learns_and_elites_are_the_best_members_on_holdout():
    obs, act, nxt, rew = linear_system(2000)
    model = GaussianEnsemble(3, 1, ensemble_size=4, num_elites=2, hidden=32, layers=2)
    target = torch.cat([nxt - obs, rew[:, None]], dim=1)
    first = model.mse(obs, act, target).mean()
    result = ModelTrainer(model, seed=0, max_epochs=40).train(obs, act, nxt, rew)
    hold = result.holdout
    mse = model.mse(obs[hold], act[hold], target[hold])
    assert torch.allclose(mse, result.holdout_mse, rtol=1e-4)  # the kept weights are the reported ones
    assert torch.equal(result.elites, torch.argsort(mse)[:2].sort().values)
    assert float(mse.max()) < 0.1 * float(first)
    assert result.train_loss[-1] < result.train_loss[0]


def test_deterministic_model_learns_a_linear_system():
    obs, act, nxt, rew = linear_system(2000)
    model = DynamicsModel(3, 1, hidden=32, layers=2)
    result = ModelTrainer(model, seed=0, max_epochs=60).train(obs, act, nxt, rew)
    assert float(result.holdout_mse) < 1e-3
    next_obs, reward = model.sample(obs[:100], act[:100])
    assert torch.allclose(next_obs, nxt[:100], atol=0.1) and torch.allclose(reward, rew[:100], atol=0.1)


def test_sampling_uses_only_the_elites():
    model = GaussianEnsemble(2, 1, ensemble_size=3, num_elites=2, hidden=8, layers=1)
    model.elites.copy_(torch.tensor([0, 2]))
    with torch.no_grad():
        model.head.bias[1].fill_(1e4)  # member 1 predicts absurd changes
    obs, act = torch.zeros(500, 2), torch.zeros(500, 1)
    next_obs, reward = model.sample(obs, act, generator=torch.Generator().manual_seed(0))
    assert next_obs.abs().max() < 1e3 and reward.abs().max() < 1e3
    mean_obs, _ = model.sample(obs, act, deterministic=True)
    means, _ = model(obs, act)
    assert torch.allclose(mean_obs, means[[0, 2], :, :2].mean(0))


@pytest.mark.parametrize("change, match", [
    (lambda d: (d[0][:, :2], *d[1:]), "obs"),
    (lambda d: (d[0], d[1][:-1], *d[2:]), "action"),
    (lambda d: (*d[:2], d[2][:, :2], d[3]), "next_obs"),
    (lambda d: (*d[:3], d[3][:, None]), "reward"),
    (lambda d: tuple(x[:0] for x in d), "at least one transition"),
])
def test_bad_shapes_and_empty_data_are_refused(change, match):
    data = linear_system(50)
    with pytest.raises(ValueError, match=match):
        ModelTrainer(GaussianEnsemble(3, 1, hidden=8, layers=1)).train(*change(data))


@pytest.mark.parametrize("field", [0, 1, 2, 3])
def test_non_finite_training_data_names_the_offending_row(field):
    data = list(linear_system(50))
    data[field] = data[field].clone()
    data[field][17] = float("nan") if field != 2 else float("inf")
    model = GaussianEnsemble(3, 1, hidden=8, layers=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="row 17"):
        ModelTrainer(model).train(*data)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="num_elites"):
        GaussianEnsemble(3, 1, ensemble_size=3, num_elites=4)
    with pytest.raises(TypeError, match="model"):
        ModelTrainer(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="holdout_ratio"):
        ModelTrainer(GaussianEnsemble(3, 1, hidden=8, layers=1), holdout_ratio=1.5)


def test_weight_decay_follows_mbpo_per_layer_and_spares_biases():
    model = GaussianEnsemble(3, 1)  # 4 hidden layers + the output layer, as in MBPO
    groups = ModelTrainer(model).optimizer.param_groups
    layers = [*model.hidden, model.head]
    decays = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert [decays[id(layer.weight)] for layer in layers] == [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4]
    assert all(decays[id(layer.bias)] == 0.0 for layer in layers)
    assert decays[id(model.max_logvar)] == 0.0
    assert len(decays) == len(list(model.parameters()))
    flat = ModelTrainer(GaussianEnsemble(3, 1, layers=2), weight_decay=1e-3).optimizer.param_groups
    assert sorted({g["weight_decay"] for g in flat}) == [0.0, 1e-3]


def test_inference_in_row_blocks_equals_one_piece():
    model = GaussianEnsemble(3, 2, ensemble_size=4, num_elites=3, hidden=16, layers=2)
    obs, act = torch.randn(1000, 3), torch.randn(1000, 2)
    with torch.no_grad():
        whole = model(obs, act)
        model.INFERENCE_CHUNK = 64
        blocks = model(obs, act)
        elites = model(obs[:300].expand(3, 300, 3), act[:300].expand(3, 300, 2), model.elites)
    assert torch.equal(whole[0], blocks[0]) and torch.equal(whole[1], blocks[1])
    assert torch.equal(elites[0], whole[0][model.elites, :300])
