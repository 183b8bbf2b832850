"""Network namespaces without a fork: a short-lived thread enters (or makes) the namespace.

Why: pyroute2's `netns.create()` and `NetNS(path)` fork a helper process per call, which costs
the daemon (a large, threaded process) 10-50 ms per container start. A network namespace is a
per-thread attribute, so a thread can unshare(CLONE_NEWNET) or setns() on its own and open
netlink sockets there while every other thread of the daemon stays where it is. The thread
exits when the work is done, so nothing has to switch back, and a failed setns() never runs the
work in the host's namespace (that would reconfigure the host's own interfaces).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
NETNS_DIR = Path("/run/netns")

T = TypeVar("T")
_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _host_ns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino  # the thread group leader's namespace


def _in_thread(fn: Callable[[], T], name: str) -> T:
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=body, name=name, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _enter(path: str) -> None:
    """setns() the calling thread into the namespace at path, and check that it moved."""
    host = _host_ns_inode()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _c().setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)
    if os.stat("/proc/thread-self/ns/net").st_ino == host:
        raise OSError(f"setns {path}: still in the host's network namespace")


def run_in(path: str, fn: Callable[[], T]) -> T:
    """fn() in a thread inside the network namespace at path (netlink sockets it opens live
    there); its result or exception comes back here."""

    def body() -> T:
        _enter(path)
        return fn()

    return _in_thread(body, "netns")


def create(name: str, setup: Callable[[], None] | None = None) -> str:
    """A new named netns (/run/netns/NAME, as `ip netns add` makes it); setup() runs inside it
    before the thread leaves. Returns the path. Raises OSError and leaves nothing behind."""
    from pyroute2 import netns

    path = str(NETNS_DIR / name)

    def body() -> str:
        host = _host_ns_inode()
        if _c().unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        if os.stat("/proc/thread-self/ns/net").st_ino == host:
            raise OSError("unshare(CLONE_NEWNET) left the thread in the host's namespace")
        try:
            netns.attach(name, "thread-self")  # mkdir, shared /run/netns, bind mount
            if setup is not None:
                setup()
        except BaseException:
            remove(name)
            raise
        return path

    return _in_thread(body, "netns-create")


def create_held(setup: Callable[[], None] | None = None) -> int:
    """A new netns held only by the returned fd, with no name in /run/netns: it and every
    interface in it (a veth pair, both ends) go when the fd is closed, also when the process is
    killed. pin() names it later."""

    def body() -> int:
        host = _host_ns_inode()
        if _c().unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_ino == host:
                raise OSError("unshare(CLONE_NEWNET) left the thread in the host's namespace")
            if setup is not None:
                setup()
        except BaseException:
            os.close(fd)
            raise
        return fd

    return _in_thread(body, "netns-create")


_dir_ready = False


def _prepare_dir() -> None:
    """/run/netns as iproute2 makes it: a shared mount, so that names appear in every mount
    namespace made later."""
    global _dir_ready
    if _dir_ready:
        return
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    d = str(NETNS_DIR).encode()
    if _c().mount(b"", d, b"none", MS_SHARED | MS_REC, None) != 0:
        if _c().mount(d, d, b"none", MS_BIND | MS_REC, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bind mount {NETNS_DIR}: {os.strerror(err)}")
        if _c().mount(b"", d, b"none", MS_SHARED | MS_REC, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"make {NETNS_DIR} shared: {os.strerror(err)}")
    _dir_ready = True


def pin(fd: int, name: str) -> str:
    """Name the netns held by fd /run/netns/NAME (a bind mount, as `ip netns add` leaves it);
    the caller may close fd afterwards. Returns the path; leaves nothing behind on failure."""
    _prepare_dir()
    path = NETNS_DIR / name
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    src = f"/proc/self/fd/{fd}".encode()
    if _c().mount(src, str(path).encode(), b"none", MS_BIND, None) != 0:
        err = ctypes.get_errno()
        os.unlink(path)
        raise OSError(err, f"bind mount netns at {path}: {os.strerror(err)}")
    return str(path)


def remove(name: str) -> None:
    """Unmount and unlink /run/netns/NAME (idempotent); the kernel frees the namespace once
    nothing else holds it."""
    path = NETNS_DIR / name
    if not os.path.lexists(path):
        return
    _c().umount2(str(path).encode(), 2)  # MNT_DETACH; EINVAL when it was never mounted
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def loopback_up() -> None:
    """Inside a namespace: bring lo up (a fresh netns has it down)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
