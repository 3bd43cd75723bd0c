"""Fuzz targets for the env state restores and step arguments of pymbrl.envs.

* MiniPacman: mutated game states (each field out of range, NaN, of the wrong shape or dtype,
  huge) are refused naming the field with every game unchanged, exactly when a pure-Python model
  of the documented bounds says they are invalid; accepted ones step and round-trip.
* MiniPacman: a state machine that steps, snapshots, rewinds and copies games checks that
  restoring a state replays the same future bit for bit.
* TicTacToe: random boards and moves against a pure-Python model of ``play``.
* Atari: bit flips, truncations and edits of a state's fields are refused (ValueError naming the
  field), never handed to ALE. Few cases: loading a ROM is slow.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import assume, event, given, note
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from pymbrl.envs import tictactoe
from pymbrl.envs.minipacman import MAP, MAX_FRAMES, MAX_LEVEL, MODES, PILL_DURATION, MiniPacmanVectorEnv

# --------------------------------------------------------------------------------------------------
# MiniPacman: mutated states against a model of the bounds

FRAME_CAP = 200


def _max_step_reward(mode: str) -> float:
    m = MODES[mode]
    rewards = (m.step_reward, m.food_reward, m.pill_reward, m.ghost_reward, m.death_reward)
    return sum(abs(float(np.float32(r))) for r in rewards)


def _free(row: int, col: int) -> bool:
    return 0 <= row < MAP.shape[0] and 0 <= col < MAP.shape[1] and not MAP[row, col]


def model_refusal(state: dict, mode: str) -> set[str] | None:
    """The fields whose bounds ``state`` breaks (the binding names the first one it checks), or
    None if the documented bounds accept it. Types and shapes are the original's here."""
    bad = set()
    level, ghosts = int(state["level"]), np.asarray(state["ghosts"])
    if not _free(*(int(v) for v in state["pacman"])):
        bad.add("pacman")
    if not 1 <= level <= MAX_LEVEL:
        bad.add("level")
    elif len(ghosts) > 1 + (level - 1) // 2:
        bad.add("ghosts")
    if len(ghosts) > (1 + (MAX_LEVEL - 1) // 2) or any(not _free(int(r), int(c)) or not 0 <= d < 4
                                                        for r, c, d in ghosts):
        bad.add("ghosts")
    pills = np.asarray(state["pills"])
    if len(pills) > 2 or any(not _free(int(r), int(c)) for r, c in pills):
        bad.add("pills")
    if np.asarray(state["food"])[MAP == 1].any():
        bad.add("food")
    if not 0 <= state["power"] <= PILL_DURATION:
        bad.add("power")
    frame, timer = int(state["frame"]), int(state["timer"])
    if not 0 <= frame < FRAME_CAP:
        bad.add("frame")
    timer_limit = MODES[mode].level_timer if MODES[mode].level_timer > 0 else MAX_FRAMES + 1
    if not 0 <= timer < timer_limit:
        bad.add("timer")
    r = float(state["episode_return"])
    if not math.isfinite(r) or ("frame" not in bad and abs(r) > frame * _max_step_reward(mode) * (1 + 1e-6)):
        bad.add("episode_return")
    rng = np.asarray(state["rng"])
    if (rng.dtype.kind == "i" and (rng < 0).any()) or not rng.any():
        bad.add("rng")
    return bad or None


def _cells(draw, n_max: int, width: int) -> np.ndarray:
    """Up to ``n_max`` rows of (row, col) or (row, col, direction), in and around the maze."""
    n = draw(st.integers(0, n_max))
    cell = [st.integers(-2, 16), st.integers(-2, 20)] + ([st.integers(-1, 4)] if width == 3 else [])
    rows = draw(st.lists(st.tuples(*cell), min_size=n, max_size=n))
    return np.array(rows, dtype=np.int64).reshape(n, width)


