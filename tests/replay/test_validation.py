import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from pymbrl.replay import PrioritizedReplayBuffer, ReplayBuffer, SequenceReplayBuffer

from .helpers import assert_same_state, feed, generate, make_spec, row_layout, snapshot, squeeze_envs

CLASSES = [ReplayBuffer, PrioritizedReplayBuffer, SequenceReplayBuffer]
SPEC = make_spec()


def without(spec, name):
    return {k: v for k, v in spec.items() if k != name}


BAD_SPECS = [
    (without(SPEC, "obs"), ValueError, "obs"),
    (without(SPEC, "reward"), ValueError, "reward"),
    (without(SPEC, "terminated"), ValueError, "terminated"),
    (without(SPEC, "truncated"), ValueError, "truncated"),
    ({**SPEC, "reward": ((1,), torch.float32)}, ValueError, "reward"),
    ({**SPEC, "reward": ((), torch.int32)}, ValueError, "reward"),
    ({**SPEC, "reward": ((), np.int64)}, ValueError, "reward"),
    ({**SPEC, "reward": ((), torch.float16)}, ValueError, "reward"),
    ({**SPEC, "terminated": ((), torch.uint8)}, ValueError, "terminated"),
    ({**SPEC, "truncated": ((), torch.float32)}, ValueError, "truncated"),
    ({**SPEC, "terminated": ((2,), torch.bool)}, ValueError, "terminated"),
    ({**SPEC, "extra": ((2,), np.complex64)}, TypeError, "extra"),
    ({**SPEC, "extra": ((2,), torch.complex64)}, (TypeError, ValueError), "extra"),
    ({**SPEC, "extra": ((), object)}, TypeError, "extra"),
    ({**SPEC, "extra": ((), "U3")}, TypeError, "extra"),
    ({**SPEC, "extra": ((), torch.bfloat16)}, TypeError, "extra"),
    ({**SPEC, "extra": ((0,), torch.float32)}, ValueError, "extra"),
    ({**SPEC, "extra": ((-2,), torch.float32)}, ValueError, "extra"),
    ({**SPEC, "extra": "float32"}, TypeError, "extra"),
    ({**SPEC, "extra": ((2.5,), torch.float32)}, TypeError, "extra"),
    ({**SPEC, "extra": ((True,), torch.float32)}, TypeError, "extra"),
    ({**SPEC, "extra": (("2",), torch.float32)}, TypeError, "extra"),
    ({**SPEC, "extra": (2.0, torch.float32)}, TypeError, "extra"),
    ({**SPEC, "next_obs": ((2,), torch.float32)}, ValueError, "next_obs"),
    ({**SPEC, "discount": ((), torch.float32)}, ValueError, "discount"),
    ({**SPEC, "indices": ((), torch.int64)}, ValueError, "indices"),
    ({**SPEC, "weights": ((), torch.float32)}, ValueError, "weights"),
    ({**SPEC, "is_first": ((), torch.bool)}, ValueError, "is_first"),
    ({}, TypeError, "spec"),
    ([("obs", ((2,), torch.float32))], TypeError, "spec"),
]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("spec, error, name", BAD_SPECS)
def test_bad_specs_are_rejected_by_field_name(cls, spec, error, name):
    with pytest.raises(error, match=name):
        cls(8, spec)


