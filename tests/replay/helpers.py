"""Shared helpers for the replay tests: a transition history whose observations encode their id,
and a brute-force Python model of what the buffer must hold and return.

Encoding, for step t of env stream e (id = t * num_envs + e):
  obs = [t, e]; action = [id]; next_obs passed to add = [t + 1, e] (the next row's obs), or
  [t + 0.5, e] where the step ends an episode (the final observation, distinguishable from the
  following reset observation [t + 1, e]).
"""

from __future__ import annotations

import numpy as np
import torch

FIELDS = ("obs", "action", "reward", "terminated", "truncated")


def make_spec(obs_dtype=torch.float32, reward_dtype=torch.float32):
    return {"obs": ((2,), obs_dtype), "action": ((1,), torch.int64), "reward": ((), reward_dtype),
            "terminated": ((), torch.bool), "truncated": ((), torch.bool)}


def generate(rng, steps, num_envs, t0=0, p_term=0.1, p_trunc=0.05, done_every=None):
    """Steps t0 .. t0 + steps - 1 for every stream, arrays [T, E, ...]. Terminated and truncated
    are exclusive. ``done_every=k``: every k-th step of every stream terminates, nothing else ends."""
    t = np.repeat(np.arange(t0, t0 + steps)[:, None], num_envs, axis=1)
    e = np.repeat(np.arange(num_envs)[None, :], steps, axis=0)
    if done_every is None:
        u = rng.random((steps, num_envs))
        terminated = u < p_term
        truncated = (u >= p_term) & (u < p_term + p_trunc)
    else:
        terminated = (t + 1) % done_every == 0
        truncated = np.zeros_like(terminated)
    done = terminated | truncated
    return {
        "obs": np.stack([t, e], -1).astype(np.float32),
        "action": (t * num_envs + e)[..., None].astype(np.int64),
        "reward": rng.normal(size=(steps, num_envs)).astype(np.float32),
        "terminated": terminated,
        "truncated": truncated,
        "next_obs": np.stack([t + np.where(done, 0.5, 1.0), e], -1).astype(np.float32),
    }


def squeeze_envs(chunk, num_envs):
    """[T, E, ...] -> the layout extend expects: [T, ...] for one env, [T, E, ...] otherwise."""
    return {k: (v[:, 0] if num_envs == 1 else v) for k, v in chunk.items()}


def feed(buf, chunk, mode):
    """Store a [T, E, ...] chunk with add (one step at a time) or extend."""
    num_envs = buf.num_envs
    data = squeeze_envs(chunk, num_envs)
    if mode == "extend":
        buf.extend(**data)
    else:
        for k in range(len(data["obs"])):
            buf.add(**{name: v[k] for name, v in data.items()})


class Model:
    """Everything ever added, and what the contract says the buffer holds."""

    def __init__(self, capacity, num_envs, n_step=1, gamma=0.99):
        self.capacity, self.num_envs, self.n_step, self.gamma = capacity, num_envs, n_step, gamma
        self.steps_per_env = capacity // num_envs
        self.hist = None

    def append(self, chunk):
        if self.hist is None:
            self.hist = {k: v.copy() for k, v in chunk.items()}
        else:
            self.hist = {k: np.concatenate([self.hist[k], chunk[k]]) for k in self.hist}

    def clear(self):
        self.hist = None

    @property
    def written(self):
        return 0 if self.hist is None else len(self.hist["obs"])

    @property
    def oldest_step(self):
        return max(0, self.written - self.steps_per_env)

    @property
    def oldest_id(self):
        return self.oldest_step * self.num_envs

    @property
    def end_id(self):
        return self.written * self.num_envs

    def done(self, t, e):
        return bool(self.hist["terminated"][t, e] or self.hist["truncated"][t, e])

    def sampleable(self, id_):
        t, e = divmod(int(id_), self.num_envs)
        if not self.oldest_step <= t < self.written:
            return False
        return t < self.written - 1 or self.done(t, e)

    def sampleable_ids(self):
        return np.array([i for i in range(self.oldest_id, self.end_id) if self.sampleable(i)], dtype=np.int64)

    def __len__(self):
        return len(self.sampleable_ids())

    def next_obs(self, t, e):
        # What the buffer can know: the stored final obs, else the next row's obs (which must be stored).
        if self.done(t, e):
            return self.hist["next_obs"][t, e]
        return self.hist["obs"][t + 1, e]

    def is_first(self, t, e):
        return t == 0 or self.done(t - 1, e)

    def transition(self, id_):
        """Expected sampled values of transition ``id_`` (n-step aware), by brute force."""
        t, e = divmod(int(id_), self.num_envs)
        h = self.hist
        out = {"obs": h["obs"][t, e], "action": h["action"][t, e]}
        ret, disc = 0.0, 1.0
        k = 0
        while True:
            ret += disc * float(h["reward"][t + k, e])
            disc *= self.gamma
            if h["terminated"][t + k, e]:
                out.update(reward=ret, discount=0.0, terminated=True, truncated=False,
                           next_obs=h["next_obs"][t + k, e])
                break
            trunc = bool(h["truncated"][t + k, e])
            if trunc or k + 1 == self.n_step or not self.sampleable((t + k + 1) * self.num_envs + e):
                out.update(reward=ret, discount=disc, terminated=False, truncated=trunc,
                           next_obs=self.next_obs(t + k, e))
                break
            k += 1
        if self.n_step == 1:  # the raw row (both flags as stored)
            out.update(terminated=bool(h["terminated"][t, e]), truncated=bool(h["truncated"][t, e]))
        return out