@st.composite
def mutation(draw):
    """(key, new value, whether the value keeps the field's type and shape) for one field."""
    key = draw(st.sampled_from(["pacman", "ghosts", "pills", "food", "power", "level", "timer", "frame",
                                "episode_return", "rng"]))
    kind = draw(st.sampled_from(["value", "value", "value", "huge", "shape", "dtype"]))
    if kind == "shape":
        # A 0-d integer array is an integer (it has __index__), so scalars get 1-d and 2-d ones.
        scalar = key in ("power", "level", "timer", "frame", "episode_return")
        shape = draw(st.sampled_from([(3,), (2, 2), (1, 4), (15, 18)] + ([] if scalar else [()])))
        return key, np.zeros(shape, dtype=bool if key == "food" else np.int64), False
    if kind == "dtype":
        value = draw(st.sampled_from([1.5, "x", None, np.zeros(2, dtype=np.float64), [[0.5]]]))
        return key, value, key == "episode_return" and isinstance(value, float)
    if kind == "huge":
        value = draw(st.sampled_from([2**31, 2**40, 2**63 - 1, -(2**63), 2_000_000_000]))
        if key in ("pacman", "rng"):
            return key, np.array([value] * (2 if key == "pacman" else 4), dtype=np.int64), True
        if key in ("ghosts", "pills"):
            return key, np.full((1, 3 if key == "ghosts" else 2), value, dtype=np.int64), True
        if key == "episode_return":
            return key, draw(st.sampled_from([1e300, -1e300, math.inf, -math.inf, math.nan])), True
        if key == "food":
            return key, np.ones((15, 19), dtype=bool), True
        return key, value, True
    if key == "pacman":
        return key, np.array([draw(st.integers(-2, 16)), draw(st.integers(-2, 20))]), True
    if key in ("ghosts", "pills"):
        return key, _cells(draw, 6 if key == "ghosts" else 3, 3 if key == "ghosts" else 2), True
    if key == "food":
        grid = draw(st.lists(st.booleans(), min_size=285, max_size=285))
        food = np.array(grid).reshape(15, 19)
        if draw(st.booleans()):
            food &= MAP == 0
        return key, food, True
    if key == "power":
        return key, draw(st.integers(-3, 25)), True
    if key == "level":
        return key, draw(st.integers(-2, MAX_LEVEL + 2)), True
    if key in ("timer", "frame"):
        return key, draw(st.integers(-3, 300)), True
    if key == "episode_return":
        return key, draw(st.floats(allow_nan=True, allow_infinity=True, width=64)), True
    words = draw(st.lists(st.integers(0, 2**64 - 1) | st.just(0), min_size=4, max_size=4))
    return key, np.array(words, dtype=np.uint64), True


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@given(mode=st.sampled_from(sorted(MODES)), seed=st.integers(0, 2**32), steps=st.integers(0, 40),
       change=mutation(), then=st.lists(st.integers(0, 4), min_size=1, max_size=20))
def test_minipacman_set_state_refuses_exactly_the_invalid_states(mode, seed, steps, change, then):
    env = MiniPacmanVectorEnv(num_envs=2, mode=mode, frame_cap=FRAME_CAP, seed=seed)
    env.reset()
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        env.step(rng.integers(0, 5, 2))
    key, value, well_typed = change
    state = {**env.get_state(0), key: value}
    before = [env.get_state(i) for i in range(2)]
    expected = model_refusal(state, mode) if well_typed else {key}
    note(f"{key}={value!r}: the model refuses {expected}")
    try:
        env.set_state(0, state)
    except (ValueError, TypeError) as error:
        assert expected is not None, f"refused a valid state: {error}"
        named = re.match(r"(\w+):", str(error))
        allowed = expected | ({"ghosts"} if "level" in expected else set())
        assert named and named.group(1) in allowed, f"{error} names none of {allowed}"
        assert all(_same(env.get_state(i), b) for i, b in enumerate(before))
        event(f"refused: {named.group(1)}")
        return
    event("accepted")
    assert expected is None, f"accepted a state whose {expected} are out of bounds"
    got = env.get_state(0)
    assert all(np.array_equal(np.asarray(got[k]), np.asarray(state[k])) for k in state)
    env.set_state(0, got)  # what get_state hands out is always accepted back
    assert _same(env.get_state(1), before[1])
    for a in then:
        env.step([a, 0])
        env.set_state(0, env.get_state(0))


# --------------------------------------------------------------------------------------------------
# MiniPacman: restoring a state replays the same future

