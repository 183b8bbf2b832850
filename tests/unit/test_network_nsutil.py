"""nsutil's guard: work meant for a container's netns never runs in the host's namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.drivers.network import nsutil


def _never() -> None:
    raise AssertionError("ran outside the target namespace")


@pytest.mark.parametrize("target", ["/nonexistent/netns", "/proc/self/ns/net", "file"])
def test_run_in_refuses_and_never_runs_the_work(tmp_path: Path, target: str) -> None:
    """A missing path, a regular file (setns: EINVAL) and the host's own namespace (as root
    setns succeeds but the thread did not move; otherwise EPERM) all raise OSError."""
    if target == "file":
        target = str(tmp_path / "f")
        Path(target).write_text("")
    with pytest.raises(OSError):
        nsutil.run_in(target, _never)


def test_remove_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nsutil, "NETNS_DIR", tmp_path)
    (tmp_path / "x").write_text("")  # never mounted: umount2 fails, the file still goes
    nsutil.remove("x")
    nsutil.remove("x")
    assert not (tmp_path / "x").exists()
