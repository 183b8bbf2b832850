"""`skiffd`: the daemon. Wires the Engine to the backends and serves the Engine API.

Backends are imported and built one by one: a backend that fails to load leaves its API area
answering 503 while the rest of the daemon works (that is also how the parts were integrated
while they were being written). SIGTERM stops serving without touching containers: each is held
by its own monitor process, and the next skiffd re-attaches to it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from engine import __version__

log = logging.getLogger("skiffd")

DEFAULT_HOST = "unix:///run/skiff/skiff.sock"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="skiffd", description="the Skiff container engine daemon")
    p.add_argument("-H", "--host", action="append", default=None,
                   help=f"socket to listen on (unix:///path or tcp://127.0.0.1:PORT; "
                        f"default {DEFAULT_HOST}); repeatable")
    p.add_argument("--root", default="/var/lib/skiff", help="persistent state directory")
    p.add_argument("--exec-root", default="/run/skiff", help="runtime state directory")
    p.add_argument("--storage-driver", default=None, help="graphdriver: overlay (default), vfs")
    p.add_argument("--bridge", default="skiff0", help="name of the default bridge")
    p.add_argument("--bridge-subnet", default=None, help="subnet of the default bridge")
    p.add_argument("--nft-table", default="skiff", help="name of skiff's nftables table")
    p.add_argument("--cgroup-parent", default="skiff", help="parent cgroup of containers")
    p.add_argument("--group", default="skiff", help="group owning the unix socket")
    p.add_argument("--init-path", default=None,
                   help="static init for --init (default: tini-static or docker-init on PATH)")
    p.add_argument("--pidfile", default=None, help="write the daemon's pid here")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "warn", "error", "fatal"])
    p.add_argument("--version", action="version", version=f"skiffd {__version__}")
    return p.parse_args(argv)


def _build(name: str, fn: Any) -> Any:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - one missing backend must not stop the daemon
        log.warning("%s backend unavailable: %s: %s", name, type(e).__name__, e,
                    exc_info=log.isEnabledFor(logging.DEBUG))
        return None


def build_backends(args: argparse.Namespace):
    """Engine + graph + network + containers, each optional."""
    from engine.daemon.router import Backends
    from engine.jobs import Engine

    root, exec_root = Path(args.root), Path(args.exec_root)
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    exec_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    engine = Engine()

    def graph() -> Any:
        from engine.graph import Graph

        kw = {"driver": args.storage_driver} if args.storage_driver else {}
        return Graph(root / "image", **kw)

    def network() -> Any:
        from engine.drivers.network import NetworkDriver

        # network namespaces are named after the nft table (skiff-<id>, skiff-pool-<n>): one
        # name per daemon for everything it puts on the kernel
        d = NetworkDriver(root / "network", bridge=args.bridge, subnet=args.bridge_subnet,
                          table=args.nft_table, netns_prefix=f"{args.nft_table}-")
        d.start()
        return d

    images = _build("images", graph)
    networks = _build("network", network)

    def containers() -> Any:
        try:
            from engine.containers import ContainerManager
        except ImportError:
            from engine.containers.manager import ContainerManager

        def emit(type: str, action: str, actor_id: str, attributes: dict | None = None
                 ) -> None:
            engine.emit(type, action, actor_id, attributes)

        m = ContainerManager(root, exec_root, images, networks, emit,
                             cgroup_parent=args.cgroup_parent, init_path=args.init_path)
        m.restore()
        return m

    cm = _build("containers", containers)
    cgv = "1"
    try:
        from engine.libcontainer.cgroups import detect

        cgv = "2" if detect() == "v2" else "1"
    except Exception:  # noqa: BLE001
        pass
    cfg = {"root": str(root), "exec_root": str(exec_root), "storage_driver":
           getattr(getattr(images, "driver", None), "name", None) or args.storage_driver
           or "overlay",
           "bridge": args.bridge, "bridge_subnet": args.bridge_subnet,
           "log_level": args.log_level, "cgroup_version": cgv, "id": _daemon_id(root)}
    return Backends(engine=engine, containers=cm, images=images, networks=networks, config=cfg)


def _daemon_id(root: Path) -> str:
    p = root / "engine-id"
    try:
        return p.read_text().strip()
    except OSError:
        import uuid

        v = str(uuid.uuid4())
        try:
            p.write_text(v + "\n")
        except OSError:
            pass
        return v


_DAEMON_MARKERS = (b"skiffd", b"engine.daemon.main", b"engine/daemon/main")


def _proc_start_time(pid: int) -> float | None:
    """Wall-clock start time of `pid` from /proc (boot time + starttime ticks), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        btime = next(int(ln.split()[1]) for ln in open("/proc/stat") if ln.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def pidfile_owner(path: str) -> int | None:
    """The pid of a live skiffd that wrote `path`, or None when the file is stale.

    Why more than kill(pid, 0): right after a SIGKILL the old daemon is still a zombie (or
    still tearing down) for a moment, and a pid may be reused by any other process. A pid is
    only a live owner if it is not a zombie/dead task, its command line names skiffd, and it
    started before the pid file was written (a later process merely reused the number)."""
    try:
        text = Path(path).read_text()
        mtime = os.stat(path).st_mtime
        pid = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat[stat.rindex(")") + 2 :].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    if state in ("Z", "X", "x") or not any(m in cmdline for m in _DAEMON_MARKERS):
        return None
    started = _proc_start_time(pid)
    if started is not None and started > mtime + 2.0:  # 2 s: tick and btime rounding
        return None
    return pid


def _pidfile(path: str) -> None:
    old = pidfile_owner(path)
    if old is not None:
        raise SystemExit(f"skiffd: pid file {path} names a running process ({old})")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)  # readers never see an empty file


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(args.log_level, args.log_level.upper())
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from engine.daemon.router import build
    from engine.daemon.server import Server

    if args.pidfile:
        _pidfile(args.pidfile)
    listeners = []
    try:
        for h in args.host or [DEFAULT_HOST]:
            listeners.append(Server.listen(h, group=args.group))
    except Exception as e:  # noqa: BLE001
        print(f"skiffd: cannot listen: {e}", file=sys.stderr)
        return 1
    backends = build_backends(args)
    server = Server(build(backends), listeners)
    stop = threading.Event()

    daemon_pid = os.getpid()

    def on_signal(signum: int, _frame: Any) -> None:
        if os.getpid() != daemon_pid:
            # a process forked from the daemon (a container's init or monitor before its exec)
            # must die of the signal as it would without our handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        log.info("signal %s: shutting down (containers keep running)", signum)
        stop.set()

    def child_defaults() -> None:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(s, signal.SIG_DFL)

    os.register_at_fork(after_in_child=child_defaults)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    server.start()
    log.info("skiffd %s listening on %s", __version__, ", ".join(args.host or [DEFAULT_HOST]))
    while not stop.wait(3600):
        pass
    server.shutdown()
    backends.engine.close()
    for b in (backends.containers, backends.networks, backends.images):
        close = getattr(b, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001
                log.exception("closing backend")
    if args.pidfile:
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
