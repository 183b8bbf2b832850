"""libvirt on a machine without systemd: daemons, our storage pool, and the leftovers sweep.

Everything here is keyed on our own names (domain/volume prefix `skt6-`, pool `skt6-pool`,
box volumes `skiff-debian12-*` in that pool), so a sweep never touches anybody else's objects.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

URI = os.environ.get("LIBVIRT_DEFAULT_URI", "qemu:///system")
SOCKET = Path("/run/libvirt/libvirt-sock")
DAEMONS = (("virtlogd", Path("/run/virtlogd.pid")), ("libvirtd", Path("/run/libvirtd.pid")))


def virsh(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-q", "-c", URI, *args], capture_output=True, text=True,
                          check=check)


def _alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


KVM_DEV = Path("/dev/kvm")


def fix_kvm_access(log=print) -> tuple[int, int] | None:
    """Let libvirt's qemu user open /dev/kvm (group kvm, 0660: Debian's udev default).

    Without udev, /dev/kvm is root-only. libvirtd probes qemu's capabilities as root (KVM
    found) and then checks KVM as the qemu user (not found), so it throws its capability cache
    away and probes again on every call: 4-9 s per virsh/vagrant call, ~90 s per `vagrant up`.
    Returns the old (mode, gid) for restore_kvm_access, or None when nothing changed.
    """
    import grp

    try:
        st = KVM_DEV.stat()
        gid = grp.getgrnam("kvm").gr_gid
    except (OSError, KeyError):
        return None
    mode = st.st_mode & 0o777
    if st.st_gid == gid and mode & 0o060 == 0o060:
        return None
    os.chown(KVM_DEV, -1, gid)
    os.chmod(KVM_DEV, mode | 0o060)
    log(f"/dev/kvm: group kvm, mode {mode | 0o060:o} (was gid {st.st_gid}, mode {mode:o})")
    return mode, st.st_gid


def restore_kvm_access(old: tuple[int, int] | None) -> None:
    if old:
        with contextlib.suppress(OSError):
            os.chown(KVM_DEV, -1, old[1])
            os.chmod(KVM_DEV, old[0])


def ensure_daemons(log=print) -> list[int]:
    """Start virtlogd and libvirtd (-d) when they do not run; return the pids we started.

    No systemd here, so nothing socket-activates them. `--listen` is not used: it needs TLS.
    """
    started = []
    for name, pidfile in DAEMONS:
        if _alive(pidfile):
            continue
        subprocess.run([name, "-d"], check=True)
        for _ in range(100):
            pid = _alive(pidfile)
            if pid:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{name} did not start (no {pidfile})")
        log(f"started {name} (pid {pid})")
        started.append(pid)
    for _ in range(200):
        if SOCKET.exists() and virsh("version").returncode == 0:
            break
        time.sleep(0.05)
    return started


def stop_daemons(pids: list[int], log=print) -> None:
    """Stop the daemons this run started (by pid, libvirtd before virtlogd)."""
    for pid in reversed(pids):
        try:  # pids may come from an earlier --keep run: make sure it is still our daemon
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm not in ("libvirtd", "virtlogd"):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        log(f"stopped pid {pid}")


def ensure_pool(name: str, path: Path) -> None:
    """A directory pool of our own (no `default` pool exists on a fresh libvirt)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    if virsh("pool-info", name).returncode != 0:
        virsh("pool-define-as", name, "dir", "--target", str(path), check=True)
    info = virsh("pool-info", name).stdout
    if "running" not in info:
        virsh("pool-start", name, check=True)


def domains(prefix: str) -> list[str]:
    out = virsh("list", "--all", "--name").stdout
    return [d.strip() for d in out.splitlines() if d.strip().startswith(prefix)]


def volumes(pool: str) -> list[str]:
    r = virsh("vol-list", pool)
    if r.returncode != 0:
        return []
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def sweep(prefix: str, pool: str, pool_path: Path | None, *, drop_pool: bool, log=print) -> list[str]:
    """Remove our domains and volumes (and the pool itself when drop_pool); returns what went."""
    gone = []
    for d in domains(prefix):
        virsh("destroy", d)
        virsh("undefine", d, "--nvram")
        if virsh("dominfo", d).returncode != 0:
            gone.append(f"domain {d}")
    for v in volumes(pool):
        if v.startswith(prefix) or v.startswith("skiff-debian12-") or drop_pool:
            if virsh("vol-delete", v, "--pool", pool).returncode == 0:
                gone.append(f"volume {v}")
    if drop_pool and virsh("pool-info", pool).returncode == 0:
        virsh("pool-destroy", pool)
        virsh("pool-undefine", pool)
        gone.append(f"pool {pool}")
        if pool_path and pool_path.is_dir():
            for f in pool_path.iterdir():
                f.unlink()
            pool_path.rmdir()
    for g in gone:
        log(f"removed {g}")
    return gone