BAD_ARGS = [
    (dict(capacity=0), ValueError, "capacity"),
    (dict(capacity=-4), ValueError, "capacity"),
    (dict(capacity=8.0), ValueError, "capacity"),
    (dict(capacity=True), ValueError, "capacity"),
    (dict(capacity=10, num_envs=4), ValueError, "capacity"),
    (dict(capacity=2, num_envs=4), ValueError, "capacity"),
    (dict(num_envs=0), ValueError, "num_envs"),
    (dict(num_envs=1.5), ValueError, "num_envs"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=2**64), ValueError, "seed"),
]
TRANSITION_ARGS = [
    (dict(n_step=0), ValueError, "n_step"),
    (dict(n_step=-1), ValueError, "n_step"),
    (dict(n_step=2.0), ValueError, "n_step"),
    (dict(gamma=1.5), ValueError, "gamma"),
    (dict(gamma=-0.1), ValueError, "gamma"),
    (dict(gamma=float("nan")), ValueError, "gamma"),
    (dict(gamma="0.9"), ValueError, "gamma"),
]
PRIORITY_ARGS = [
    (dict(alpha=-0.1), ValueError, "alpha"),
    (dict(alpha=float("nan")), ValueError, "alpha"),
    (dict(alpha=float("inf")), ValueError, "alpha"),
    (dict(beta=-1.0), ValueError, "beta"),
    (dict(beta=float("inf")), ValueError, "beta"),
    (dict(eps=-1e-6), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
]


def _construct(cls, kwargs):
    kwargs = dict(kwargs)
    return cls(kwargs.pop("capacity", 8), SPEC, **kwargs)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("kwargs, error, name", BAD_ARGS)
def test_bad_arguments_are_rejected_by_name(cls, kwargs, error, name):
    with pytest.raises(error, match=name):
        _construct(cls, kwargs)


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
@pytest.mark.parametrize("kwargs, error, name", TRANSITION_ARGS)
def test_bad_n_step_and_gamma_are_rejected(cls, kwargs, error, name):
    with pytest.raises(error, match=name):
        _construct(cls, kwargs)


@pytest.mark.parametrize("kwargs, error, name", PRIORITY_ARGS)
def test_bad_priority_hyper_parameters_are_rejected(kwargs, error, name):
    with pytest.raises(error, match=name):
        _construct(PrioritizedReplayBuffer, kwargs)


def test_edge_arguments_are_accepted():
    ReplayBuffer(4, SPEC, num_envs=4, n_step=1, gamma=0.0)  # one step per stream
    ReplayBuffer(8, SPEC, gamma=1.0, seed=2**64 - 1)
    PrioritizedReplayBuffer(8, SPEC, alpha=0.0, beta=0.0, eps=0.0)
    buf = ReplayBuffer(12, {**SPEC, "reward": ((), np.float64), "obs": ((3, 2), np.uint8)}, num_envs=3)
    assert buf.capacity == 12 and buf.num_envs == 3


# -- add / extend ----------------------------------------------------------------------------------


def one_step(t=100, num_envs=1):
    """Valid kwargs for add(): a step that ends no episode, in the encoding of helpers.py."""
    chunk = generate(np.random.default_rng(0), 1, num_envs, t0=t, p_term=0, p_trunc=0)
    return {k: (v[0, 0] if num_envs == 1 else v[0]) for k, v in chunk.items()}


def filled(cls, num_envs=1, capacity=24, steps=30):
    buf = cls(capacity, SPEC, num_envs=num_envs, seed=1)
    chunk = generate(np.random.default_rng(1), steps, num_envs, p_term=0.2, p_trunc=0.1)
    feed(buf, chunk, "extend")
    return buf


def replace(fields, **changes):
    out = dict(fields)
    for k, v in changes.items():
        if v is DROP:
            out.pop(k)
        else:
            out[k] = v
    return out


DROP = object()
NOT_AN_ARRAY = (TypeError, ValueError)  # either names the field; what matters is the name and no change

BAD_ADDS = [
    (dict(reward=DROP), ValueError, "reward"),
    (dict(obs=DROP), ValueError, "obs"),
    (dict(action=DROP), ValueError, "action"),
    (dict(terminated=DROP), ValueError, "terminated"),
    (dict(next_obs=DROP), ValueError, "next_obs"),
    (dict(bonus=1.0), ValueError, "bonus"),
    (dict(obs=np.zeros(3, np.float32)), ValueError, "obs"),
    (dict(obs=np.zeros((1, 2), np.float32)), ValueError, "obs"),
    (dict(next_obs=np.zeros(3, np.float32)), ValueError, "next_obs"),
    (dict(action=np.zeros(2, np.int64)), ValueError, "action"),
    (dict(reward=np.zeros(1, np.float32)), ValueError, "reward"),
    (dict(terminated=np.array(1.0)), TypeError, "terminated"),
    (dict(terminated=1.0), TypeError, "terminated"),
    (dict(truncated=np.array(1)), TypeError, "truncated"),
    (dict(terminated=torch.tensor(0.0)), TypeError, "terminated"),
    (dict(action=np.array([1.5])), TypeError, "action"),
    (dict(action=np.array([1.0], np.float32)), TypeError, "action"),
    (dict(action=torch.tensor([2.0])), TypeError, "action"),
    (dict(obs=np.array([1 + 2j, 0j])), TypeError, "obs"),
    (dict(obs=np.array(["a", "b"])), TypeError, "obs"),
    (dict(reward="1.0"), NOT_AN_ARRAY, "reward"),
    (dict(reward=None), NOT_AN_ARRAY, "reward"),
    (dict(obs=object()), NOT_AN_ARRAY, "obs"),
    (dict(obs={"x": 1}), NOT_AN_ARRAY, "obs"),
    (dict(next_obs=object()), NOT_AN_ARRAY, "next_obs"),
    (dict(obs=torch.zeros(2, device="meta")), NOT_AN_ARRAY, "obs"),  # a tensor off the CPU
    (dict(obs=torch.zeros(2, requires_grad=True)), NOT_AN_ARRAY, "obs"),
]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("changes, error, name", BAD_ADDS)
def test_rejected_add_names_the_field_and_changes_nothing(cls, changes, error, name):
    buf = filled(cls)
    before, size = snapshot(buf), len(buf)
    with pytest.raises(error, match=name):
        buf.add(**replace(one_step(30), **changes))
    assert_same_state(before, snapshot(buf))
    assert len(buf) == size
    buf.add(**one_step(30))  # and the buffer still takes a good step
    assert buf._core.written == 31


class RaisesWhenConverted:
    """An array-like whose conversion (numpy calls ``__array__``) raises ``error``: a Ctrl-C that
    arrives while a tensor is converted."""

    def __init__(self, error):
        self.error = error

    def __array__(self, dtype=None, copy=None):
        raise self.error


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_while_a_field_is_converted_propagates_and_changes_nothing(cls, error):
    buf = filled(cls)
    before, size = snapshot(buf), len(buf)
    with pytest.raises(error):  # not a TypeError saying that obs is not an array
        buf.add(**replace(one_step(30), obs=RaisesWhenConverted(error())))
    with pytest.raises(error):
        buf.extend(**{k: np.stack([v, v]) for k, v in one_step(30).items()} | {"obs": RaisesWhenConverted(error())})
    assert_same_state(before, snapshot(buf))
    assert len(buf) == size
    with pytest.raises(NOT_AN_ARRAY, match="obs"):  # an ordinary error still means a wrong argument
        buf.add(**replace(one_step(30), obs=RaisesWhenConverted(RuntimeError("no"))))


BAD_MULTI_ENV_ADDS = [
    (dict(reward=0.5), ValueError, "reward"),  # a scalar where [num_envs] is expected
    (dict(obs=np.zeros(2, np.float32)), ValueError, "obs"),
    (dict(obs=np.zeros((2, 2), np.float32)), ValueError, "obs"),
    (dict(next_obs=np.zeros((4, 2), np.float32)), ValueError, "next_obs"),
    (dict(terminated=np.zeros(3)), TypeError, "terminated"),
    (dict(action=np.zeros((3, 1))), TypeError, "action"),
]


@pytest.mark.parametrize("changes, error, name", BAD_MULTI_ENV_ADDS)
def test_rejected_multi_env_add_changes_nothing(changes, error, name):
    buf = filled(PrioritizedReplayBuffer, num_envs=3)
    before, size = snapshot(buf), len(buf)
    with pytest.raises(error, match=name):
        buf.add(**replace(one_step(30, num_envs=3), **changes))
    assert_same_state(before, snapshot(buf))
    assert len(buf) == size


def good_chunk(steps=4, num_envs=1, t0=30):
    chunk = generate(np.random.default_rng(2), steps, num_envs, t0=t0, p_term=0.3)
    return {k: (v[:, 0] if num_envs == 1 else v) for k, v in chunk.items()}


BAD_EXTENDS = [
    (lambda c: replace(c, reward=c["reward"][:-1]), ValueError, "reward"),
    (lambda c: replace(c, next_obs=c["next_obs"][:-1]), ValueError, "next_obs"),
    (lambda c: replace(c, terminated=np.concatenate([c["terminated"], [False]])), ValueError, "terminated"),
    (lambda c: replace(c, obs=c["obs"][0]), ValueError, "obs"),  # no steps dimension (obs is [2])
    (lambda c: replace(c, obs=np.float32(1.0)), ValueError, "obs"),
    (lambda c: replace(c, obs=c["obs"][:0]), ValueError, "obs"),
    (lambda c: replace(c, truncated=c["truncated"].astype(np.float32)), TypeError, "truncated"),
    (lambda c: replace(c, action=c["action"].astype(np.float64)), TypeError, "action"),
    (lambda c: replace(c, next_obs=DROP), ValueError, "next_obs"),
    (lambda c: replace(c, obs=DROP), ValueError, "obs"),
    (lambda c: replace(c, extra=c["reward"]), ValueError, "extra"),
    (lambda c: replace(c, reward=object()), NOT_AN_ARRAY, "reward"),
]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("make, error, name", BAD_EXTENDS)
def test_rejected_extend_names_the_field_and_changes_nothing(cls, make, error, name):
    buf = filled(cls)
    before, size = snapshot(buf), len(buf)
    with pytest.raises(error, match=name):
        buf.extend(**make(good_chunk()))
    assert_same_state(before, snapshot(buf))
    assert len(buf) == size


def test_rejected_multi_env_extend_changes_nothing():
    buf = filled(SequenceReplayBuffer, num_envs=3)
    before = snapshot(buf)
    chunk = good_chunk(num_envs=3)
    for bad in (replace(chunk, obs=chunk["obs"][:, :2]), replace(chunk, reward=chunk["reward"][:, 0]),
                replace(chunk, terminated=chunk["terminated"][..., None])):
        with pytest.raises(ValueError):
            buf.extend(**bad)
        assert_same_state(before, snapshot(buf))


# -- sampling arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_batch_size_outside_one_to_len_is_rejected(cls):
    buf = filled(cls)
    before = snapshot(buf)
    n = len(buf)
    for bad in (0, -1, n + 1, 10**6):
        with pytest.raises(ValueError, match="batch_size"):
            buf.sample(bad)
    for bad in (2.0, True, "4", None):
        with pytest.raises((ValueError, TypeError), match="batch_size"):
            buf.sample(bad)
    assert_same_state(before, snapshot(buf))  # not even the generator moved
    assert buf.sample(n)["indices"].shape == (n,)
    assert buf.sample(np.int64(3))["indices"].shape == (3,)


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_sampling_an_empty_buffer_raises(cls):
    buf = cls(8, SPEC, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(1)
    buf.add(**one_step(0))  # one step that ended no episode: its next obs is unknown
    assert len(buf) == 0
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(1)
    buf.add(**one_step(1))
    assert len(buf) == 1
    assert buf.sample(1)["indices"].tolist() == [0]


def test_sequence_sampling_arguments_are_checked():
    buf = filled(SequenceReplayBuffer)
    before = snapshot(buf)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(0, 2)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="length"):
            buf.sample(4, bad)
    with pytest.raises(ValueError, match="length"):
        buf.sample(4, 2.0)
    assert_same_state(before, snapshot(buf))
    with pytest.raises(ValueError, match="length"):
        SequenceReplayBuffer(8, SPEC).sample(1, 1)  # empty


def test_prioritized_beta_per_call_is_checked():
    buf = filled(PrioritizedReplayBuffer)
    before = snapshot(buf)
    for bad in (-0.5, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="beta"):
            buf.sample(2, beta=bad)
    assert_same_state(before, snapshot(buf))


# -- accepted inputs ----------------------------------------------------------------------------


def stored_fields(buf):
    """Every stored row (in row order) decoded per field from the core's snapshot."""
    layout, row_bytes = row_layout(buf.spec)
    rows = buf._core.snapshot()["rows"].reshape(-1, row_bytes)
    out = {}
    for name, off, n in layout:
        shape, dtype = buf.spec[name]
        out[name] = rows[:, off:off + n].copy().view(dtype).reshape((len(rows),) + tuple(shape))
    return out


def test_float64_obs_is_cast_into_a_float32_field():
    buf = ReplayBuffer(8, SPEC, seed=0)
    buf.add(obs=np.array([0.1, 2.0]), action=np.array([3]), reward=np.float64(0.25), terminated=False,
            truncated=False, next_obs=np.array([1.0, 2.0]))
    buf.extend(obs=np.array([[1.0, 2.0], [2.0, 2.0]]), action=np.array([[4], [5]], np.int32),
               reward=np.array([0.5, 0.75]), terminated=np.array([False, True]), truncated=np.array([False, False]),
               next_obs=np.array([[2.0, 2.0], [2.5, 2.0]]))
    stored = stored_fields(buf)
    np.testing.assert_array_equal(stored["obs"], np.array([[0.1, 2.0], [1, 2], [2, 2]], np.float32))
    np.testing.assert_array_equal(stored["action"][:, 0], [3, 4, 5])
    np.testing.assert_array_equal(stored["reward"], [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(stored["terminated"], [False, False, True])
    batch = buf.sample(3)
    assert batch["obs"].dtype == torch.float32 and batch["action"].dtype == torch.int64
    final = batch["next_obs"][batch["indices"] == 2]
    assert final.numel() == 0 or torch.equal(final[0], torch.tensor([2.5, 2.0]))


@pytest.mark.parametrize("cls", CLASSES)
def test_python_numpy_and_torch_scalars_and_tensors_are_accepted(cls):
    buf = cls(16, SPEC, seed=0)
    inputs = [
        dict(obs=[0.0, 0.0], action=[0], reward=1, terminated=False, truncated=False, next_obs=[1.0, 0.0]),
        dict(obs=(1.0, 0.0), action=np.array([1]), reward=0.5, terminated=np.bool_(False), truncated=np.False_,
             next_obs=np.array([2.0, 0.0], np.float32)),
        dict(obs=np.array([2.0, 0.0], np.float32), action=np.array([2], np.uint8), reward=np.float32(0.25),
             terminated=np.array(False), truncated=np.array(False), next_obs=np.array([3.0, 0.0])),
        dict(obs=torch.tensor([3.0, 0.0]), action=torch.tensor([3]), reward=torch.tensor(0.125),
             terminated=torch.tensor(False), truncated=torch.tensor(False), next_obs=torch.tensor([4.0, 0.0])),
        dict(obs=torch.tensor([4.0, 0.0], dtype=torch.float64), action=torch.tensor([4], dtype=torch.int32),
             reward=np.float64(2.0), terminated=True, truncated=False,
             next_obs=torch.tensor([4.5, 0.0], dtype=torch.float64)),
        dict(obs=torch.tensor([[9.0, 5.0, 0.0]])[0, 1:], action=np.array([5]), reward=-1.0,  # a strided view
             terminated=False, truncated=torch.tensor(True), next_obs=torch.tensor([5.5, 0.0])),
    ]
    for kwargs in inputs:
        buf.add(**kwargs)
    stored = stored_fields(buf)
    np.testing.assert_array_equal(stored["obs"], [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [5, 0]])
    np.testing.assert_array_equal(stored["action"][:, 0], np.arange(6))
    np.testing.assert_array_equal(stored["reward"], [1, 0.5, 0.25, 0.125, 2.0, -1.0])
    np.testing.assert_array_equal(stored["terminated"], [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(stored["truncated"], [0, 0, 0, 0, 0, 1])
    assert len(buf) == 6
    np.testing.assert_array_equal(np.sort(buf._core.snapshot()["final_pool"].view(np.float32).reshape(-1, 2), 0),
                                  [[4.5, 0.0], [5.5, 0.0]])


@pytest.mark.parametrize("num_envs", [1, 3])
def test_torch_tensors_are_accepted_by_extend(num_envs):
    buf = ReplayBuffer(4 * num_envs, SPEC, num_envs=num_envs, seed=0)
    chunk = generate(np.random.default_rng(0), 4, num_envs)
    buf.extend(**{k: torch.from_numpy(v) for k, v in squeeze_envs(chunk, num_envs).items()})
    stored = stored_fields(buf)
    np.testing.assert_array_equal(stored["obs"], chunk["obs"].reshape(-1, 2))
    np.testing.assert_array_equal(stored["action"], chunk["action"].reshape(-1, 1))


def test_process_exits_cleanly_after_a_dtype_cast():
    # A cast (here float64 -> float32) must not leave anything behind that breaks interpreter exit.
    code = textwrap.dedent("""
        import numpy as np
        from pymbrl.replay import ReplayBuffer
        spec = {"obs": ((2,), np.float32), "reward": ((), np.float32), "terminated": ((), bool),
                "truncated": ((), bool)}
        buf = ReplayBuffer(4, spec, seed=0)
        buf.add(obs=np.zeros(2), reward=0.0, terminated=False, truncated=False, next_obs=np.zeros(2))
        print("added")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "added" in proc.stdout
    assert proc.returncode == 0, f"exit status {proc.returncode}: {proc.stderr[-600:]}"


# -- values that do not fit the field's dtype (issue 19) -----------------------------------------

SMALL_SPEC = {"obs": ((2,), torch.float32), "action": ((), torch.int8), "count": ((), torch.uint8),
              "half": ((), torch.float16), "reward": ((), torch.float32), "terminated": ((), torch.bool),
              "truncated": ((), torch.bool)}


def small_step(**changes):
    step = dict(obs=np.zeros(2, np.float32), action=np.int8(1), count=np.uint8(2), half=np.float16(0.5),
                reward=0.5, terminated=False, truncated=False, next_obs=np.ones(2, np.float32))
    step.update(changes)
    return step


NOT_FITTING = [
    (dict(action=300), "action"),  # used to be stored as 44
    (dict(action=np.int64(-129)), "action"),
    (dict(action=np.uint64(2**63)), "action"),
    (dict(count=-1), "count"),  # negative into unsigned
    (dict(count=np.int16(256)), "count"),
    (dict(obs=np.array([1e300, 0.0])), "obs"),  # float64 -> float32 inf, with only a warning before
    (dict(next_obs=np.array([0.0, -1e39])), "next_obs"),
    (dict(reward=1e300), "reward"),  # a Python float straight into a float32 field
    (dict(reward=np.float64(-3.5e38)), "reward"),
    (dict(half=np.float32(70000.0)), "half"),
    (dict(half=100000), "half"),
]


@pytest.mark.parametrize("changes, name", NOT_FITTING)
def test_values_that_do_not_fit_the_field_are_refused_and_change_nothing(changes, name):
    buf = ReplayBuffer(8, SMALL_SPEC, seed=0)
    buf.add(**small_step())
    before = snapshot(buf)
    with pytest.raises(ValueError, match=rf"^{name}: expected values that fit"):
        buf.add(**small_step(**changes))
    assert_same_state(before, snapshot(buf))


def test_one_value_that_does_not_fit_refuses_the_whole_extend():
    buf = ReplayBuffer(8, SMALL_SPEC, seed=0)
    steps = {k: np.stack([np.asarray(v)] * 3) for k, v in small_step().items()}
    steps["action"] = np.array([1, 2, 128], np.int64)
    with pytest.raises(ValueError, match="action"):
        buf.extend(**steps)
    assert buf._core.written == 0


def test_values_that_fit_are_converted_exactly():
    buf = ReplayBuffer(8, SMALL_SPEC, seed=0)
    buf.add(**small_step(action=np.int64(-128), count=np.int64(255), obs=np.array([3.4e38, -1e-50]),
                         reward=-3.4e38, half=np.float64(65504.0), next_obs=np.array([np.inf, np.nan])))
    buf.add(**small_step(action=127, count=True, terminated=True))
    stored = stored_fields(buf)
    assert stored["action"].tolist() == [-128, 127]
    assert stored["count"].tolist() == [255, 1]
    assert stored["half"][0] == np.float16(65504.0)
    np.testing.assert_array_equal(stored["obs"][0], np.array([3.4e38, -1e-50], np.float32))
    assert stored["reward"][0] == np.float32(-3.4e38)
    batch = buf.sample(1)  # next_obs of step 0 is the following obs; NaN and inf are kept where given
    assert batch["obs"].dtype == torch.float32


def test_non_finite_values_are_kept_in_float_fields_and_refused_in_integer_ones():
    buf = ReplayBuffer(8, SMALL_SPEC, seed=0)
    buf.add(**small_step(obs=np.array([np.nan, np.inf])))
    with pytest.raises(TypeError, match="action"):
        buf.add(**small_step(action=float("nan")))
    with pytest.raises(TypeError, match="action"):
        buf.add(**small_step(action=np.float64(3.0)))  # integral floats too: documented
    assert buf._core.written == 1


# -- size arithmetic and limits -------------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("shape", [(2**62,), (2**31, 2**31, 2**2), (2**63 - 1,), (2**40 + 1,), (3, 2**62)])
def test_spec_sizes_that_overflow_or_exceed_the_limit_are_refused(cls, shape):
    # 2^62 float32s used to make a row of 0 bytes and a SIGFPE at the first division.
    spec = dict(SPEC, obs=(shape, torch.float32))
    with pytest.raises(ValueError, match=r"spec\['obs'\]|capacity"):
        cls(8, spec)


@pytest.mark.parametrize("cls", CLASSES)
def test_capacity_is_limited_by_the_documented_bounds(cls):
    with pytest.raises(ValueError, match="capacity"):
        cls(2**31, SPEC)
    with pytest.raises(ValueError, match="capacity"):
        cls(2**30, dict(SPEC, obs=((2**12,), torch.float32)))  # 2^30 rows of 16 KiB > 2^40 bytes
    with pytest.raises(ValueError, match="num_envs"):
        cls(4, SPEC, num_envs=8)


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_batch_sizes_beyond_64_bits_are_a_value_error(cls):
    buf = filled(cls)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(2**64)


def test_sequence_batches_are_bounded_before_anything_is_allocated():
    # sample(30_000_000, 2) on a 6-row buffer used to allocate 2.7 GB.
    buf = SequenceReplayBuffer(6, SPEC, seed=0)
    feed(buf, generate(np.random.default_rng(0), 6, 1), "extend")
    before = snapshot(buf)
    for batch_size, length in ((30_000_000, 2), (2**62, 2), (2**63 - 1, 5), (4, 2**63 - 1)):
        with pytest.raises(ValueError, match="batch_size|length"):
            buf.sample(batch_size, length)
    assert_same_state(before, snapshot(buf))
    assert buf.sample(16, 4)["obs"].shape == (16, 4, 2)  # small batches may still repeat windows
