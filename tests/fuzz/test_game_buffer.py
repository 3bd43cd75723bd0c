"""Fuzz targets of GameBuffer (MuZero replay): a state machine checked against a pure-Python model
of the stored games, and mutated files (bit flips, truncation, edited headers) that must load
identically or raise ValueError naming the file, never crash or load something else."""

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pymbrl.replay import GameBuffer
from pymbrl.replay.files import write_file

A = 3
OBS_SHAPE = (2,)
EPS = 0.01


def make_game(seed, length):
    """A game with float32-exact values, so the model sums exactly what the buffer stores."""
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.integers(0, 256, size=(length, *OBS_SHAPE)).astype(np.uint8),
        "actions": rng.integers(0, A, length),
        "rewards": (rng.integers(-8, 9, length) / 4).astype(np.float32),
        "root_values": (rng.integers(-16, 17, length) / 2).astype(np.float32),
        "policies": rng.dirichlet(np.ones(A), size=length).astype(np.float32),
        "terminated": bool(rng.random() < 0.5),
        "final_value": float(rng.integers(-4, 5)),
    }


def add(buf, game, priorities=None):
    return buf.add_game(game["obs"], game["actions"], game["rewards"], game["root_values"], game["policies"],
                        terminated=game["terminated"], final_value=game["final_value"], priorities=priorities)


def snapshot(buf):
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in buf._core.snapshot().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def value_target(game, u, td, discount):
    """The documented n-step value target of position u of a game, in float64."""
    T = len(game["actions"])
    value = sum(discount**i * float(game["rewards"][u + i]) for i in range(min(td, T - u)))
    if u + td < T:
        value += discount**td * float(game["root_values"][u + td])
    elif not game["terminated"]:
        value += discount ** (T - u) * game["final_value"]
    return value


