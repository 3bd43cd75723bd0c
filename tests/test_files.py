import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pymbrl import _files


def test_atomic_write_replaces_whole_and_syncs_file_and_directory(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    _files.atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert synced[-1] == str(tmp_path) and any(s.startswith(str(tmp_path / ".a.bin.")) for s in synced[:-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def write(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _files.atomic_write(path, write)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_the_next_write_removes_a_killed_writers_temporary_but_not_a_live_ones(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    # A writer killed with SIGKILL in the middle of its write.
    script = textwrap.dedent(f"""
        import os, signal
        from pymbrl import _files
        def write(f):
            f.write(b"x" * 1000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        _files.atomic_write({str(path)!r}, write)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=os.environ.copy())
    assert done.returncode == -signal.SIGKILL
    dead = [p for p in tmp_path.iterdir() if p.name != "a.bin"]
    assert len(dead) == 1 and dead[0].name.startswith(".a.bin.") and dead[0].name.endswith(".tmp")
    assert path.read_bytes() == b"old"
    live = _files.temporary_name(path)  # this process's own, as if another thread were writing
    live.write_bytes(b"busy")
    unrelated = tmp_path / ".a.bin.notapid-x.tmp"
    unrelated.write_bytes(b"")
    _files.atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.bin", live.name, unrelated.name])


def test_dead_writers_folders_are_removed_too(tmp_path):
    target = tmp_path / "checkpoint"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    folder = target.with_name(f".checkpoint.{child.pid}-abc.tmp")
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "f").write_bytes(b"1")
    _files.remove_dead_writers(target)
    assert not folder.exists()
