"""pids.max parsing of this kernel against the model in kernel-facts (a scratch cgroup)."""

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

PIDS_MAX = 4194305  # PID_MAX_LIMIT + 1 on 64-bit


def _pids_root() -> Path:
    v1 = Path("/sys/fs/cgroup/pids")
    if v1.is_dir() and (v1 / "tasks").exists():
        return v1
    return Path("/sys/fs/cgroup")


@pytest.fixture(scope="module")
def scratch(require_root):
    cg = _pids_root() / f"skiff-test-{uuid.uuid4().hex[:8]}"
    if not (_pids_root() / "cgroup.procs").exists():
        pytest.skip("no pids controller")
    cg.mkdir()
    try:
        yield cg
    finally:
        os.rmdir(cg)


@given(st.one_of(st.integers(-5, 10), st.integers(PIDS_MAX - 3, PIDS_MAX + 3),
                 st.integers(0, 2**40), st.just("max")))
def test_pids_max_readback(scratch, value):
    path = scratch / "pids.max"
    accepted = value == "max" or 0 <= value < PIDS_MAX
    try:
        path.write_text(str(value))
    except OSError:
        assert not accepted, f"kernel refused {value!r}"
        return
    assert accepted, f"kernel accepted {value!r}"
    assert path.read_text().strip() == str(value)
