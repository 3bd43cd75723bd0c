"""Training a dynamics model on transitions: bootstrapped members, a held-out split, early
stopping and elite selection, as in MBPO (Janner et al. 2019) and PETS (Chua et al. 2018).

Two bugs mbrl-lib had to fix (its PR #61) cannot happen here by construction, and the tests check
both: every ``train`` call trains on all the transitions it is given (nothing from earlier data is
dropped at retraining), and each member's bootstrap sample is drawn once per ``train`` call, not
again at every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pymbrl._checks import integer, real, resolve_seed
from pymbrl.models.ensemble import DynamicsModel, GaussianEnsemble


@dataclass
class TrainResult:
    """What a ``ModelTrainer.train`` call did.

    Attributes
    ----------
    epochs : int -- epochs run before early stopping (or the cap).
    train_loss : list[float] -- mean training loss per epoch.
    holdout_mse : Tensor float [E] (ensembles) or [1] -- held-out MSE of the kept weights.
    elites : Tensor int64 [num_elites] -- for ensembles, the members now used for prediction.
    bootstrap : Tensor int64 [E, n_train] -- the rows each member trained on (indices into the data).
    holdout : Tensor int64 [n_holdout] -- the held-out rows.
    """

    epochs: int
    train_loss: list[float] = field(default_factory=list)
    holdout_mse: torch.Tensor | None = None
    elites: torch.Tensor | None = None
    bootstrap: torch.Tensor | None = None
    holdout: torch.Tensor | None = None


def check_transitions(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor,
                      obs_dim: int, act_dim: int) -> None:
    """Raises ValueError naming the argument for a wrong shape, an empty set, or a non-finite value
    (with the first offending row)."""
    n = obs.shape[0] if obs.dim() >= 1 else 0
    expected = {"obs": (obs, (n, obs_dim)), "action": (act, (n, act_dim)), "next_obs": (next_obs, (n, obs_dim)),
                "reward": (reward, (n,))}
    for name, (x, shape) in expected.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
        if tuple(x.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")
    if n == 0:
        raise ValueError("obs: expected at least one transition, got none (an empty buffer?)")
    for name, (x, _) in expected.items():
        bad = ~torch.isfinite(x.reshape(n, -1)).all(dim=1)
        if bool(bad.any()):
            row = int(bad.nonzero()[0])
            raise ValueError(f"{name}: expected finite values, row {row} is {x[row].tolist()}")


class ModelTrainer:
    """Trains a :class:`GaussianEnsemble` (or a :class:`DynamicsModel`) on transitions.

    Parameters
    ----------
    model : GaussianEnsemble or DynamicsModel
    lr : float
        Adam learning rate, 1e-3 (MBPO).
    weight_decay : float or None
        L2 penalty on the weights of every layer; None: MBPO's per-layer values, 2.5e-5, 5e-5,
        7.5e-5, 7.5e-5 and 1e-4 from the first layer to the output (spread evenly over the
        layers for other depths). Biases and the log-variance bounds are not penalised.
    holdout_ratio : float
        Fraction of the transitions held out to choose elites and to stop, 0.2.
    batch_size : int
        256.
    patience : int
        Epochs without a 1% improvement of any member's held-out MSE before stopping, 5.
    max_epochs : int or None
        A cap on epochs per ``train`` call (None: until early stopping).
    seed : int or None
        Seeds the split, the bootstrap samples and the minibatch order.
    """

    def __init__(self, model: GaussianEnsemble | DynamicsModel, *, lr: float = 1e-3, weight_decay: float | None = None,
                 holdout_ratio: float = 0.2, batch_size: int = 256, patience: int = 5, max_epochs: int | None = None,
                 seed: int | None = None):
        if not isinstance(model, (GaussianEnsemble, DynamicsModel)):
            raise TypeError(f"model: expected a GaussianEnsemble or a DynamicsModel, got {type(model).__name__}")
        self.model = model
        self.holdout_ratio = real(holdout_ratio, "holdout_ratio", low=0.0, high=0.9)
        self.batch_size = integer(batch_size, "batch_size")
        self.patience = integer(patience, "patience")
        self.max_epochs = integer(max_epochs, "max_epochs", optional=True)
        self.optimizer = torch.optim.Adam(_param_groups(model, weight_decay), lr=real(lr, "lr", low=0.0))
        self.generator = torch.Generator().manual_seed(resolve_seed(seed) % 2**63)

    @property
    def members(self) -> int:
        return self.model.ensemble_size if isinstance(self.model, GaussianEnsemble) else 1

    def train(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor,
              reward: torch.Tensor) -> TrainResult:
        """Fits the model to all the given transitions (pass the whole replay buffer each time).

        obs, next_obs float [N, obs_dim]; action float [N, act_dim]; reward float [N]. The rows are
        split once into training and held-out parts; each member trains on its own bootstrap sample
        of the training part (with replacement, drawn once for this call); after every epoch each
        member's held-out MSE is measured and its best weights kept; training stops when no member
        improved by 1% for ``patience`` epochs. The ensemble's elites become the members with the
        lowest held-out MSE.
        """
        model = self.model
        check_transitions(obs, action, next_obs, reward, model.obs_dim, model.act_dim)
        device = next(model.parameters()).device
        obs, action, next_obs, reward = (t.to(device=device, dtype=torch.float32) for t in (obs, action, next_obs, reward))
        target = torch.cat([next_obs - obs, reward[:, None]], dim=1)
        n = obs.shape[0]
        order = torch.randperm(n, generator=self.generator).to(device)
        n_hold = int(n * self.holdout_ratio) if n > 1 else 0
        hold, train = order[:n_hold], order[n_hold:]
        if n_hold == 0:
            hold = train  # too little data to hold any out: judge on the training rows
        model.normalizer.fit(torch.cat([obs[train], action[train]], dim=1))
        E = self.members
        pick = torch.randint(train.numel(), (E, train.numel()), generator=self.generator).to(device)
        bootstrap = train[pick]  # [E, n_train], fixed for the whole call

        def holdout_mse() -> torch.Tensor:
            with torch.no_grad():
                if E == 1:
                    return ((model(obs[hold], action[hold]) - target[hold]) ** 2).mean().reshape(1)
                return model.mse(obs[hold], action[hold], target[hold])

        best = holdout_mse()
        best_state = {k: v.clone() for k, v in model.state_dict().items()}
        result = TrainResult(epochs=0, bootstrap=bootstrap, holdout=hold)
        stale = 0
        while self.max_epochs is None or result.epochs < self.max_epochs:
            shuffle = torch.argsort(torch.rand(E, bootstrap.shape[1], generator=self.generator), dim=1).to(device)
            rows = torch.gather(bootstrap, 1, shuffle)
            total, batches = 0.0, 0
            for start in range(0, rows.shape[1], self.batch_size):
                idx = rows[:, start:start + self.batch_size]
                if E == 1:
                    loss = model.loss(obs[idx[0]], action[idx[0]], target[idx[0]])
                else:
                    loss = model.loss(obs[idx], action[idx], target[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += float(loss.detach())
                batches += 1
            result.epochs += 1
            result.train_loss.append(total / batches)
            mse = holdout_mse()
            improved = (best - mse) / best.clamp(min=1e-12) > 0.01
            if bool(improved.any()):
                self._keep(best_state, improved)
                best = torch.where(improved, mse, best)
                stale = 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        model.load_state_dict(best_state)
        result.holdout_mse = best
        if isinstance(model, GaussianEnsemble):
            model.elites.copy_(torch.argsort(best)[: model.num_elites].sort().values)
            result.elites = model.elites.clone()
        return result

    def _keep(self, best_state: dict[str, torch.Tensor], improved: torch.Tensor) -> None:
        """Copies the current weights of the improved members into best_state (ensemble tensors are
        indexed by member on dimension 0; the shared ones follow any improvement)."""
        for name, value in self.model.state_dict().items():
            if self.members > 1 and value.dim() >= 1 and value.shape[0] == self.members and "normalizer" not in name:
                best_state[name][improved] = value[improved]
            else:
                best_state[name] = value.clone()


__all__ = ["ModelTrainer", "TrainResult", "check_transitions"]


MBPO_WEIGHT_DECAY = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


def _param_groups(model: GaussianEnsemble | DynamicsModel, weight_decay: float | None) -> list[dict]:
    """One optimizer group per layer's weight with its L2 penalty, and one undecayed group."""
    if isinstance(model, GaussianEnsemble):
        layers = [*model.hidden, model.head]
    else:
        layers = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    if weight_decay is not None:
        decays = [real(weight_decay, "weight_decay", low=0.0)] * len(layers)
    elif len(layers) == len(MBPO_WEIGHT_DECAY):
        decays = list(MBPO_WEIGHT_DECAY)
    else:
        decays = torch.linspace(MBPO_WEIGHT_DECAY[0], MBPO_WEIGHT_DECAY[-1], len(layers)).tolist()
    weights = {id(layer.weight) for layer in layers}
    groups = [{"params": [layer.weight], "weight_decay": d} for layer, d in zip(layers, decays)]
    groups.append({"params": [p for p in model.parameters() if id(p) not in weights], "weight_decay": 0.0})
    return groups