class MiniPacmanReplay(RuleBasedStateMachine):
    """Env ``a`` plays; ``b`` is a copy of it made game by game with get_state/set_state, and must
    then play exactly as ``a``. A snapshot of ``a`` and the steps since let ``a`` rewind and replay
    them, which must give the same frames and rewards again."""

    N = 3
    snapshots = Bundle("snapshots")

    def __init__(self):
        super().__init__()
        self.a = MiniPacmanVectorEnv(num_envs=self.N, mode="regular", frame_cap=60, seed=1)
        self.b = MiniPacmanVectorEnv(num_envs=self.N, mode="regular", frame_cap=60, seed=2)
        self.a.reset()
        self.b.reset()
        self.synced = False
        self.history: list[list] = []  # per snapshot: the (actions, outputs) since it

    @staticmethod
    def _outputs(step):
        obs, rewards, terminated, truncated, info = step
        return obs, rewards, terminated, truncated, info["final_obs"], info["episode_return"], info["episode_length"]

    @rule(actions=st.lists(st.integers(0, 4), min_size=N, max_size=N))
    def step(self, actions):
        out_a = self._outputs(self.a.step(actions))
        out_b = self._outputs(self.b.step(actions))
        if self.synced:
            assert all(np.array_equal(x, y) for x, y in zip(out_a, out_b))
        for record in self.history:
            record.append((list(actions), out_a))

    @rule()
    def copy_a_into_b(self):
        for i in range(self.N):
            self.b.set_state(i, self.a.get_state(i))
        self.synced = True

    @rule(seed=st.integers(0, 2**16))
    def reset_b(self, seed):
        self.b.reset(seed=seed)
        self.synced = False

    @rule(target=snapshots)
    def snapshot(self):
        record: list = []
        self.history.append(record)
        return [self.a.get_state(i) for i in range(self.N)], record

    @rule(snapshot=snapshots)
    def rewind_and_replay(self, snapshot):
        states, record = snapshot
        for i, s in enumerate(states):
            self.a.set_state(i, s)
        for actions, expected in list(record):
            got = self._outputs(self.a.step(actions))
            assert all(np.array_equal(x, y) for x, y in zip(got, expected))

    @invariant()
    def copies_match(self):
        if self.synced:
            assert all(_same(self.a.get_state(i), self.b.get_state(i)) for i in range(self.N))


TestMiniPacmanReplay = MiniPacmanReplay.TestCase


# --------------------------------------------------------------------------------------------------
# TicTacToe: random boards and moves against a model of play()

def model_play(board: list[float], action: int) -> list[float] | None:
    """The board after the move, or None for a move onto an occupied cell of an unfinished game."""
    lines = [sum(board[i] for i in line) for line in tictactoe.LINE_CELLS]
    if any(abs(total) == 3 for total in lines) or 0.0 not in board:
        return board
    if board[action] != 0.0:
        return None
    after = list(board)
    after[action] = 1.0 if board.count(1.0) == board.count(-1.0) else -1.0
    return after


@given(boards=st.lists(st.lists(st.sampled_from([-1.0, 0.0, 1.0, 2.0, math.nan]), min_size=9, max_size=9),
                       min_size=1, max_size=6),
       actions=st.lists(st.integers(-12, 12), min_size=1, max_size=6))
def test_tictactoe_play_matches_the_model_or_refuses(boards, actions):
    b, a = torch.tensor(boards), torch.tensor(actions)
    before = b.clone()
    cells_ok = all(v in (-1.0, 0.0, 1.0) for row in boards for v in row)
    actions_ok = len(actions) == len(boards) and all(0 <= x < 9 for x in actions)
    expected = [model_play(row, x) for row, x in zip(boards, actions)] if cells_ok and actions_ok else None
    try:
        after = tictactoe.play(b, a)
    except ValueError as error:
        assert torch.equal(b.nan_to_num(7.0), before.nan_to_num(7.0))
        field = "boards" if not cells_ok else "actions"
        assert str(error).startswith(f"{field}:"), error
        assert expected is None or None in expected
        return
    assert expected is not None and None not in expected
    assert after.tolist() == expected


# --------------------------------------------------------------------------------------------------
# Atari: corrupted states never reach ALE