def check_transition_batch(batch, model, batch_size):
    """Every sampled transition is a sampleable one, and every field matches the brute force."""
    b = {k: v.numpy() for k, v in batch.items()}
    assert b["indices"].shape == (batch_size,)
    for i, id_ in enumerate(b["indices"]):
        assert model.sampleable(id_), f"sampled id {id_} is not sampleable"
        exp = model.transition(id_)
        ctx = f"id {id_}"
        np.testing.assert_array_equal(b["obs"][i], exp["obs"], err_msg=ctx)
        np.testing.assert_array_equal(b["action"][i], exp["action"], err_msg=ctx)
        np.testing.assert_array_equal(b["next_obs"][i], exp["next_obs"], err_msg=ctx)
        assert b["terminated"][i] == exp["terminated"], ctx
        assert b["truncated"][i] == exp["truncated"], ctx
        np.testing.assert_allclose(b["reward"][i], exp["reward"], rtol=1e-5, atol=1e-5, err_msg=ctx)
        np.testing.assert_allclose(b["discount"][i], exp["discount"], rtol=1e-6, err_msg=ctx)


def check_next_obs_encoding(batch, num_envs):
    """Model-free consistency: the row is the one its id names, and next_obs is the same stream's
    next obs ([t + 1, e]) or a final obs ([t + 0.5, e]) exactly where the step ended an episode."""
    obs, nxt = batch["obs"].numpy(), batch["next_obs"].numpy()
    ids = batch["indices"].numpy()
    done = batch["terminated"].numpy() | batch["truncated"].numpy()
    t, e = np.divmod(ids, num_envs)
    np.testing.assert_array_equal(obs[:, 0], t)
    np.testing.assert_array_equal(obs[:, 1], e)
    np.testing.assert_array_equal(batch["action"].numpy()[:, 0], ids)
    np.testing.assert_array_equal(nxt[:, 1], e)
    np.testing.assert_array_equal(nxt[:, 0], t + np.where(done, 0.5, 1.0))


def row_layout(spec):
    """(name, offset, nbytes) per field and the row size, as row_layout.h places them."""
    out, offset = [], 0
    for name, (shape, dtype) in spec.items():
        itemsize = dtype.itemsize
        nbytes = itemsize * int(np.prod(shape, dtype=np.int64))
        offset = (offset + itemsize - 1) // itemsize * itemsize
        out.append((name, offset, nbytes))
        offset += nbytes
    return out, (offset + 7) // 8 * 8


def field_bytes(buf, rows):
    """The stored rows with padding bytes removed (they are never written)."""
    layout, row_bytes = row_layout(buf.spec)
    assert row_bytes == buf._core.row_bytes
    r = np.asarray(rows).reshape(-1, row_bytes)
    return np.concatenate([r[:, off:off + n] for _, off, n in layout], axis=1)


def snapshot(buf, raw_rows=True):
    """A deep copy of the core's state; with raw_rows=False the row padding is dropped."""
    state = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in buf._core.snapshot().items()}
    if not raw_rows:
        state["rows"] = field_bytes(buf, state["rows"])
    return state


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_same_batch(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def chi_square_threshold(df):
    """Upper 1e-4 quantile of chi-square(df) (scipy if present, else Wilson-Hilferty, which is
    close enough at these sizes)."""
    try:
        from scipy.stats import chi2
        return float(chi2.ppf(1 - 1e-4, df))
    except ImportError:
        z = 3.719  # standard normal upper 1e-4 quantile
        return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


def chi_square(counts, probs):
    expected = np.asarray(probs, dtype=np.float64) * np.sum(counts)
    return float(np.sum((np.asarray(counts) - expected) ** 2 / expected))


def split_file(data):
    """(header dict, data section bytes) of a saved buffer (format version 2)."""
    import json
    import struct
    (length,) = struct.unpack("<Q", data[12:20])
    end = 24 + length
    return json.loads(data[24:end]), data[end + (-end % 8):]


def join_file(header, section):
    """A saved buffer with `header` (re-serialised, with a valid header checksum) over `section`:
    for edits that must get past the checksum to reach the validation behind it."""
    import json
    import struct
    import zlib
    raw = json.dumps(header).encode()
    start = b"PYMBRLRB" + struct.pack("<IQ", 2, len(raw))
    out = start + struct.pack("<I", zlib.crc32(raw, zlib.crc32(start))) + raw
    return out + b"\0" * (-len(out) % 8) + section


def resign_array(header, section, name, fn):
    """Rewrite array `name` of the data section through fn (same size), with its checksum updated."""
    import zlib
    entry = next(e for e in header["arrays"] if e["name"] == name)
    start = entry["offset"]
    a = np.frombuffer(section[start:start + entry["nbytes"]], dtype=entry["dtype"]).reshape(entry["shape"]).copy()
    new = np.ascontiguousarray(fn(a), dtype=entry["dtype"]).tobytes()
    assert len(new) == entry["nbytes"]
    entry["crc32"] = zlib.crc32(new)
    return section[:start] + new + section[start + entry["nbytes"]:]
