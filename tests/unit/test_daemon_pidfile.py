"""skiffd's pid file check: only a live skiffd that wrote the file blocks a new daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from engine.daemon.main import _pidfile, pidfile_owner


def write(path, pid):
    path.write_text(f"{pid}\n")
    return str(path)


def test_missing_garbage_and_dead_pids_are_stale(tmp_path):
    assert pidfile_owner(str(tmp_path / "none.pid")) is None
    assert pidfile_owner(write(tmp_path / "g.pid", "x")) is None
    p = subprocess.Popen(["true"])
    p.wait()
    assert pidfile_owner(write(tmp_path / "d.pid", p.pid)) is None
    assert pidfile_owner(write(tmp_path / "own.pid", os.getpid())) is None


def test_a_zombie_skiffd_is_stale(tmp_path):
    """Right after SIGKILL the old daemon is a zombie until its parent reaps it."""
    p = subprocess.Popen(["sh", "-c", "sleep 30", "skiffd"])
    try:
        path = write(tmp_path / "z.pid", p.pid)
        assert pidfile_owner(path) == p.pid  # alive and named skiffd: the owner
        os.kill(p.pid, 9)
        deadline = time.monotonic() + 5
        while open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert pidfile_owner(path) is None  # not reaped yet, but dead
        _pidfile(path)  # a new daemon starts and takes the file over
        assert open(path).read() == f"{os.getpid()}\n"
    finally:
        p.kill()
        p.wait()


def test_a_live_process_that_is_not_skiffd_is_stale(tmp_path):
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert pidfile_owner(write(tmp_path / "o.pid", p.pid)) is None
    finally:
        p.kill()
        p.wait()


def test_a_pid_reused_after_the_file_was_written_is_stale(tmp_path):
    path = tmp_path / "r.pid"
    path.write_text("1\n")
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    p = subprocess.Popen(["sh", "-c", "sleep 30", "skiffd"])
    try:
        path.write_text(f"{p.pid}\n")
        os.utime(path, (time.time() - 3600, time.time() - 3600))  # written before p started
        assert pidfile_owner(str(path)) is None
    finally:
        p.kill()
        p.wait()


def test_a_live_skiffd_blocks(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "skiffd"])
    try:
        path = write(tmp_path / "l.pid", p.pid)
        with pytest.raises(SystemExit, match="names a running process"):
            _pidfile(path)
    finally:
        p.kill()
        p.wait()