class GameBufferMachine(RuleBasedStateMachine):
    """Adds, samples, priority and target updates, clears and save/load round trips, each checked
    against a list of the stored games and a map of their priorities."""

    @initialize(capacity=st.integers(4, 24), prioritized=st.booleans(), unroll=st.integers(0, 3), td=st.integers(1, 5),
                discount=st.sampled_from([1.0, 0.5, -1.0]), seed=st.integers(0, 2**64 - 1))
    def setup(self, capacity, prioritized, unroll, td, discount, seed):
        self.buf = GameBuffer(capacity, OBS_SHAPE, A, obs_dtype=np.uint8, unroll_steps=unroll, td_steps=td,
                              discount=discount, prioritized=prioritized, alpha=1.0, eps=EPS, seed=seed)
        self.games = []  # (first id, game), oldest first
        self.end = 0
        self.leaf = {}  # id -> priority^alpha (alpha = 1)
        self.max_priority = 1.0
        self.dir = tempfile.TemporaryDirectory()

    def teardown(self):
        if hasattr(self, "dir"):
            self.dir.cleanup()

    @property
    def oldest(self):
        return self.games[0][0] if self.games else self.end

    def locate(self, id_):
        for first, game in self.games:
            if first <= id_ < first + len(game["actions"]):
                return first, game
        raise KeyError(id_)

    @rule(length=st.integers(1, 30), seed=st.integers(0, 2**32 - 1), own=st.booleans())
    def add_game(self, length, seed, own):
        game = make_game(seed, length)
        priorities = np.random.default_rng(seed).uniform(0, 4, length) if own and self.buf.prioritized else None
        if length > self.buf.capacity:
            before = snapshot(self.buf)
            with pytest.raises(ValueError, match="obs"):
                add(self.buf, game, priorities)
            assert same_state(before, snapshot(self.buf))
            return
        assert add(self.buf, game, priorities) == self.end
        while sum(len(g["actions"]) for _, g in self.games) + length > self.buf.capacity:
            first, gone = self.games.pop(0)
            for i in range(first, first + len(gone["actions"])):
                self.leaf.pop(i, None)
        self.games.append((self.end, game))
        for j in range(length):
            p = self.max_priority if priorities is None else priorities[j] + EPS
            self.leaf[self.end + j] = p
        if priorities is not None:
            self.max_priority = max(self.max_priority, float((priorities + EPS).max()))
        self.end += length

    @rule(kind=st.sampled_from(["action", "reward", "policy", "obs"]), seed=st.integers(0, 2**32 - 1))
    def add_bad_game(self, kind, seed):
        game = make_game(seed, 3)
        if kind == "action":
            game["actions"] = np.array([0, A, 1])
        elif kind == "reward":
            game["rewards"] = np.array([0.0, np.nan, 1e300][seed % 3:] + [0.0] * (seed % 3))
        elif kind == "policy":
            game["policies"] = game["policies"] * 1.5
        else:
            game["obs"] = game["obs"].astype(np.int64) + 256
        before = snapshot(self.buf)
        with pytest.raises(ValueError, match={"action": "actions", "reward": "rewards", "policy": "policies",
                                              "obs": "obs"}[kind]):
            add(self.buf, game)
        assert same_state(before, snapshot(self.buf))

    @precondition(lambda self: self.games)
    @rule(n=st.integers(1, 40), beta=st.sampled_from([0.0, 0.4, 1.0]))
    def sample(self, n, beta):
        batch = self.buf.sample(n, beta=beta)
        K = self.buf.unroll_steps
        weights = batch.weights.numpy()
        assert np.isfinite(weights).all() and (weights > 0).all() and (weights <= 1).all()
        if beta == 0.0 or not self.buf.prioritized:
            assert (weights == 1).all()
        for b, id_ in enumerate(batch.indices.tolist()):
            first, game = self.locate(id_)
            t, T = id_ - first, len(game["actions"])
            assert batch.obs[b].tolist() == game["obs"][t].tolist()
            for k in range(K + 1):
                u = t + k
                assert batch.mask[b, k] == (u < T)
                if k < K and u < T:
                    assert batch.actions[b, k] == game["actions"][u]
                if u < T:
                    assert batch.target_policies[b, k].tolist() == game["policies"][u].tolist()
                    expected = value_target(game, u, self.buf.td_steps, self.buf.discount)
                    assert batch.target_values[b, k] == pytest.approx(expected, rel=1e-6, abs=1e-5)
                else:
                    assert batch.value_mask[b, k] == float(game["terminated"])
                    assert not batch.target_policies[b, k].any()

    @precondition(lambda self: self.games and self.buf.prioritized)
    @rule(data=st.data())
    def update_priorities(self, data):
        ids = data.draw(st.lists(st.integers(self.oldest, self.end - 1), min_size=1, max_size=8, unique=True))
        values = data.draw(st.lists(st.floats(0, 1e6) | st.sampled_from([np.nan, -1.0, np.inf, 1e300]),
                                    min_size=len(ids), max_size=len(ids)))
        if all(np.isfinite(v) and 0 <= v <= 1e6 for v in values):
            self.buf.update_priorities(ids, values)
            for i, v in zip(ids, values):
                self.leaf[i] = v + EPS
            self.max_priority = max(self.max_priority, max(values) + EPS)
        else:
            before = snapshot(self.buf)
            with pytest.raises(ValueError, match="priorities"):
                self.buf.update_priorities(ids, values)
            assert same_state(before, snapshot(self.buf))

    @precondition(lambda self: self.games)
    @rule(data=st.data(), seed=st.integers(0, 2**32 - 1))
    def update_targets(self, data, seed):
        ids = data.draw(st.lists(st.integers(self.oldest, self.end - 1), min_size=1, max_size=6, unique=True))
        fresh = make_game(seed, len(ids))
        self.buf.update_targets(ids, fresh["root_values"], fresh["policies"])
        for row, id_ in enumerate(ids):
            first, game = self.locate(id_)
            for key in ("root_values", "policies"):
                game[key] = game[key].copy()
                game[key][id_ - first] = fresh[key][row]

    @rule(offset=st.integers(1, 50))
    def stale_or_unknown_ids_are_refused(self, offset):
        before = snapshot(self.buf)
        for id_ in (self.oldest - offset, self.end + offset - 1):
            if id_ < self.oldest or id_ >= self.end:
                with pytest.raises(ValueError, match="indices"):
                    self.buf.observations([id_])
                with pytest.raises(ValueError, match="indices"):
                    self.buf.update_targets([id_], [0.0], np.full((1, A), 1 / A))
        assert same_state(before, snapshot(self.buf))

    @rule()
    def clear(self):
        self.buf.clear()
        self.games, self.leaf, self.max_priority = [], {}, 1.0

    @rule()
    def save_and_load(self):
        path = os.path.join(self.dir.name, "games.rb")
        self.buf.save(path)
        loaded = GameBuffer.load(path)
        assert same_state(snapshot(self.buf), snapshot(loaded))
        assert loaded.config() == self.buf.config()
        self.buf = loaded

    @invariant()
    def matches_the_model(self):
        if not hasattr(self, "buf"):
            return
        assert len(self.buf) == self.end - self.oldest
        assert self.buf.num_games == len(self.games)
        ids = np.arange(self.oldest, self.end)
        if len(ids):
            starts, lengths = self.buf.game_spans(ids)
            for id_, start, length in zip(ids, starts.tolist(), lengths.tolist()):
                first, game = self.locate(int(id_))
                assert (start, length) == (first, len(game["actions"]))
            if self.buf.prioritized:
                np.testing.assert_allclose(self.buf.priorities(ids), [self.leaf[i] for i in ids], rtol=1e-12)
        if self.buf.prioritized:
            assert self.buf.max_priority == pytest.approx(self.max_priority, rel=1e-12)


