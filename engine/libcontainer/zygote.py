"""Opt-in pre-forked `skiff-runc` server: pay Python's start-up and imports once, not per run.

    skiff-runc-zygote: python -m engine.libcontainer.zygote SOCKET [--idle SECONDS]
    client:            SKIFF_RUNC_ZYGOTE=SOCKET skiff-runc ...   (any command)

The client sends its argv, cwd, environment and stdio fds (SCM_RIGHTS) and relays signals; the
server forks a child per request that runs the normal command line in-process (libcontainer
and the cgroups package already imported) and reports the exit code. Differences from the
plain CLI: the container's init is not a descendant of the client but of the server's child,
so callers that rely on being the init's subreaper after `create` (containerd-style shims)
must not use it. Without the variable nothing changes. The server exits after --idle seconds
without a request (default 60) and on SIGTERM.
"""

from __future__ import annotations

import os
import struct
import sys

ENV = "SKIFF_RUNC_ZYGOTE"


def _send(sock, obj: dict, fds: list[int] | None = None) -> None:
    import socket

    from . import fastjson

    data = fastjson.dumps(obj).encode()
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds \
        else []
    sock.sendmsg([struct.pack("I", len(data)) + data], anc)


def _recv(sock, nfds: int = 0) -> tuple[dict | None, list[int]]:
    import socket

    from . import fastjson

    head, anc, _f, _a = sock.recvmsg(4, socket.CMSG_SPACE(4 * max(nfds, 1)))
    fds: list[int] = []
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds += list(struct.unpack(f"{len(data) // 4}i", data[:len(data) // 4 * 4]))
    if len(head) < 4:
        return None, fds
    (n,) = struct.unpack("I", head)
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None, fds
        buf += chunk
    return fastjson.loads(buf), fds


# ------------------------------------------------------------------------------ client

def client(path: str, argv: list[str]) -> int:
    """Run `argv` through the server at `path`; returns the command's exit code."""
    import signal
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    _send(s, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}, [0, 1, 2])

    def fwd(sig: int, _frame: object) -> None:
        try:
            _send(s, {"signal": sig})
        except OSError:
            pass

    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGURG):
            try:
                signal.signal(sig, fwd)
            except (OSError, ValueError):
                pass
    msg, _ = _recv(s)
    s.close()
    return int(msg["exit"]) if msg else 255


# ------------------------------------------------------------------------------ server

def _serve_one(conn) -> None:
    """In the forked child: become the request's skiff-runc process."""
    import signal
    import threading

    msg, fds = _recv(conn, 3)
    if msg is None or len(fds) != 3:
        os._exit(1)
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    os.chdir(msg["cwd"])
    os.environ.clear()
    os.environ.update(msg["env"])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def relay() -> None:  # the client's signals, re-raised here for the CLI's handlers
        while True:
            try:
                m, _ = _recv(conn)
            except OSError:
                return
            if m is None:
                return
            if "signal" in m:
                os.kill(os.getpid(), int(m["signal"]))

    threading.Thread(target=relay, daemon=True).start()
    from . import cli
    from .cli import main

    cli._IN_ZYGOTE = True

    try:
        code = main(list(msg["argv"]))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001
        os.write(2, f"skiff-runc: {e}\n".encode())
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        _send(conn, {"exit": code})
    finally:
        os._exit(0)


def serve(path: str, idle: float = 60.0) -> None:
    import select
    import signal
    import socket

    # everything a `run` needs, imported once here
    from . import capabilities, cgroups, cli, console, container, process, rootfs, seccomp  # noqa: F401
    from . import spec as _spec  # noqa: F401

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(64)
    class _Stop(Exception):
        pass

    def on_term(_s: int, _f: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        while True:
            try:
                r, _, _ = select.select([srv], [], [], idle)
            except InterruptedError:
                continue
            while True:  # reap finished request children
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
            if not r:
                break  # idle
            conn, _ = srv.accept()
            if os.fork() == 0:
                srv.close()
                _serve_one(conn)
            conn.close()
    except _Stop:
        pass
    finally:
        srv.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.stderr.write("usage: python -m engine.libcontainer.zygote SOCKET [--idle SECONDS]\n")
        return 2
    idle = float(argv[argv.index("--idle") + 1]) if "--idle" in argv else 60.0
    serve(argv[0], idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
