"""GameBuffer (MuZero) against a pure-Python model of its documented rules: which games it keeps,
and the unroll targets of every sampled position."""

import os
import re
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pymbrl.replay import GameBatch, GameBuffer, ReplayBuffer
from pymbrl.replay.files import write_file

from .helpers import chi_square, chi_square_threshold, make_spec

A = 4
OBS_SHAPE = (2, 3)


def random_game(rng, length, num_actions=A, obs_shape=OBS_SHAPE, obs_dtype=np.float32, terminated=None):
    """A game as add_game takes it, with float32-exact values (the reference then sums exactly what
    the buffer stores)."""
    if np.dtype(obs_dtype).kind == "f":
        obs = rng.normal(size=(length, *obs_shape)).astype(obs_dtype)
    else:
        obs = rng.integers(0, 256, size=(length, *obs_shape)).astype(obs_dtype)
    return {
        "obs": obs,
        "actions": rng.integers(0, num_actions, length),
        "rewards": rng.normal(size=length).astype(np.float32),
        "root_values": (5 * rng.normal(size=length)).astype(np.float32),
        "policies": rng.dirichlet(np.ones(num_actions), size=length).astype(np.float32),
        "terminated": bool(rng.random() < 0.5) if terminated is None else terminated,
        "final_value": float(np.float32(rng.normal())),
    }


def add(buf, game, **kwargs):
    return buf.add_game(game["obs"], game["actions"], game["rewards"], game["root_values"], game["policies"],
                        terminated=game["terminated"], final_value=game["final_value"], **kwargs)


