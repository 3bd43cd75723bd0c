"""pymbrl.replay.rollouts: the on-disk rollout dataset: round trips, numbering that continues, and
every malformed, forged or pickled file refused naming it before an array is allocated."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pymbrl.replay.rollouts import RolloutDataset
from support import Payload


def frames(n: int, value: int = 0, shape=(64, 64, 3)) -> np.ndarray:
    return np.full((n, *shape), value, np.uint8)


def test_dataset_round_trip_and_continued_indices(tmp_path):
    data = RolloutDataset(tmp_path / "data")
    assert len(data) == 0
    actions = np.eye(3, dtype=np.float64)[[0, 2, 1]]
    data.add(frames(4, 7), actions, np.array([0.0, 1.0, 0.5]), np.array([False, False, True]))
    data.add(frames(2, 9), actions[:1], np.array([2.0]), np.array([False]))
    loaded = data.load(data.files()[0])
    assert set(loaded) == {"frames", "actions", "rewards", "dones"}
    np.testing.assert_array_equal(loaded["frames"], frames(4, 7))
    np.testing.assert_array_equal(loaded["actions"], actions)
    assert loaded["actions"].dtype == np.float32 and loaded["rewards"].dtype == np.float32
    np.testing.assert_array_equal(loaded["rewards"], [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(loaded["dones"], [False, False, True])
    # Reopened, the directory grows from where it was.
    again = RolloutDataset(tmp_path / "data")
    assert len(again) == 2
    again.add(frames(3, 11), actions[:2], np.zeros(2), np.zeros(2, bool))
    assert [f.name for f in again.files()] == ["rollout_000000.npz", "rollout_000001.npz", "rollout_000002.npz"]
    all_frames = again.frames()
    assert all_frames.shape == (9, 64, 64, 3) and all_frames.dtype == np.uint8
    np.testing.assert_array_equal(all_frames[:, 0, 0, 0], [7] * 4 + [9] * 2 + [11] * 3)
    np.testing.assert_array_equal(again.frames(2)[:, 0, 0, 0], [7] * 4 + [9] * 2)  # the first rollouts
    assert not list((tmp_path / "data").glob(".*"))  # no temporary files left behind


def test_frames_of_another_shape(tmp_path):
    data = RolloutDataset(tmp_path, frame_shape=(8, 6, 1))
    data.add(frames(3, 5, (8, 6, 1)), np.zeros((2, 4), np.float32), np.zeros(2), np.zeros(2, bool))
    assert data.frames().shape == (3, 8, 6, 1)
    with pytest.raises(ValueError, match=r"frames: expected uint8 \[3, 8, 6, 1\]"):
        data.add(frames(3), np.zeros((2, 4), np.float32), np.zeros(2), np.zeros(2, bool))
    # Read as 64x64 frames, they are refused.
    with pytest.raises(ValueError, match="frames: expected shape"):
        RolloutDataset(tmp_path).frames()


def test_dataset_refuses_bad_rollouts_and_an_empty_directory(tmp_path):
    data = RolloutDataset(tmp_path)
    with pytest.raises(ValueError, match="dataset"):
        data.frames()
    actions = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="frames"):
        data.add(frames(3), actions, np.zeros(3), np.zeros(3, bool))  # T frames, not T + 1
    with pytest.raises(ValueError, match="frames"):
        data.add(np.zeros((4, 32, 32, 3), np.uint8), actions, np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="frames"):
        data.add(frames(4).astype(np.float32), actions, np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="rewards"):
        data.add(frames(4), actions, np.zeros(2), np.zeros(3, bool))
    assert len(data) == 0


def test_an_edited_forged_or_pickled_rollout_is_refused_before_use(tmp_path):
    dataset = RolloutDataset(tmp_path / "data")
    dataset.add(frames(4, 3), np.eye(3, dtype=np.float32), np.ones(3), np.array([False, False, True]))
    rollout = dataset.load(dataset.files()[0])
    bad = tmp_path / "data" / "rollout_000009.npz"
    for edit, message in (({"rewards": rollout["rewards"][:-1]}, r"rewards: expected shape"),
                          ({"actions": np.full_like(rollout["actions"], np.nan)}, "actions: expected finite"),
                          ({"frames": rollout["frames"].astype(np.int64)}, "frames: expected uint8"),
                          ({"extra": np.zeros(1)}, "expected the arrays")):
        np.savez(bad, **{**rollout, **edit})
        with pytest.raises(ValueError, match=f"^{bad}: .*{message}"):
            dataset.load(bad)
    np.savez_compressed(bad, **rollout)
    with pytest.raises(ValueError, match=f"^{bad}: corrupt rollout .*compressed"):
        dataset.load(bad)
    # A header that promises more data than the file holds is refused before anything is allocated.
    np.savez(bad, **rollout)
    data = bad.read_bytes()
    shape = str(rollout["frames"].shape).encode()
    bad.write_bytes(data.replace(shape, f"({10**12}, 64, 64, 3)".encode()[:len(shape)].ljust(len(shape)), 1))
    with pytest.raises(ValueError, match=f"^{bad}: corrupt"):
        dataset.load(bad)
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=f"^{bad}: corrupt"):
        dataset.load(bad)
    marker = tmp_path / "ran"
    np.savez(bad, frames=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match=f"^{bad}: corrupt rollout"):
        dataset.load(bad)
    bad.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match=f"^{bad}: corrupt rollout"):
        dataset.load(bad)
    assert not marker.exists()
    with pytest.raises(ValueError, match="no such file"):
        dataset.load(tmp_path / "data" / "rollout_000099.npz")