@functools.cache
def _atari():
    pytest.importorskip("ale_py")
    from pymbrl.envs.atari import AtariVectorEnv

    env = AtariVectorEnv(num_envs=1, seed=0, max_episode_steps=500)
    env.reset()
    for a in np.random.default_rng(0).integers(0, 4, 20):
        env.step([a])
    return env, env.get_state(0)


def _corrupt(draw, value: torch.Tensor) -> torch.Tensor:
    flat = value.reshape(-1).clone()
    how = draw(st.sampled_from(["flip", "flip", "truncate", "extend"]))
    if how == "flip":
        bits = draw(st.lists(st.integers(0, 8 * flat.numel() - 1), min_size=1, max_size=3, unique=True))
        for bit in bits:
            flat[bit // 8] ^= 1 << (bit % 8)
        return flat.reshape(value.shape)
    if how == "truncate":
        return flat[:draw(st.integers(0, flat.numel() - 1))].clone()
    return torch.cat([flat, torch.tensor(draw(st.lists(st.integers(0, 255), min_size=1, max_size=8)),
                                         dtype=torch.uint8)])


@given(data=st.data())
def test_atari_set_state_refuses_corrupted_states_before_ale_sees_them(data):
    env, good = _atari()
    key = data.draw(st.sampled_from(["emulator", "emulator", "emulator", "screen", "frames", "lives",
                                     "episode_return", "episode_length", "previous_action", "rng"]))
    if isinstance(good[key], torch.Tensor):
        value = _corrupt(data.draw, good[key])
    elif key == "rng":
        inner = dict(good["rng"]["state"])
        inner["state"] ^= 1 << data.draw(st.integers(0, 127))
        value = {**good["rng"], "state": inner}
    elif key == "episode_return":
        value = data.draw(st.floats(allow_nan=True, allow_infinity=True))
    else:
        value = data.draw(st.integers(-(2**70), 2**70) | st.sampled_from([1.0, "1", None]))
    assume(not (isinstance(value, type(good[key])) and not isinstance(value, torch.Tensor) and value == good[key]))
    with pytest.raises(ValueError, match=rf"^state\['{key}'\]"):
        env.set_state(0, {**good, key: value})
    after = env.get_state(0)
    assert all(torch.equal(after[k], good[k]) if isinstance(good[k], torch.Tensor) else after[k] == good[k]
               for k in good)


# --------------------------------------------------------------------------------------------------
# Atari on ale-py's vector env: pymbrl checks the actions that ale-py only asserts on

@functools.cache
def _atari_on_ale_py():
    pytest.importorskip("ale_py.vector_env")
    from pymbrl.envs.atari import AtariVectorEnv

    env = AtariVectorEnv(num_envs=2, seed=0, backend="ale-py", num_threads=1)
    env.reset()
    return env


_ACTION_LIKE = st.one_of(
    st.lists(st.integers(-(2**70), 2**70) | st.integers(-2, 5), min_size=0, max_size=3),
    st.lists(st.floats(allow_nan=True) | st.booleans(), min_size=2, max_size=2),
    st.builds(lambda v, dtype, shape: np.full(shape, v).astype(dtype),
              st.integers(-300, 300), st.sampled_from(["int8", "uint8", "int32", "int64", "uint64", "float32", "bool"]),
              st.sampled_from([(2,), (1,), (3,), (2, 1), ()])),
    st.none(), st.text(max_size=3),
)


@given(actions=_ACTION_LIKE)
def test_atari_ale_py_backend_steps_exactly_the_valid_actions(actions):
    """An action batch is taken exactly when it is integers of shape (2,) in [0, 4); any other is
    refused with TypeError / ValueError naming ``actions``, before ale-py sees it."""
    env = _atari_on_ale_py()
    a = np.asarray(actions, dtype=object)
    valid = (a.shape == (2,) and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                     for v in a.tolist()) and all(0 <= v < 4 for v in a.tolist()))
    event(f"valid={valid}")
    try:
        obs, *_ = env.step(actions)
    except (TypeError, ValueError) as error:
        assert str(error).startswith("actions"), error
        assert not valid, (actions, error)
    else:
        assert valid, actions
        assert obs.shape == (2, 84, 84, 4)