class Model:
    """The games a buffer of this capacity keeps (whole oldest games evicted first) and their ids."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.games = []  # (first id, game), oldest first
        self.end = 0

    def add(self, game):
        length = len(game["actions"])
        while sum(len(g["actions"]) for _, g in self.games) + length > self.capacity:
            self.games.pop(0)
        self.games.append((self.end, game))
        self.end += length
        return self.end - length

    @property
    def oldest(self):
        return self.games[0][0] if self.games else self.end

    def __len__(self):
        return self.end - self.oldest

    def locate(self, id_):
        for first, game in self.games:
            if first <= id_ < first + len(game["actions"]):
                return game, id_ - first
        raise KeyError(id_)


def reference_targets(game, t, unroll_steps, td_steps, discount):
    """The documented target rules, written out position by position in float64."""
    T = len(game["actions"])
    r = game["rewards"].astype(np.float64)
    v = game["root_values"].astype(np.float64)
    term, fv = game["terminated"], float(np.float32(game["final_value"]))
    d, n = discount, td_steps
    out = {k: [] for k in ("values", "value_mask", "rewards", "reward_mask", "mask", "policies")}
    for k in range(unroll_steps + 1):
        u = t + k
        if u < T:
            value = sum(d ** i * r[u + i] for i in range(min(n, T - u)))
            if u + n < T:
                value += d ** n * v[u + n]
            elif not term:
                value += d ** (T - u) * fv
            out["values"].append(value)
            out["value_mask"].append(1.0)
            out["mask"].append(1.0)
            out["policies"].append(game["policies"][u])
        else:
            out["values"].append(0.0)
            out["value_mask"].append(1.0 if term else 0.0)
            out["mask"].append(0.0)
            out["policies"].append(np.zeros(game["policies"].shape[1], np.float32))
        if k == 0:
            out["rewards"].append(0.0)
            out["reward_mask"].append(0.0)
        elif u - 1 < T:
            out["rewards"].append(r[u - 1])
            out["reward_mask"].append(1.0)
        else:
            out["rewards"].append(0.0)
            out["reward_mask"].append(1.0 if term else 0.0)
    return out


def check_batch(batch, model, buf):
    """Every field of a sampled batch against the model and the reference targets."""
    K = buf.unroll_steps
    B = len(batch.indices)
    assert isinstance(batch, GameBatch)
    assert batch.obs.shape == (B, *buf.obs_shape) and batch.obs.dtype == torch.from_numpy(np.zeros(0, buf.obs_dtype)).dtype
    assert batch.actions.shape == (B, K) and batch.actions.dtype == torch.int64
    for name in ("target_values", "target_rewards", "mask", "value_mask", "reward_mask"):
        assert getattr(batch, name).shape == (B, K + 1) and getattr(batch, name).dtype == torch.float32, name
    assert batch.target_policies.shape == (B, K + 1, buf.num_actions)
    assert batch.indices.dtype == torch.int64 and batch.weights.dtype == torch.float32
    for b, id_ in enumerate(batch.indices.tolist()):
        game, t = model.locate(id_)
        ref = reference_targets(game, t, K, buf.td_steps, buf.discount)
        ctx = f"id {id_} (position {t} of {len(game['actions'])}, terminated={game['terminated']})"
        np.testing.assert_array_equal(batch.obs[b].numpy(), game["obs"][t], err_msg=ctx)
        np.testing.assert_allclose(batch.target_values[b].numpy(), np.float32(ref["values"]), rtol=1e-6, atol=1e-6,
                                   err_msg=ctx)
        np.testing.assert_array_equal(batch.target_rewards[b].numpy(), np.float32(ref["rewards"]), err_msg=ctx)
        np.testing.assert_array_equal(batch.target_policies[b].numpy(), np.stack(ref["policies"]), err_msg=ctx)
        for name in ("mask", "value_mask", "reward_mask"):
            np.testing.assert_array_equal(getattr(batch, name)[b].numpy(), ref[name], err_msg=f"{name}, {ctx}")
        actions = batch.actions[b].numpy()
        inside = min(K, len(game["actions"]) - t)
        np.testing.assert_array_equal(actions[:inside], game["actions"][t:t + inside], err_msg=ctx)
        assert ((actions[inside:] >= 0) & (actions[inside:] < buf.num_actions)).all(), ctx


def snapshot(buf):
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in buf._core.snapshot().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_same_batch(a, b):
    for name, x, y in zip(GameBatch._fields, a, b):
        assert x.dtype == y.dtype, name
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def filled(prioritized=True, capacity=40, games=12, seed=0, **kwargs):
    """A buffer that has evicted games, with its model."""
    buf = GameBuffer(capacity, OBS_SHAPE, A, prioritized=prioritized, seed=seed, **kwargs)
    model = Model(capacity)
    rng = np.random.default_rng(seed)
    for _ in range(games):
        game = random_game(rng, int(rng.integers(1, 9)), obs_dtype=buf.obs_dtype)
        assert add(buf, game) == model.add(game)
    return buf, model


# -- targets --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), capacity=st.integers(1, 40), unroll_steps=st.integers(0, 6),
       td_steps=st.integers(1, 12), discount=st.sampled_from([0.997, -1.0, 0.5, 1.0, 0.0, -0.9]),
       obs_dtype=st.sampled_from([np.float32, np.uint8]), prioritized=st.booleans(), games=st.integers(1, 15))
def test_targets_match_the_reference_on_random_games(seed, capacity, unroll_steps, td_steps, discount, obs_dtype,
                                                     prioritized, games):
    rng = np.random.default_rng(seed)
    buf = GameBuffer(capacity, OBS_SHAPE, A, obs_dtype=obs_dtype, unroll_steps=unroll_steps, td_steps=td_steps,
                     discount=discount, prioritized=prioritized, seed=seed)
    model = Model(capacity)
    for _ in range(games):
        game = random_game(rng, int(rng.integers(1, min(capacity, 12) + 1)), obs_dtype=obs_dtype)
        assert add(buf, game) == model.add(game)
        assert (len(buf), buf.num_games) == (len(model), len(model.games))
        batch = buf.sample(int(rng.integers(1, 24)))
        check_batch(batch, model, buf)
        if prioritized:
            buf.update_priorities(batch.indices, rng.uniform(0.0, 3.0, len(batch.indices)))
        else:
            np.testing.assert_array_equal(batch.weights.numpy(), 1.0)


def test_every_stored_position_is_drawn_and_nothing_else():
    buf, model = filled(prioritized=False, capacity=30, games=10)
    ids = np.concatenate([buf.sample(256).indices.numpy() for _ in range(40)])
    assert set(ids.tolist()) == set(range(model.oldest, model.end))
    counts = np.bincount(ids - model.oldest)
    assert chi_square(counts, np.full(len(model), 1 / len(model))) < chi_square_threshold(len(model) - 1)


def test_two_player_value_targets_alternate_sign():
    # The mover at the last position wins (+1). With discount -1 each position's value target is from
    # its own mover's side: +1 for the winner's positions, -1 for the loser's.
    T = 7
    buf = GameBuffer(16, (1,), 3, unroll_steps=T, td_steps=20, discount=-1.0, seed=0)
    rewards = np.zeros(T, np.float32)
    rewards[-1] = 1.0
    game = {"obs": np.arange(T, dtype=np.float32)[:, None], "actions": np.zeros(T, np.int64), "rewards": rewards,
            "root_values": np.zeros(T, np.float32), "policies": np.full((T, 3), 1 / 3, np.float32),
            "terminated": True, "final_value": 0.0}
    add(buf, game)
    batch = buf.sample(64)
    t = batch.indices.numpy()
    np.testing.assert_array_equal(batch.target_values[:, 0].numpy(), (-1.0) ** (T - 1 - t))
    starts = batch.target_values.numpy()[t == 0][0]  # the unroll from the first position
    np.testing.assert_array_equal(starts, [1, -1, 1, -1, 1, -1, 1, 0])
    # A cut game of the same moves bootstraps from the final value, seen from the next mover's side.
    buf2 = GameBuffer(16, (1,), 3, unroll_steps=0, td_steps=20, discount=-1.0, seed=0)
    add(buf2, {**game, "terminated": False, "final_value": 0.25})
    batch = buf2.sample(64)
    t = batch.indices.numpy()
    np.testing.assert_allclose(batch.target_values[:, 0].numpy(), (-1.0) ** (T - 1 - t) * (1 - 0.25))


def test_reanalysed_targets_show_in_later_samples():
    buf = GameBuffer(64, (1,), A, unroll_steps=3, td_steps=2, discount=0.9, seed=4)
    model = Model(64)
    rng = np.random.default_rng(4)
    for length in (6, 9, 3):
        game = random_game(rng, length, obs_shape=(1,))
        add(buf, game)
        model.add(game)
    batch = buf.sample(8)
    # What a reanalysing trainer does: positions t + k inside the game (mask) and their bootstrap
    # positions t + k + n where still inside it (game_spans), re-searched and written back.
    ids = batch.indices[:, None] + torch.arange(buf.unroll_steps + 1)
    inside = ids[batch.mask.bool()]
    starts, lengths = buf.game_spans(batch.indices)
    boot = (ids + buf.td_steps)[(ids + buf.td_steps) < (starts + lengths)[:, None]]
    targets = torch.unique(torch.cat([inside, boot]))
    obs = buf.observations(targets)
    assert obs.shape == (len(targets), 1)
    new_values = rng.normal(size=len(targets)).astype(np.float32)
    new_policies = rng.dirichlet(np.ones(A), size=len(targets)).astype(np.float32)
    buf.update_targets(targets, new_values, new_policies)
    for j, id_ in enumerate(targets.tolist()):
        game, t = model.locate(id_)
        np.testing.assert_array_equal(obs[j].numpy(), game["obs"][t])
        game["root_values"][t] = new_values[j]
        game["policies"][t] = new_policies[j]
    for _ in range(5):
        check_batch(buf.sample(32), model, buf)
    first_ids = [next(f for f, g in model.games if f <= i < f + len(g["actions"])) for i in batch.indices.tolist()]
    np.testing.assert_array_equal(starts.numpy(), first_ids)


def test_game_spans_and_observations_take_any_shape():
    buf, model = filled(prioritized=False)
    ids = torch.tensor([[model.oldest, model.end - 1], [model.end - 1, model.oldest]])
    obs = buf.observations(ids)
    assert obs.shape == (2, 2, *OBS_SHAPE)
    np.testing.assert_array_equal(obs[0, 0].numpy(), model.locate(model.oldest)[0]["obs"][0])
    starts, lengths = buf.game_spans(ids)
    assert starts.shape == lengths.shape == (2, 2)
    last_first, last_game = model.games[-1]
    assert (starts[0, 1].item(), lengths[0, 1].item()) == (last_first, len(last_game["actions"]))
    assert (starts[0, 0].item(), lengths[0, 0].item()) == (model.oldest, len(model.games[0][1]["actions"]))


# -- games, eviction, ids ---------------------------------------------------------------------------


def test_whole_oldest_games_are_evicted_and_their_ids_go_stale():
    rng = np.random.default_rng(1)
    buf = GameBuffer(10, OBS_SHAPE, A, prioritized=True, seed=1)
    model = Model(10)
    for length in (4, 3, 2):
        game = random_game(rng, length)
        assert add(buf, game) == model.add(game)
    assert (len(buf), buf.num_games) == (9, 3)
    assert add(buf, random_game(rng, 3)) == 9  # the first game (4 positions) goes, though 2 would do
    assert (len(buf), buf.num_games) == (8, 3)
    for stale in ([0], [3], [2, 5]):
        for call in (lambda i: buf.update_priorities(i, np.ones(len(i))),
                     lambda i: buf.update_targets(i, np.zeros(len(i)), np.full((len(i), A), 1 / A)),
                     lambda i: buf.observations(i), lambda i: buf.game_spans(i)):
            with pytest.raises(ValueError, match=r"indices: .*evicted"):
                call(np.array(stale))
    np.testing.assert_array_equal(buf.priorities([0, 3, 4, 11, 12]), [0, 0, 1, 1, 0])
    add(buf, random_game(rng, 10))
    assert (len(buf), buf.num_games) == (10, 1)
    with pytest.raises(ValueError, match=r"obs: expected a game of at most 10 positions"):
        add(buf, random_game(rng, 11))
    assert (len(buf), buf.num_games) == (10, 1)


def test_clear_keeps_counting_ids():
    buf, model = filled()
    end = model.end
    buf.clear()
    assert (len(buf), buf.num_games, buf.max_priority) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(1)
    with pytest.raises(ValueError, match="indices"):
        buf.observations([end - 1])
    assert add(buf, random_game(np.random.default_rng(0), 3)) == end


def test_torch_inputs_are_accepted():
    rng = np.random.default_rng(2)
    buf = GameBuffer(32, OBS_SHAPE, A, obs_dtype=torch.uint8, prioritized=True, seed=2)
    game = random_game(rng, 5, obs_dtype=np.uint8)
    buf.add_game(*(torch.from_numpy(game[k]) for k in ("obs", "actions", "rewards", "root_values", "policies")),
                 terminated=torch.tensor(True).item(), final_value=np.float32(0.5),
                 priorities=torch.ones(5, dtype=torch.float64))
    # float64 and int32 inputs and lists cast within their kind
    buf.add_game(game["obs"], game["actions"].astype(np.int32), game["rewards"].astype(np.float64),
                 game["root_values"].tolist(), game["policies"].astype(np.float64), terminated=np.bool_(False))
    batch = buf.sample(6)
    assert batch.obs.dtype == torch.uint8
    buf.update_priorities(batch.indices, batch.weights * 2)
    buf.update_targets(batch.indices, batch.target_values[:, 0], batch.target_policies[:, 0])
    assert buf.sample(3, device="cpu").obs.device.type == "cpu"


# -- priorities -----------------------------------------------------------------------------------


def test_new_positions_get_the_maximum_or_their_own_priorities():
    rng = np.random.default_rng(3)
    buf = GameBuffer(32, OBS_SHAPE, A, prioritized=True, alpha=0.5, eps=0.25, seed=3)
    add(buf, random_game(rng, 3))
    np.testing.assert_array_equal(buf.priorities([0, 1, 2]), 1.0)
    buf.update_priorities([1], [8.75])  # (8.75 + 0.25) ** 0.5 = 3
    assert buf.max_priority == 9.0
    add(buf, random_game(rng, 2))
    np.testing.assert_array_equal(buf.priorities([3, 4]), 3.0)
    add(buf, random_game(rng, 2), priorities=[15.75, 0.0])
    np.testing.assert_allclose(buf.priorities([5, 6]), [4.0, 0.5])
    assert buf.max_priority == 16.0
    with pytest.raises(ValueError, match="priorities"):
        add(GameBuffer(8, OBS_SHAPE, A), random_game(rng, 2), priorities=[1.0, 1.0])
    with pytest.raises(ValueError, match="update_priorities"):
        GameBuffer(8, OBS_SHAPE, A).update_priorities([0], [1.0])


def test_sampling_frequencies_follow_priority_and_weights_correct_for_them():
    alpha, beta = 0.7, 0.5
    buf, model = filled(capacity=30, games=10, alpha=alpha, beta=beta, eps=0.0)
    ids = np.arange(model.oldest, model.end)
    p = np.random.default_rng(5).uniform(0.05, 5.0, len(ids))
    buf.update_priorities(ids, p)
    probs = p ** alpha / (p ** alpha).sum()
    batches = [buf.sample(60) for _ in range(2000)]
    sampled = np.concatenate([b.indices.numpy() for b in batches])
    counts = np.bincount(sampled - model.oldest, minlength=len(ids))
    assert chi_square(counts, probs) < chi_square_threshold(len(ids) - 1)
    assert chi_square(counts, np.full(len(ids), 1 / len(ids))) > 10 * chi_square_threshold(len(ids) - 1)
    w = batches[0].weights.numpy()
    i = batches[0].indices.numpy() - model.oldest
    np.testing.assert_allclose(w, (len(ids) * probs[i]) ** -beta / (len(ids) * probs.min()) ** -beta, rtol=1e-5)


# -- persistence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prioritized", [False, True])
def test_save_load_round_trip_continues_sampling_identically(prioritized, tmp_path):
    buf = GameBuffer(40, OBS_SHAPE, A, obs_dtype=np.uint8, unroll_steps=4, td_steps=3, discount=-1.0,
                     prioritized=prioritized, alpha=0.6, beta=0.4, eps=1e-3, seed=7)
    rng = np.random.default_rng(7)
    for _ in range(12):
        add(buf, random_game(rng, int(rng.integers(1, 9)), obs_dtype=np.uint8))
        batch = buf.sample(5)
        if prioritized:
            buf.update_priorities(batch.indices, rng.uniform(0, 2, 5))
    buf.update_targets(batch.indices, np.zeros(5), np.full((5, A), 1 / A))
    path = tmp_path / "games.rb"
    buf.save(path)
    loaded = GameBuffer.load(str(path))
    for attr in ("capacity", "obs_shape", "obs_dtype", "num_actions", "unroll_steps", "td_steps", "discount",
                 "prioritized", "alpha", "beta", "eps"):
        assert getattr(loaded, attr) == getattr(buf, attr), attr
    assert (len(loaded), loaded.num_games) == (len(buf), buf.num_games)
    assert_same_state(snapshot(buf), snapshot(loaded))
    for step in range(6):
        a, b = buf.sample(16), loaded.sample(16)
        assert_same_batch(a, b)
        if prioritized:
            p = np.random.default_rng(step).uniform(0, 2, 16)
            buf.update_priorities(a.indices, p)
            loaded.update_priorities(b.indices, p)
        game = random_game(np.random.default_rng(step), 5, obs_dtype=np.uint8)
        assert add(buf, game) == add(loaded, game)
    assert_same_state(snapshot(buf), snapshot(loaded))
    assert sorted(os.listdir(tmp_path)) == ["games.rb"]  # no temporary left behind


def test_empty_buffer_round_trip(tmp_path):
    buf = GameBuffer(8, (3,), 2, seed=1)
    buf.save(tmp_path / "empty.rb")
    loaded = GameBuffer.load(tmp_path / "empty.rb")
    assert len(loaded) == 0
    game = random_game(np.random.default_rng(0), 4, num_actions=2, obs_shape=(3,))
    add(buf, game)
    add(loaded, game)
    assert_same_batch(buf.sample(4), loaded.sample(4))


def test_files_of_other_classes_and_inconsistent_files_are_refused(tmp_path):
    buf, _ = filled()
    buf.save(tmp_path / "games.rb")
    ReplayBuffer(8, make_spec()).save(tmp_path / "transitions.rb")
    with pytest.raises(ValueError, match=r"\bGameBuffer\b"):
        ReplayBuffer.load(tmp_path / "games.rb")
    with pytest.raises(ValueError, match=r"\bReplayBuffer\b"):
        GameBuffer.load(tmp_path / "transitions.rb")
    state = buf._core.snapshot()
    for key, change in [("game_lengths", lambda a: a + 1), ("actions", lambda a: a + A), ("rng", np.zeros_like),
                        ("priorities", lambda a: -a), ("policies", lambda a: a * 2)]:
        fresh = GameBuffer(40, OBS_SHAPE, A, prioritized=True, seed=0)
        with pytest.raises(ValueError, match=key):
            fresh._core.restore({**state, key: change(state[key])})
        assert len(fresh) == 0


# -- validation -----------------------------------------------------------------------------------


def good_game(length=4, seed=9):
    return random_game(np.random.default_rng(seed), length, terminated=False)


def changed(**changes):
    return lambda g: {**g, **changes}


def set_row(key, row, value, col=None):
    def change(g):
        a = g[key].copy()
        if col is None:
            a[row] = value
        else:
            a[row, col] = value
        return {**g, key: a}
    return change


BAD_GAMES = [
    ("obs wrong shape", lambda g: {**g, "obs": g["obs"][:, :1]}, "obs"),
    ("obs without positions", lambda g: {**g, "obs": g["obs"][0]}, "obs"),
    ("obs one position short", lambda g: {**g, "obs": g["obs"][:-1]}, "actions"),
    ("obs strings", lambda g: {**g, "obs": np.full((4, *OBS_SHAPE), "a")}, "obs"),
    ("obs not an array", changed(obs=object()), "obs"),
    ("actions float", lambda g: {**g, "actions": g["actions"] + 0.5}, "actions"),
    ("actions short", lambda g: {**g, "actions": g["actions"][:-1]}, "actions"),
    ("actions too large", set_row("actions", 2, A), r"actions: .*got 4 at row 2"),
    ("actions negative", set_row("actions", 0, -1), r"actions: .*got -1 at row 0"),
    ("rewards nan", set_row("rewards", 3, np.nan), r"rewards: .*nan at row 3"),
    ("rewards inf", set_row("rewards", 1, np.inf), r"rewards: .*inf at row 1"),
    ("rewards 2-d", lambda g: {**g, "rewards": g["rewards"][:, None]}, "rewards"),
    ("rewards overflow float32", lambda g: {**g, "rewards": np.array([0, 0, 1e300, 0])}, r"rewards: .*fit float32"),
    ("root values nan", set_row("root_values", 1, np.nan), r"root_values: .*row 1"),
    ("policies negative", set_row("policies", 2, -0.1, col=0), r"policies: .*>= 0.*row 2"),
    ("policies nan", set_row("policies", 0, np.nan, col=3), r"policies: .*row 0"),
    ("policies sum 0.9", lambda g: {**g, "policies": np.concatenate([g["policies"][:2], g["policies"][2:] * 0.9])},
     r"policies: .*summing to 1.*row 2"),
    ("policies wrong width", lambda g: {**g, "policies": g["policies"][:, :-1]}, "policies"),
    ("empty game", lambda g: {k: (v[:0] if isinstance(v, np.ndarray) else v) for k, v in g.items()},
     r"obs: expected a game of at least one position"),
    ("too long", lambda g: random_game(np.random.default_rng(0), 41), r"obs: expected a game of at most 40"),
    ("final value nan", changed(final_value=float("nan")), "final_value"),
    ("final value string", changed(final_value="0.5"), "final_value"),
    ("terminated int", changed(terminated=1), "terminated"),
    ("terminated None", changed(terminated=None), "terminated"),
]


@pytest.mark.parametrize("name, change, match", BAD_GAMES, ids=[c[0] for c in BAD_GAMES])
def test_bad_games_name_the_argument_and_change_nothing(name, change, match):
    buf, model = filled()
    before = snapshot(buf)
    with pytest.raises(ValueError, match=match):
        add(buf, change(good_game()))
    assert (len(buf), buf.num_games) == (len(model), len(model.games))
    assert_same_state(before, snapshot(buf))
    add(buf, good_game())  # and a good game still goes in


@pytest.mark.parametrize("priorities, match", [([1, 1, -1, 1], r"priorities: .*row 2"), ([1, np.nan, 1, 1], "row 1"),
                                               ([1, 1, 1], "priorities"), ([1, 1, 1, np.inf], "priorities"),
                                               (["a", "b", "c", "d"], "priorities")])
def test_bad_initial_priorities_change_nothing(priorities, match):
    buf, _ = filled()
    before = snapshot(buf)
    with pytest.raises(ValueError, match=match):
        add(buf, good_game(), priorities=priorities)
    assert_same_state(before, snapshot(buf))


def test_bad_updates_name_the_argument_and_change_nothing():
    buf, model = filled()
    before = snapshot(buf)
    ok_ids = np.array([model.oldest, model.end - 1])
    policies = np.full((2, A), 1 / A)
    cases = [
        (lambda: buf.update_priorities([model.oldest - 1, model.oldest], [1, 1]), "indices"),
        (lambda: buf.update_priorities([model.oldest, model.end], [1, 1]), r"indices: .*got \d+ at row 1"),
        (lambda: buf.update_priorities([-1], [1]), "indices"),
        (lambda: buf.update_priorities(ok_ids.astype(np.float64), [1, 1]), "indices"),
        (lambda: buf.update_priorities(ok_ids, [1, np.nan]), r"priorities: .*row 1"),
        (lambda: buf.update_priorities(ok_ids, [-1, 1]), r"priorities: .*row 0"),
        (lambda: buf.update_priorities(ok_ids, [1, 1, 1]), "priorities"),
        (lambda: buf.update_targets([model.oldest - 1], [0.0], policies[:1]), "indices"),
        (lambda: buf.update_targets(ok_ids, [0.0, np.inf], policies), r"root_values: .*row 1"),
        (lambda: buf.update_targets(ok_ids, [0.0], policies), "root_values"),
        (lambda: buf.update_targets(ok_ids, [0.0, 0.0], policies * 2), r"policies: .*row 0"),
        (lambda: buf.update_targets(ok_ids, [0.0, 0.0], policies[:, :2]), "policies"),
        (lambda: buf.observations([model.end]), "indices"),
        (lambda: buf.game_spans([model.oldest - 1]), "indices"),
        (lambda: buf.sample(0), "batch_size"),
        (lambda: buf.sample(-1), "batch_size"),
        (lambda: buf.sample(2.0), "batch_size"),
        (lambda: buf.sample(True), "batch_size"),
        (lambda: buf.sample(4, beta=-0.5), "beta"),
        (lambda: buf.sample(4, beta=float("nan")), "beta"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
        assert (len(buf), buf.num_games) == (len(model), len(model.games))
        assert_same_state(before, snapshot(buf))  # the generator did not move either


def test_sampling_an_empty_buffer_raises():
    buf = GameBuffer(8, OBS_SHAPE, A, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(1)
    add(buf, good_game(2))
    assert set(buf.sample(16).indices.tolist()) == {0, 1}  # with replacement: more than stored is fine


BAD_CONSTRUCTORS = [
    (dict(capacity=0), "capacity"),
    (dict(capacity=2.0), "capacity"),
    (dict(obs_shape=(0, 3)), "obs_shape"),
    (dict(obs_shape="ab"), "obs_shape"),
    (dict(obs_dtype=np.complex64), "obs_dtype"),
    (dict(obs_dtype=object), "obs_dtype"),
    (dict(obs_dtype=torch.bfloat16), "obs_dtype"),
    (dict(num_actions=0), "num_actions"),
    (dict(unroll_steps=-1), "unroll_steps"),
    (dict(td_steps=0), "td_steps"),
    (dict(discount=1.5), "discount"),
    (dict(discount=-1.01), "discount"),
    (dict(discount=float("nan")), "discount"),
    (dict(prioritized="yes"), "prioritized"),
    (dict(alpha=-1.0), "alpha"),
    (dict(beta=float("inf")), "beta"),
    (dict(eps=-1e-6), "eps"),
    (dict(seed=-1), "seed"),
]


@pytest.mark.parametrize("kwargs, match", BAD_CONSTRUCTORS, ids=[str(c[0]) for c in BAD_CONSTRUCTORS])
def test_bad_constructor_arguments_are_named(kwargs, match):
    args = {"capacity": 8, "obs_shape": OBS_SHAPE, "num_actions": A, **kwargs}
    with pytest.raises(ValueError, match=match):
        GameBuffer(args.pop("capacity"), args.pop("obs_shape"), args.pop("num_actions"), **args)


# -- reproducibility and threads --------------------------------------------------------------------


@pytest.mark.parametrize("prioritized", [False, True])
def test_sampling_reproduces_from_the_seed(prioritized):
    def run(seed):
        buf = GameBuffer(40, OBS_SHAPE, A, unroll_steps=6, prioritized=prioritized, seed=seed)
        rng = np.random.default_rng(0)  # the same games for every seed
        batches = []
        for _ in range(8):
            add(buf, random_game(rng, int(rng.integers(1, 9))))
            batches.append(buf.sample(16))
        return batches
    for a, b in zip(run(11), run(11)):
        assert_same_batch(a, b)  # random actions past the ends included
    assert any(not torch.equal(a.indices, b.indices) for a, b in zip(run(11), run(12)))


def test_adding_games_while_sampling_and_updating_from_another_thread():
    buf = GameBuffer(200, OBS_SHAPE, A, prioritized=True, seed=0)
    model = Model(200)
    errors, stop = [], threading.Event()
    stats = {"batches": 0, "stale": 0}

    def reader():
        rng = np.random.default_rng(1)
        try:
            while not stop.is_set():
                if len(buf) == 0:
                    continue
                batch = buf.sample(32)
                assert (batch.mask[:, 0] == 1).all()
                try:
                    buf.update_priorities(batch.indices, rng.uniform(0.1, 2.0, 32))
                except ValueError as exc:  # a game was evicted between the sample and the update
                    assert "evicted" in str(exc)
                    stats["stale"] += 1
                stats["batches"] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    rng = np.random.default_rng(2)
    deadline = time.monotonic() + 1.0
    try:
        while time.monotonic() < deadline or stats["batches"] < 20:
            game = random_game(rng, int(rng.integers(1, 30)))
            assert add(buf, game) == model.add(game)
            assert (len(buf), buf.num_games) == (len(model), len(model.games))
            time.sleep(0.0005)
            if time.monotonic() > deadline + 30:
                raise AssertionError("the reader made no progress")
    finally:
        stop.set()
        thread.join(30)
    if errors:
        raise errors[0]
    assert model.end > 3 * 200  # evicted many times over while sampling
    check_batch(buf.sample(64), model, buf)
    p = buf.priorities(np.arange(model.oldest, model.end))
    assert np.isfinite(p).all() and (p > 0).all()


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    buf, _ = filled()
    path = tmp_path / "games.rb"
    buf.save(path)
    previous = path.read_bytes()
    add(buf, good_game())

    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        buf.save(path)
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tmp_path)) == ["games.rb"]
    assert re.fullmatch(r"GameBuffer\(capacity=40, positions=\d+, games=\d+, obs_shape=\(2, 3\), num_actions=4\)",
                        repr(buf))


# -- hardening (issue 19): restores, sizes, weights, allocation, unsafe conversions -----------------


def shifted(state, shift):
    """The state with every id moved by ``shift`` (counters and game starts together)."""
    return {**state, "oldest_id": state["oldest_id"] + shift, "end_id": state["end_id"] + shift,
            "game_starts": state["game_starts"] + shift}


BIG = 2**63 - 1
BAD_RESTORES = [
    ("end_id near 2^63", lambda s: {**s, "end_id": BIG}, "end_id"),
    ("ids near 2^63", lambda s: shifted(s, BIG - s["end_id"]), "oldest_id, end_id"),
    ("ids past 2^62", lambda s: shifted(s, 2**62 - s["oldest_id"]), "oldest_id, end_id"),
    ("negative oldest_id", lambda s: {**s, "oldest_id": -(2**63)}, "oldest_id"),
    ("counter beyond int64", lambda s: {**s, "end_id": 2**64}, "end_id"),
    ("counter float", lambda s: {**s, "oldest_id": float(s["oldest_id"])}, "oldest_id"),
    ("games_added near 2^63", lambda s: {**s, "games_added": BIG}, "games_added"),
    ("games_added beyond the positions", lambda s: {**s, "games_added": s["games_added"] + s["oldest_id"] + 1},
     "games_added"),
    ("game start near 2^63", lambda s: {**s, "game_starts": np.r_[s["game_starts"][:1], BIG, s["game_starts"][2:]]},
     "game_starts"),
    ("negative length", lambda s: {**s, "game_lengths": np.r_[-3, s["game_lengths"][1:]]}, "game_lengths"),
    ("terminated flag 2", lambda s: {**s, "game_terminated": np.r_[2, s["game_terminated"][1:]].astype(np.uint8)},
     "game_terminated"),
    ("terminated int64 wrapping to a flag",
     lambda s: {**s, "game_terminated": s["game_terminated"].astype(np.int64) + 256},
     "game_terminated: expected a 1-d array of uint8"),
    ("obs as int64", lambda s: {**s, "obs": s["obs"].astype(np.int64)}, "obs"),
    ("obs 2-d", lambda s: {**s, "obs": s["obs"].reshape(-1, 1)}, "obs"),
    ("actions big-endian", lambda s: {**s, "actions": s["actions"].astype(">i8")}, "actions"),
    ("rewards float64", lambda s: {**s, "rewards": s["rewards"].astype(np.float64)}, "rewards"),
    ("reward 1e30", lambda s: {**s, "rewards": np.r_[1e30, s["rewards"][1:]].astype(np.float32)}, "rewards"),
    ("policies short", lambda s: {**s, "policies": s["policies"][:-1]}, "policies"),
    ("priority 1e300", lambda s: {**s, "priorities": np.r_[1e300, s["priorities"][1:]]}, "priorities"),
    ("priority nan", lambda s: {**s, "priorities": np.r_[np.nan, s["priorities"][1:]]}, "priorities"),
    ("priority 0", lambda s: {**s, "priorities": np.r_[0.0, s["priorities"][1:]]}, "priorities"),
    ("max_priority nan", lambda s: {**s, "max_priority": float("nan")}, "max_priority"),
    ("max_priority string", lambda s: {**s, "max_priority": "2"}, "max_priority"),
    ("max_priority huge int", lambda s: {**s, "max_priority": 10**400}, "max_priority"),
    ("rng 3 words", lambda s: {**s, "rng": s["rng"][:3]}, "rng"),
    ("rng signed", lambda s: {**s, "rng": s["rng"].astype(np.int64)}, "rng"),
    ("missing key", lambda s: {k: v for k, v in s.items() if k != "games_added"}, "games_added"),
    ("unexpected key", lambda s: {**s, "extra": 1}, "extra"),
]


@pytest.mark.parametrize("name, change, match", BAD_RESTORES, ids=[c[0] for c in BAD_RESTORES])
def test_restore_validates_every_invariant_and_changes_nothing(name, change, match):
    """Counters near 2^63 used to load, and the next add wrote to a negative row."""
    buf, model = filled(capacity=24, games=10)
    state = buf._core.snapshot()
    assert state["oldest_id"] > 0 and len(state["game_starts"]) >= 3
    target, _ = filled(capacity=24, games=3, seed=5)
    before = snapshot(target)
    with pytest.raises(ValueError, match=match):
        target._core.restore(change(state))
    assert_same_state(before, snapshot(target))
    add(target, good_game())
    target._core.restore(state)  # the unedited state still loads
    assert_same_state(snapshot(buf), snapshot(target))


def test_priorities_in_the_state_of_a_plain_buffer_are_refused():
    state = filled(prioritized=True)[0]._core.snapshot()
    plain = GameBuffer(40, OBS_SHAPE, A, seed=0)
    with pytest.raises(ValueError, match="not prioritized"):
        plain._core.restore(state)
    assert len(plain) == 0


def test_ids_stop_at_2_62_instead_of_wrapping():
    buf = GameBuffer(8, OBS_SHAPE, A, seed=0)
    state = buf._core.snapshot()
    buf._core.restore({**state, "oldest_id": 2**62 - 2, "end_id": 2**62 - 2})
    with pytest.raises(ValueError, match="2\\^62 position ids"):
        add(buf, good_game(3))
    assert len(buf) == 0
    assert add(buf, good_game(2)) == 2**62 - 2
    assert buf.game_spans([2**62 - 1])[0].tolist() == [2**62 - 2]


def saved_with(path, buf, config=None, scalars=None, arrays=None):
    """``buf`` written to ``path`` through the file format's own writer (so that any checksum the
    format carries is valid), with config, scalar and array entries replaced."""
    state = dict(buf._core.snapshot())
    own_scalars = {k: state.pop(k) for k in ("oldest_id", "end_id", "games_added", "max_priority") if k in state}
    write_file(path, "GameBuffer", {**buf.config(), **(config or {})}, {**own_scalars, **(scalars or {})},
                {**state, **(arrays or {})})
    return path


@pytest.mark.parametrize("config, scalars", [
    ({}, {"end_id": BIG}),
    ({}, {"oldest_id": -1}),
    ({}, {"games_added": 2**62}),
    ({}, {"max_priority": -1.0}),
    ({"beta": -1.0}, {}),
    ({"capacity": 2**70}, {}),
    ({"capacity": "40"}, {}),
    ({"num_actions": 2**62}, {}),
    ({"obs_shape": [2**31, 2**31, 2**31]}, {}),
    ({"obs_dtype": "O"}, {}),
    ({"unroll_steps": 2**40}, {}),
    ({"prioritized": 1}, {}),
    ({"discount": 2.0}, {}),
    ({"surprise": 1}, {}),
], ids=str)
def test_load_validates_config_and_counters_naming_the_file(tmp_path, config, scalars):
    buf, _ = filled()
    path = saved_with(tmp_path / "games.rb", buf, config, scalars)
    with pytest.raises(ValueError, match=re.escape(repr(str(path)))):
        GameBuffer.load(path)
    assert_same_state(snapshot(buf), snapshot(GameBuffer.load(saved_with(tmp_path / "ok.rb", buf))))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_actions=2**62), "num_actions"),
    (dict(num_actions=2**63), "num_actions"),
    (dict(num_actions=2**37), "capacity"),
    (dict(obs_shape=(2**31, 2**31, 2**31)), "obs_shape"),
    (dict(obs_shape=(2**21, 2**21)), "obs_shape"),
    (dict(capacity=2**63), "capacity"),
    (dict(capacity=2**37), "capacity"),
    (dict(capacity=2**34, prioritized=True, obs_shape=(1,), obs_dtype=np.uint8), "capacity"),
    (dict(unroll_steps=2**17), "unroll_steps"),
    (dict(td_steps=2**63), "td_steps"),
], ids=str)
def test_sizes_that_would_overflow_are_refused_by_name(kwargs, match):
    args = {"capacity": 8, "obs_shape": OBS_SHAPE, "num_actions": A, **kwargs}
    with pytest.raises(ValueError, match=match):
        GameBuffer(args.pop("capacity"), args.pop("obs_shape"), args.pop("num_actions"), **args)


def test_huge_td_steps_give_monte_carlo_returns():
    buf = GameBuffer(16, (1,), 2, unroll_steps=0, td_steps=2**62, discount=1.0, seed=0)
    buf.add_game(np.zeros((3, 1)), [0, 1, 0], [1.0, 2.0, 4.0], [0.0] * 3, np.full((3, 2), 0.5), terminated=True)
    batch = buf.sample(64)
    expected = {0: 7.0, 1: 6.0, 2: 4.0}
    assert batch.target_values[:, 0].tolist() == [expected[i] for i in batch.indices.tolist()]


def test_importance_weights_stay_finite_in_zero_one_with_tiny_float32_priorities():
    """A tiny priority made the float32 leaf ratio overflow: weights 0, or NaN with beta = 0."""
    buf, model = filled(capacity=24, games=10, eps=0.0)
    ids = np.arange(model.oldest, model.end)
    priorities = np.ones(len(ids))
    priorities[0] = np.finfo(np.float32).tiny / 2**20  # a float32 denormal
    priorities[1] = 1e30
    buf.update_priorities(ids, priorities)
    for beta in (0.0, 0.5, 1.0, 100.0):
        weights = torch.cat([buf.sample(64, beta=beta).weights for _ in range(5)])
        assert torch.isfinite(weights).all() and (weights > 0).all() and (weights <= 1).all(), beta
        if beta == 0.0:
            assert (weights == 1).all()


@pytest.mark.parametrize("priority", [1e300, 0.0, np.nan, np.inf, -1.0])
def test_priorities_whose_leaf_cannot_be_summed_or_drawn_are_refused(priority):
    buf, model = filled(eps=0.0)
    before = snapshot(buf)
    with pytest.raises(ValueError, match=r"priorities: .*row 1"):
        buf.update_priorities([model.oldest, model.oldest + 1], [1.0, priority])
    assert_same_state(before, snapshot(buf))


def test_sizes_of_results_are_bounded_before_allocating():
    """GameBuffer.sample(10**9) used to grow to 15 GB."""
    buf, model = filled()
    before = snapshot(buf)
    for n in (10**9, 2**16 + 1, 2**63 - 1, 2**63, 10**30):  # beyond int64 too: a ValueError, not a binding error
        with pytest.raises(ValueError, match="batch_size"):
            buf.sample(n)
    assert len(buf.sample(2**16).indices) == 2**16  # the documented limit itself is fine
    wide = GameBuffer(8, (1,), 2**20, unroll_steps=2**12, seed=0)  # 17 GB of policy targets per position
    with pytest.raises(ValueError, match="batch_size: expected a batch of at most 2\\^32 bytes"):
        wide.sample(1)
    frames = GameBuffer(4, (256, 256), 2, obs_dtype=np.uint8, seed=0)
    frames.add_game(np.zeros((1, 256, 256), np.uint8), [0], [0.0], [0.0], [[0.5, 0.5]], terminated=True)
    with pytest.raises(ValueError, match="indices: expected at most 2\\^32 bytes"):
        frames.observations(np.zeros(70_000, np.int64))
    with pytest.raises(ValueError, match="indices"):
        frames.observations(np.full(60_000, 1))  # not stored: refused before the 3.9 GB result is made
    assert frames.observations(np.zeros((2, 3), np.int64)).shape == (2, 3, 256, 256)
    buf.sample(1)
    assert_same_state({k: v for k, v in before.items() if k != "rng"},
                      {k: v for k, v in snapshot(buf).items() if k != "rng"})


UNSAFE_GAMES = [
    ("obs uint16 300 into uint8", np.uint8,
     lambda g: {**g, "obs": np.r_[g["obs"][:1], g["obs"][1:] + 300].astype(np.uint16)},
     r"obs: expected values that fit uint8.*got 30\d"),
    ("obs int64 -182 into int8", np.int8,
     lambda g: {**g, "obs": np.r_[g["obs"][:3], g["obs"][3:] - 200].astype(np.int64)},
     r"obs: expected values that fit int8.*got -1\d\d"),
    ("obs float64 1e300 into float32", np.float32,
     lambda g: {**g, "obs": np.r_[g["obs"][:2], np.full((2, *OBS_SHAPE), 1e300)]},
     r"obs: expected values that fit float32.*got 1e\+300"),
    ("actions uint64 past int64", np.float32, lambda g: {**g, "actions": np.array([0, 1, 2**63, 0], np.uint64)},
     r"actions: expected values that fit int64.*got 9223372036854775808"),
    ("rewards 1e300", np.float32, lambda g: {**g, "rewards": np.array([0.0, 1e300, 0.0, 0.0])},
     r"rewards: expected values that fit float32.*got 1e\+300"),
    ("rewards 1e30 (a float32)", np.float32, set_row("rewards", 2, 1e30), r"rewards: .*magnitude <= 1e25.*row 2"),
    ("root values -1e26", np.float32, set_row("root_values", 0, -1e26), r"root_values: .*1e25.*row 0"),
    ("policies 1e300", np.float32, lambda g: {**g, "policies": np.r_[g["policies"][:3], [[1e300, 0, 0, 0]]]},
     r"policies: expected values that fit float32.*got 1e\+300"),
    ("final value 1e30", np.float32, changed(final_value=1e30), "final_value"),
    ("priorities longdouble 1e4000", np.float32, None, r"priorities: .*float64"),
]


@pytest.mark.parametrize("name, obs_dtype, change, match", UNSAFE_GAMES, ids=[c[0] for c in UNSAFE_GAMES])
def test_values_that_do_not_fit_their_field_are_refused_not_converted(name, obs_dtype, change, match):
    """int64 300 used to be stored as 44 in a uint8 field, and float64 1e300 as inf with only a
    warning; now the call is refused, naming the argument, without a warning."""
    buf, model = filled(obs_dtype=obs_dtype)
    before = snapshot(buf)
    game = good_game()
    game["obs"] = game["obs"] if obs_dtype == np.float32 else np.arange(24).reshape(4, *OBS_SHAPE)
    kwargs = {}
    if change is None:
        kwargs["priorities"] = np.array([1, 1, np.longdouble("1e4000"), 1], dtype=np.longdouble)
    else:
        game = change(game)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match):
            add(buf, game, **kwargs)
    assert_same_state(before, snapshot(buf))
    fits = good_game()
    wider = {np.uint8: np.uint16, np.int8: np.int64, np.float32: np.float64}[obs_dtype]
    fits["obs"] = np.arange(24).reshape(4, *OBS_SHAPE).astype(wider)
    add(buf, fits)  # other dtypes whose values fit are converted as before
    assert buf.observations([model.end])[0].tolist() == fits["obs"][0].tolist()
