"""GameBuffer (MuZero) against a pure-Python model of its documented rules: which games it keeps,
and the unroll targets of every sampled position."""

import os
import re
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pymbrl.replay import GameBatch, GameBuffer, ReplayBuffer

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
    ("rewards overflow float32", lambda g: {**g, "rewards": np.array([0, 0, 1e300, 0])}, r"rewards: .*row 2"),
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


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
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