TestGameBufferMachine = GameBufferMachine.TestCase


# -- mutated files --------------------------------------------------------------------------------


def saved_buffer(prioritized):
    buf = GameBuffer(16, OBS_SHAPE, A, obs_dtype=np.uint8, unroll_steps=2, td_steps=3, prioritized=prioritized,
                     eps=EPS, seed=3)
    for seed in range(6):
        add(buf, make_game(seed, 2 + seed % 4))
    if prioritized:
        buf.update_priorities(np.arange(buf._core.end_id - 4, buf._core.end_id), [0.5, 2.0, 1e-3, 7.0])
    return buf


SAVED = {}


def saved_bytes(prioritized):
    """The bytes of a saved buffer (made once per process) and its state."""
    if prioritized not in SAVED:
        buf = saved_buffer(prioritized)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "games.rb")
            buf.save(path)
            with open(path, "rb") as f:
                SAVED[prioritized] = (f.read(), snapshot(buf), buf.config())
    return SAVED[prioritized]


def load_or_refuse(path):
    """The loaded buffer, or None where load raised ValueError naming the file; anything else fails."""
    try:
        return GameBuffer.load(path)
    except ValueError as exc:
        assert repr(str(path)) in str(exc) or str(path) in str(exc), str(exc)
        return None


@given(prioritized=st.booleans(), flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 7)), min_size=1,
                                                 max_size=3))
def test_bit_flips_load_identically_or_raise_value_error(tmp_path_factory, prioritized, flips):
    data, state, config = saved_bytes(prioritized)
    mutated = bytearray(data)
    for position, bit in flips:
        mutated[position % len(mutated)] ^= 1 << bit
    path = tmp_path_factory.mktemp("flip") / "games.rb"
    path.write_bytes(bytes(mutated))
    loaded = load_or_refuse(path)
    if loaded is not None:
        note("loaded despite flips")
        assert same_state(state, snapshot(loaded)) and loaded.config() == config


@given(prioritized=st.booleans(), keep=st.floats(0, 1, exclude_max=True))
def test_truncated_files_raise_value_error(tmp_path_factory, prioritized, keep):
    data, _, _ = saved_bytes(prioritized)
    path = tmp_path_factory.mktemp("cut") / "games.rb"
    path.write_bytes(data[:int(len(data) * keep)])
    assert load_or_refuse(path) is None


COUNTERS = ["oldest_id", "end_id", "games_added", "max_priority"]
EXTREMES = st.sampled_from([2**63 - 1, 2**63, 2**62, 2**62 + 1, -1, -(2**63), 2**64, 0, 1, 1.5, "7", None, True, 1e308,
                            float("inf")])


@given(prioritized=st.booleans(), edits=st.dictionaries(st.sampled_from(COUNTERS),
                                                        EXTREMES | st.integers(-(2**64), 2**64), min_size=1),
       config_edit=st.none() | st.tuples(st.sampled_from(["capacity", "num_actions", "unroll_steps", "td_steps", "beta",
                                                          "alpha", "eps", "discount", "obs_shape", "prioritized"]),
                                         EXTREMES | st.integers(-10, 100)))
def test_edited_header_values_raise_value_error_or_load_a_working_buffer(tmp_path_factory, prioritized, edits,
                                                                         config_edit):
    """Counters and config values edited in a file written with valid checksums (through the
    format's own writer): refused by name, or (an edit that still describes a valid buffer) a
    buffer that holds exactly what the file says and keeps working."""
    buf = saved_buffer(prioritized)
    state = snapshot(buf)
    scalars = {k: state.pop(k) for k in COUNTERS if k in state}
    scalars.update({k: v for k, v in edits.items() if k != "max_priority" or prioritized})
    config = buf.config()
    if config_edit is not None:
        config[config_edit[0]] = config_edit[1]
    path = tmp_path_factory.mktemp("edit") / "games.rb"
    try:
        write_file(path, "GameBuffer", config, scalars, state)
    except (ValueError, TypeError):  # a value JSON cannot hold (the writer refuses it)
        return
    loaded = load_or_refuse(path)
    if loaded is None:
        return
    got = snapshot(loaded)
    assert same_state({k: v for k, v in got.items() if k not in COUNTERS}, state)
    expected = {k: float(v) if k == "max_priority" else v for k, v in scalars.items()}
    assert {k: got[k] for k in COUNTERS if k in got} == expected
    loaded.sample(4)
    add(loaded, make_game(0, 3))
    assert len(loaded) <= loaded.capacity
