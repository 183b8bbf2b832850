"""The "native" execdriver: the only place the container engine calls libcontainer.

The monitor process uses create/start/exec (it must be the init's parent or subreaper); the
daemon uses the others on containers it loads by id from libcontainer's state root.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any


def _lc() -> Any:
    from engine.libcontainer import container as lc  # imported lazily: heavy, root-only paths

    return lc


class NativeDriver:
    """libcontainer containers under one state root (exec_root/runtime)."""

    name = "native"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def create(self, cid: str, bundle: str, spec: dict, *, stdio: tuple[int, int, int] | None,
               console_socket: str | None) -> Any:
        self.root.mkdir(parents=True, exist_ok=True)
        return _lc().Container.create(str(self.root), cid, bundle, spec, stdio=stdio,
                                      console_socket=console_socket, subreaper=True)

    def load(self, cid: str) -> Any:
        return _lc().Container.load(str(self.root), cid)

    def exists(self, cid: str) -> bool:
        return (self.root / cid).exists()

    def kill(self, cid: str, sig: int, pid: int = 0) -> None:
        """Signal the container's init; falls back to the recorded pid when state is gone."""
        try:
            self.load(cid).kill(sig)
            return
        except Exception:  # noqa: BLE001 - libcontainer state may already be destroyed
            if not pid:
                raise
        os.kill(pid, sig)

    def kill_all(self, cid: str, sig: int = signal.SIGKILL) -> None:
        try:
            self.load(cid).kill(sig, all=True)
        except Exception:  # noqa: BLE001
            pass

    def pause(self, cid: str) -> None:
        self.load(cid).pause()

    def resume(self, cid: str) -> None:
        self.load(cid).resume()

    def stats(self, cid: str) -> dict:
        return self.load(cid).stats()

    def destroy(self, cid: str) -> None:
        """Idempotent: used after failures, when the monitor could not clean up."""
        try:
            c = self.load(cid)
        except Exception:  # noqa: BLE001
            return
        try:
            c.destroy(force=True)
        except TypeError:
            c.destroy()


def cgroup_manager(cgroups_path: str) -> Any:
    from engine.libcontainer.cgroups import new_manager

    return new_manager(cgroups_path)


def update_resources(cgroups_path: str, oci_resources: dict) -> None:
    """`docker update`: validate with libcontainer's model, then write the cgroup."""
    from engine.libcontainer.cgroups import Resources

    res = Resources.from_oci(oci_resources)
    mgr = cgroup_manager(cgroups_path)
    if hasattr(mgr, "update"):
        mgr.update(res)
    else:
        mgr.set(res)


def cgroup_pids(cgroups_path: str) -> list[int]:
    try:
        return list(cgroup_manager(cgroups_path).pids())
    except Exception:  # noqa: BLE001
        return []


def cgroup_stats(cgroups_path: str) -> dict:
    try:
        return dict(cgroup_manager(cgroups_path).stats())
    except Exception:  # noqa: BLE001
        return {}
