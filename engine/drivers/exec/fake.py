"""A process-only execdriver (no namespaces, no cgroups) with the native driver's interface.

It lets the container engine (manager + monitor + logs + attach + exec) be tested without root
and without the kernel features: a "container" is a plain child process of the monitor, run in
the rootfs directory with the spec's args/env. Never used by skiffd.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import socket
from pathlib import Path


def _send_fd(path: str, fd: int) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, "little"))])
    s.close()


def _spawn(process: dict, cwd: str, stdio: tuple[int, int, int] | None,
           console_socket: str | None, gate: int | None) -> int:
    master = slave = -1
    if process.get("terminal"):
        master, slave = pty.openpty()
    pid = os.fork()
    if pid == 0:  # child
        try:
            if gate is not None:
                os.read(gate, 1)
            if slave >= 0:
                os.setsid()
                import fcntl
                import termios

                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                fds = (slave, slave, slave)
            else:
                fds = stdio or (0, 1, 2)
            for i, fd in enumerate(fds):
                os.dup2(fd, i)
            env = dict(e.split("=", 1) for e in process.get("env", []) if "=" in e)
            try:
                os.chdir(cwd)
            except OSError:
                os.chdir("/")
            args = process["args"]
            os.execvpe(args[0], args, env)
        except BaseException:  # noqa: BLE001
            os._exit(127)
    if slave >= 0:
        os.close(slave)
        assert console_socket
        _send_fd(console_socket, master)
        os.close(master)
    return pid


class FakeContainer:
    def __init__(self, root: Path, cid: str, pid: int = 0) -> None:
        self.root, self.id, self.pid = root, cid, pid
        self._gate_w: int | None = None
        self._rootfs = "/"

    @property
    def status(self) -> str:
        return "running" if self.pid else "stopped"

    def start(self) -> None:
        if self._gate_w is not None:
            os.write(self._gate_w, b"x")
            os.close(self._gate_w)
            self._gate_w = None

    def kill(self, sig: int = signal.SIGTERM, all: bool = False) -> None:
        os.kill(self.pid, sig)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stats(self) -> dict:
        return {}

    def oom_killed(self) -> bool:
        return False

    def exec(self, process: dict, stdio: tuple[int, int, int] | None = None,
             console_socket: str | None = None, pid_file: str | None = None) -> int:
        cwd = os.path.normpath(self._rootfs + "/" + process.get("cwd", "/"))
        return _spawn(process, cwd, stdio, console_socket, None)

    def destroy(self, force: bool = False) -> None:
        shutil.rmtree(self.root / self.id, ignore_errors=True)


class FakeDriver:
    name = "fake"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def create(self, cid: str, bundle: str, spec: dict, *, stdio: tuple[int, int, int] | None,
               console_socket: str | None) -> FakeContainer:
        (self.root / cid).mkdir(parents=True)
        gate_r, gate_w = os.pipe()
        rootfs = spec["root"]["path"]
        cwd = os.path.normpath(rootfs + "/" + spec["process"].get("cwd", "/"))
        pid = _spawn(spec["process"], cwd, stdio, console_socket, gate_r)
        os.close(gate_r)
        c = FakeContainer(self.root, cid, pid)
        c._gate_w = gate_w
        c._rootfs = rootfs
        (self.root / cid / "state.json").write_text(json.dumps({"pid": pid, "rootfs": rootfs}))
        return c

    def load(self, cid: str) -> FakeContainer:
        d = json.loads((self.root / cid / "state.json").read_text())
        c = FakeContainer(self.root, cid, d["pid"])
        c._rootfs = d["rootfs"]
        return c

    def exists(self, cid: str) -> bool:
        return (self.root / cid).exists()

    def kill(self, cid: str, sig: int, pid: int = 0) -> None:
        try:
            self.load(cid).kill(sig)
        except FileNotFoundError:
            if pid:
                os.kill(pid, sig)

    def pause(self, cid: str) -> None:
        self.load(cid).pause()

    def resume(self, cid: str) -> None:
        self.load(cid).resume()

    def stats(self, cid: str) -> dict:
        return {}

    def destroy(self, cid: str) -> None:
        shutil.rmtree(self.root / cid, ignore_errors=True)
