"""The per-container monitor (like conmon / containerd-shim): holds the container's process.

`python -m engine.containers.monitor CONFIG READY_FD` forks once (the daemon reaps the first
process at once; the monitor is adopted by init), becomes a child subreaper, creates the
container through libcontainer, and then:

- holds the container's stdio pipes or pty master, writes the json-file log;
- serves a unix socket (exec_root/<id>/monitor.sock): one JSON request line per connection,
  answered with one JSON line; "attach" and "exec" connections then carry the raw stream
  (docker-multiplexed frames unless the process has a tty, stdin the other way);
- reaps its children; when the container's init exits it drains output, records
  {"ExitCode","OOMKilled","FinishedAt"} atomically in the exit file, destroys the libcontainer
  container, answers "wait" requests and exits.

The daemon can die and come back at any time: everything it needs is in files and the socket.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import gc
import json
import os
import select
import selectors
import signal
import socket
import struct
import sys
import termios
import time
import traceback
from pathlib import Path
from typing import Any

from .logs import JsonFileWriter, frame
from .state import bind_unix, iso_from_ns

PR_SET_CHILD_SUBREAPER = 36
MAX_CLIENT_BUFFER = 8 * 1024 * 1024  # a client further behind than this is dropped
MAX_STDIN_BUFFER = 1024 * 1024  # input held for a process that does not read yet
START_TIMEOUT = 120.0  # created but never started: give up
SPARE_DELAY = 0.15  # the zygote forks the next spare monitor this long after handing one out


def _set_subreaper() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _set_name(name: str) -> None:
    """comm (ps -e, top) says what this process is, also when forked from the zygote."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)  # PR_SET_NAME


def _nonblock(fd: int) -> None:
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)


def recv_fd(sock: socket.socket) -> int:
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize * 4))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise RuntimeError("no file descriptor received on the console socket")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def set_winsize(fd: int, h: int, w: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))


def atomic_write(path: Path, data: dict) -> None:
    """tmp + rename: a reader sees all or nothing. No fsync: after a power loss the container
    is gone anyway and restore() records a missing exit file as 255."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


class Client:
    """One connection on the monitor socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.out = bytearray()
        self.kind = ""  # "", attach, exec, wait, done
        self.stdout = self.stderr = self.stdin = False
        self.proc: Proc | None = None  # the process whose stdin this client feeds
        self.closing = False  # close once `out` is flushed
        self.read_closed = False
        self.read_paused = False  # stdin backpressure: the process is not reading


class Proc:
    """A process whose stdio the monitor holds: the container's init or an exec."""

    def __init__(self, name: str, tty: bool) -> None:
        self.name = name
        self.tty = tty
        self.pid = 0
        self.stdin_w: int | None = None
        self.outputs: dict[int, str] = {}  # fd -> "stdout" | "stderr"
        self.master: int | None = None
        self.exit_code: int | None = None
        self.exited_at = 0.0
        self.clients: list[Client] = []
        self.stdin_once = False
        self.console_path: Path | None = None
        self.stdin_buf = bytearray()  # written as the process reads (never blocks the loop)
        self.stdin_close_pending = False


class Monitor:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.cid: str = cfg["id"]
        self.sel = selectors.DefaultSelector()
        self.init = Proc("init", bool(cfg.get("tty")))
        self.init.stdin_once = bool(cfg.get("stdin_once"))
        self.execs: dict[str, Proc] = {}
        self.by_pid: dict[int, Proc] = {}
        self.waiters: list[Client] = []
        self.container: Any = None
        self.started = False
        self.started_at = ""
        self.created_at = time.monotonic()
        self.logger: JsonFileWriter | None = None
        if cfg.get("log_driver", "json-file") != "none":
            self.logger = JsonFileWriter(Path(cfg["log_path"]), cfg.get("max_size", -1),
                                         cfg.get("max_file", 1))
        self.exec_dir = Path(cfg["exec_dir"])
        self.sig_r, self.sig_w = os.pipe()
        _nonblock(self.sig_r)
        _nonblock(self.sig_w)
        self.exit_record: dict | None = None
        self.log_error = False
        from engine.drivers.exec import load_driver

        self.driver = load_driver(cfg.get("driver", "native"), Path(cfg["runtime_root"]))

    # -- setup ---------------------------------------------------------------------------
    def _stdio(self, proc: Proc, open_stdin: bool, console_path: Path
               ) -> tuple[tuple[int, int, int] | None, str | None, list[int], socket.socket | None]:
        """Returns (stdio for the child, console socket path, fds to close after, listener)."""
        if proc.tty:
            if len(str(console_path)) > 100:  # the runtime connects by path: keep it short
                import tempfile

                console_path = Path(tempfile.mkdtemp(prefix="skiff-con-")) / "c.sock"
                proc.console_path = console_path
            console_path.unlink(missing_ok=True)
            lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            lst.bind(str(console_path))
            lst.listen(1)
            return None, str(console_path), [], lst
        to_close = []
        if open_stdin:
            r, w = os.pipe()
            proc.stdin_w = w
            _nonblock(w)
            stdin = r
            to_close.append(r)
        else:
            stdin = os.open(os.devnull, os.O_RDONLY)
            to_close.append(stdin)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        proc.outputs = {out_r: "stdout", err_r: "stderr"}
        to_close += [out_w, err_w]
        return (stdin, out_w, err_w), None, to_close, None

    def _take_console(self, proc: Proc, lst: socket.socket, console_path: Path) -> None:
        lst.settimeout(10)
        conn, _ = lst.accept()
        conn.settimeout(10)
        with conn:
            proc.master = recv_fd(conn)
        lst.close()
        console_path = proc.console_path or console_path
        console_path.unlink(missing_ok=True)
        if proc.console_path is not None:
            with contextlib.suppress(OSError):
                console_path.parent.rmdir()
        proc.outputs = {proc.master: "stdout"}
        proc.stdin_w = proc.master

    def _watch_proc(self, proc: Proc) -> None:
        for fd in proc.outputs:
            _nonblock(fd)
            self.sel.register(fd, selectors.EVENT_READ, ("out", proc))

    def create(self) -> int:
        cfg = self.cfg
        stdio, console, to_close, lst = self._stdio(
            self.init, bool(cfg.get("open_stdin")), self.exec_dir / "console.sock"
        )
        try:
            with open(cfg["spec_path"]) as f:
                spec = json.load(f)
            self.container = self.driver.create(self.cid, cfg["bundle"], spec, stdio=stdio,
                                                console_socket=console)
            if lst is not None:
                self._take_console(self.init, lst, self.exec_dir / "console.sock")
                if cfg.get("console_size"):
                    h, w = cfg["console_size"]
                    if h and w:
                        set_winsize(self.init.master or -1, h, w)
        finally:
            for fd in to_close:
                os.close(fd)
        self.init.pid = int(self.container.pid)
        self.by_pid[self.init.pid] = self.init
        self._watch_proc(self.init)
        return self.init.pid

    # -- main loop -------------------------------------------------------------------------
    def serve(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, ("listen", None))
        self.sel.register(self.sig_r, selectors.EVENT_READ, ("sig", None))
        signal.set_wakeup_fd(self.sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the daemon stopping must not stop us
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        drain_deadline = 0.0
        while True:
            if self.init.exit_code is not None:
                if not self.init.outputs or time.monotonic() > drain_deadline:
                    break
                timeout = max(0.0, drain_deadline - time.monotonic())
            else:
                timeout = 1.0
            for key, mask in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "listen":
                    self._accept(listener)
                elif kind == "sig":
                    try:
                        while os.read(self.sig_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif kind == "out":
                    if mask & selectors.EVENT_WRITE:
                        self._flush_stdin(obj)
                    if mask & selectors.EVENT_READ:
                        self._read_output(obj, key.fd)
                elif kind == "in":
                    self._flush_stdin(obj)
                elif kind == "client":
                    if mask & selectors.EVENT_READ:
                        self._client_read(obj)
                    if mask & selectors.EVENT_WRITE and obj.sock.fileno() >= 0:
                        self._client_write(obj)
            self._reap()
            if self.init.exit_code is not None and not drain_deadline:
                drain_deadline = time.monotonic() + 2.0
            if not self.started and time.monotonic() - self.created_at > START_TIMEOUT:
                self._kill_init()
        self._finish(listener)

    def _kill_init(self) -> None:
        try:
            os.kill(self.init.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code
            proc = self.by_pid.pop(pid, None)
            if proc is not None:
                proc.exit_code = code
                proc.exited_at = time.monotonic()
                if proc is not self.init:
                    self._exec_exited(proc)

    # -- output ----------------------------------------------------------------------------
    def _read_output(self, proc: Proc, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's other side is gone
                raise
            data = b""
        stream = proc.outputs.get(fd, "stdout")
        if not data:
            self.sel.unregister(fd)
            del proc.outputs[fd]
            if fd != proc.master:
                os.close(fd)
            if not proc.outputs and proc is not self.init:
                self._exec_exited(proc)
            return
        if proc is self.init and self.logger is not None:
            try:
                self.logger.write(stream, data)
            except OSError as e:  # a full disk loses log lines, never the container
                if not self.log_error:
                    print(f"log write failed: {e}", file=sys.stderr, flush=True)
                self.log_error = True
        payload = data if proc.tty else frame(1 if stream == "stdout" else 2, data)
        for c in list(proc.clients):
            if (stream == "stdout" and c.stdout) or (stream == "stderr" and c.stderr):
                self._send(c, payload)

    def _send(self, c: Client, data: bytes) -> None:
        if c.sock.fileno() < 0:
            return
        c.out += data
        if len(c.out) > MAX_CLIENT_BUFFER:
            self._drop(c)
            return
        self._client_write(c)

    def _update_events(self, c: Client) -> None:
        if c.sock.fileno() < 0:
            return
        ev = 0
        if not c.read_closed and not c.read_paused:
            ev |= selectors.EVENT_READ
        if c.out:
            ev |= selectors.EVENT_WRITE
        try:
            if ev:
                self.sel.modify(c.sock, ev, ("client", c))
            else:
                self.sel.unregister(c.sock)
        except KeyError:
            if ev:
                self.sel.register(c.sock, ev, ("client", c))

    def _client_write(self, c: Client) -> None:
        while c.out:
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                break
            except OSError:
                self._drop(c)
                return
            del c.out[:n]
        if not c.out and c.closing:
            self._drop(c)
            return
        self._update_events(c)

    def _drop(self, c: Client) -> None:
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        for p in [self.init, *self.execs.values()]:
            if c in p.clients:
                p.clients.remove(c)
        if c in self.waiters:
            self.waiters.remove(c)
        c.sock.close()

    # -- clients ---------------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            c = Client(sock)
            self.sel.register(sock, selectors.EVENT_READ, ("client", c))

    def _client_read(self, c: Client) -> None:
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not c.kind:
            if not data:
                self._drop(c)
                return
            c.inbuf += data
            if b"\n" not in c.inbuf:
                if len(c.inbuf) > 1 << 20:
                    self._drop(c)
                return
            line, rest = c.inbuf.split(b"\n", 1)
            c.inbuf = b""
            try:
                req = json.loads(line)
                self._request(c, req)
            except Exception as e:  # noqa: BLE001 - answer, never die on one bad request
                traceback.print_exc()
                self._reply(c, {"error": str(e)}, close=True)
                return
            if rest:
                self._stdin(c, rest)
            return
        if not data:
            c.read_closed = True
            self._stdin_eof(c)
            if c.kind in ("wait", "done"):
                self._drop(c)
            else:
                self._update_events(c)
            return
        self._stdin(c, data)

    def _stdin(self, c: Client, data: bytes) -> None:
        p = c.proc
        if not c.stdin or p is None or p.stdin_w is None or p.exit_code is not None:
            return
        p.stdin_buf += data
        self._flush_stdin(p)
        if len(p.stdin_buf) > MAX_STDIN_BUFFER:  # stop reading the client until it drains
            c.read_paused = True
            self._update_events(c)

    def _stdin_watch(self, p: Proc, want_write: bool) -> None:
        """Register (or not) the process's stdin for writability; a tty master is also its
        output, so its one registration is modified instead."""
        fd = p.stdin_w
        if fd is None:
            return
        if fd in p.outputs:
            ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.modify(fd, ev, ("out", p))
            return
        try:
            if want_write:
                self.sel.register(fd, selectors.EVENT_WRITE, ("in", p))
            else:
                self.sel.unregister(fd)
        except KeyError:
            pass
        except ValueError:
            pass

    def _flush_stdin(self, p: Proc) -> None:
        fd = p.stdin_w
        if fd is None:
            p.stdin_buf.clear()
            return
        while p.stdin_buf:
            try:
                n = os.write(fd, p.stdin_buf)
            except BlockingIOError:
                break
            except OSError:  # the process closed its stdin: drop what it will never read
                p.stdin_buf.clear()
                break
            del p.stdin_buf[:n]
        registered = False
        try:
            key = self.sel.get_key(fd)
            registered = bool(key.events & selectors.EVENT_WRITE)
        except (KeyError, ValueError):
            pass
        if p.stdin_buf and not registered:
            self._stdin_watch(p, True)
        elif not p.stdin_buf and registered:
            self._stdin_watch(p, False)
        if len(p.stdin_buf) <= MAX_STDIN_BUFFER // 2:
            for c in p.clients:
                if c.read_paused:
                    c.read_paused = False
                    self._update_events(c)
        if not p.stdin_buf and p.stdin_close_pending:
            self._close_stdin(p)

    def _close_stdin(self, p: Proc) -> None:
        fd = p.stdin_w
        p.stdin_close_pending = False
        if fd is None or fd in p.outputs:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        p.stdin_w = None

    def _stdin_eof(self, c: Client) -> None:
        p = c.proc
        if not c.stdin or p is None or p.stdin_w is None:
            return
        if p.tty:
            return  # a tty has no EOF of its own; the user types ^D
        if p.stdin_once or p is not self.init:
            if p.stdin_buf:
                p.stdin_close_pending = True  # after what is still buffered
            else:
                self._close_stdin(p)

    def _reply(self, c: Client, obj: dict, close: bool = False) -> None:
        self._send(c, json.dumps(obj).encode() + b"\n")
        if close:
            c.closing = True
            c.kind = "done"
            if not c.out:
                self._drop(c)

    def _request(self, c: Client, req: dict) -> None:
        op = req.get("op")
        if op == "ping":
            self._reply(c, {"pid": self.init.pid, "started": self.started,
                            "started_at": self.started_at, "monitor_pid": os.getpid()},
                        close=True)
        elif op == "start":
            if not self.started:
                self.started_at = iso_from_ns(time.time_ns())
                self.container.start()
                self.started = True
            self._reply(c, {"pid": self.init.pid, "started_at": self.started_at}, close=True)
        elif op == "attach":
            c.kind = "attach"
            c.proc = self.init
            c.stdin, c.stdout, c.stderr = (bool(req.get(k)) for k in ("stdin", "stdout", "stderr"))
            if self.init.exit_code is not None and not self.init.outputs:
                self._reply(c, {"ok": True, "exited": True}, close=True)
                return
            self.init.clients.append(c)
            self._reply(c, {"ok": True, "tty": self.init.tty})
        elif op == "resize":
            p = self.init if not req.get("exec") else self.execs.get(req["exec"])
            if p is None or p.master is None:
                self._reply(c, {"error": "no tty"}, close=True)
                return
            set_winsize(p.master, int(req["h"]), int(req["w"]))
            self._reply(c, {"ok": True}, close=True)
        elif op == "wait":
            c.kind = "wait"
            self.waiters.append(c)
            self._reply(c, {"ok": True})
        elif op == "exec":
            self._exec(c, req)
        elif op == "signal":
            os.kill(self.init.pid, int(req["signal"]))
            self._reply(c, {"ok": True}, close=True)
        else:
            self._reply(c, {"error": f"unknown op {op!r}"}, close=True)

    # -- exec ------------------------------------------------------------------------------
    def _exec(self, c: Client, req: dict) -> None:
        eid = req["exec_id"]
        process = req["process"]
        proc = Proc(eid, bool(process.get("terminal")))
        console_path = self.exec_dir / f"exec-{eid[:12]}.sock"
        want_stdin = bool(req.get("stdin"))
        stdio, console, to_close, lst = self._stdio(proc, want_stdin, console_path)
        size = req.get("console_size")
        if proc.tty and size and size[0] and size[1]:
            # An exec'd process runs at once: the pty must have its size before the exec
            # (OCI process.consoleSize, set by libcontainer), not after (a race `stty` loses).
            process = {**process, "consoleSize": {"height": int(size[0]), "width": int(size[1])}}
        try:
            pid = self.container.exec(
                process, stdio=stdio, console_socket=console
            )
            if lst is not None:
                self._take_console(proc, lst, console_path)
        except Exception:
            if lst is not None:
                lst.close()
                (proc.console_path or console_path).unlink(missing_ok=True)
            for fd in list(proc.outputs) + ([proc.stdin_w] if proc.stdin_w is not None else []):
                try:
                    os.close(fd)
                except OSError:
                    pass
            raise
        finally:
            for fd in to_close:
                os.close(fd)
        proc.pid = int(pid)
        self.execs[eid] = proc
        self.by_pid[proc.pid] = proc
        self._watch_proc(proc)
        if req.get("detach"):
            self._reply(c, {"pid": proc.pid}, close=True)
        else:
            c.kind = "exec"
            c.proc = proc
            c.stdin = want_stdin
            c.stdout = bool(req.get("stdout", True))
            c.stderr = bool(req.get("stderr", True))
            proc.clients.append(c)
            self._reply(c, {"pid": proc.pid})
        # the process may already be gone (reaped before we registered its pid)
        self._reap()

    def _exec_exited(self, proc: Proc) -> None:
        """Both the exit status and the end of output are needed before the record is final."""
        if proc.exit_code is None or proc.outputs:
            return
        if proc.name not in self.execs:
            return
        atomic_write(self.exec_dir / "execs" / f"{proc.name}.json",
                     {"ExitCode": proc.exit_code, "Pid": proc.pid})
        if proc.stdin_w is not None and proc.stdin_w != proc.master:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(proc.stdin_w)
            with contextlib.suppress(OSError):
                os.close(proc.stdin_w)
        proc.stdin_w = None
        proc.stdin_buf.clear()
        if proc.master is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(proc.master)
            os.close(proc.master)
            proc.master = None
        for cl in list(proc.clients):
            cl.closing = True
            cl.kind = "done"
            if not cl.out:
                self._drop(cl)
        del self.execs[proc.name]

    # -- exit ------------------------------------------------------------------------------
    def _finish(self, listener: socket.socket) -> None:
        if self.logger is not None:
            with contextlib.suppress(OSError):
                self.logger.close()
        oom = False
        if self.container is not None:
            try:
                oom = bool(self.container.oom_killed())
            except Exception:  # noqa: BLE001
                traceback.print_exc()
        code = self.init.exit_code if self.init.exit_code is not None else 255
        if oom and code == 0:
            oom = False
        record = {"ExitCode": code, "OOMKilled": oom, "FinishedAt": iso_from_ns(time.time_ns()),
                  "Started": self.started}
        self.exit_record = record
        try:
            if self.container is not None:
                try:
                    self.container.destroy(force=True)
                except TypeError:
                    self.container.destroy()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        atomic_write(Path(self.cfg["exit_file"]), record)
        listener.close()
        Path(self.cfg["sock"]).unlink(missing_ok=True)
        # tell waiters, flush what attachers still have buffered (bounded), then go
        for w in list(self.waiters):
            self._send(w, json.dumps({"exit": record}).encode() + b"\n")
            w.closing = True
        for proc in [self.init, *self.execs.values()]:
            for cl in list(proc.clients):
                cl.closing = True
                if not cl.out:
                    self._drop(cl)
        deadline = time.monotonic() + 5.0
        pending = [c for c in self.waiters + self.init.clients if c.sock.fileno() >= 0]
        for c in pending:
            c.sock.setblocking(True)
            c.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                c.sock.sendall(bytes(c.out))
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            c.sock.close()


def run(cfg: dict, ready_fd: int) -> int:
    """The monitor proper, in a process that is already detached from the daemon."""
    t_begin = time.time()
    exec_dir = Path(cfg["exec_dir"])
    devnull = os.open(os.devnull, os.O_RDWR)
    logfd = os.open(exec_dir / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    os.close(devnull)
    os.close(logfd)
    _set_subreaper()
    _set_name(f"skiff-mon-{cfg['id'][:6]}")
    ready = os.fdopen(ready_fd, "w")
    try:
        mon = Monitor(cfg)
        pid = mon.create()
        sock_path = Path(cfg["sock"])
        sock_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bind_unix(listener, sock_path)
        listener.listen(64)
    except BaseException as e:  # noqa: BLE001 - report every failure to the daemon
        traceback.print_exc()
        try:
            ready.write(json.dumps({"error": str(e) or type(e).__name__,
                                    "type": type(e).__name__}) + "\n")
            ready.close()
        except OSError:
            pass
        return 1
    ready.write(json.dumps({"pid": pid, "monitor_pid": os.getpid(), "t_begin": t_begin,
                            "t_created": time.time()}) + "\n")
    ready.close()
    try:
        mon.serve(listener)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        mon._kill_init()
        if mon.exit_record is None:
            try:
                os.waitpid(mon.init.pid, 0)
            except ChildProcessError:
                pass
            mon._finish(listener)
        return 1
    return 0


def _warm_up() -> None:
    """Import (and compile) in the zygote what every monitor needs, once for all of them."""
    import engine.drivers.exec.native  # noqa: F401

    try:
        from engine.libcontainer import capabilities, container, process, seccomp, spec  # noqa: F401
        from engine.libcontainer.cgroups import new_manager  # noqa: F401

        from . import spec as cspec

        seccomp.docker_default_bpf(capabilities.to_mask(list(cspec.DOCKER_DEFAULT_CAPS)))
    except Exception:  # noqa: BLE001 - a cold monitor still works
        traceback.print_exc()


def _recv_with_fds(sock: socket.socket, bufsize: int = 65536) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(bufsize, socket.CMSG_SPACE(fds.itemsize * 4))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


def _spare_main(chan: socket.socket) -> int:
    """A monitor forked ahead of time: detached already, it waits for its container's config
    (and the daemon's ready pipe) from the zygote; EOF means the zygote is gone."""
    _set_name("skiff-mon-spare")
    while True:
        try:
            msg, fds = _recv_with_fds(chan)
        except InterruptedError:
            continue
        except OSError:
            return 0
        if not msg:
            for fd in fds:
                os.close(fd)
            return 0
        chan.close()
        try:
            cfg = json.loads(msg)
        except ValueError:
            return 1
        for extra in fds[1:]:
            os.close(extra)
        return run(cfg, fds[0])


def _fork_detached(target: Any) -> int:
    """Fork a process that is not the zygote's child (setsid + a second fork, so init adopts
    it and the zygote never has to reap it); target() runs there. Returns the first child's
    exit status after reaping it."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            code = target()
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def zygote(sock_fd: int) -> int:
    """Pre-imported template process: hands each request to a monitor forked ahead of time (a
    "spare": no interpreter start-up and no fork on the container's critical path), then forks
    the next spare. Requests are {"cfg": path} with the ready pipe's fd attached."""
    sock = socket.socket(fileno=sock_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_name("skiff-zygote")
    _warm_up()
    # what the imports made lives as long as every monitor: out of the collector's sight, so
    # a monitor's collections neither scan it nor copy its pages (copy-on-write) on the way
    gc.collect()
    gc.freeze()
    spare: socket.socket | None = None

    def new_spare() -> socket.socket | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

        def body() -> int:
            sock.close()
            ours.close()
            return _spare_main(theirs)

        try:
            _fork_detached(body)
        except OSError:
            traceback.print_exc()
            ours.close()
            return None
        finally:
            theirs.close()
        return ours

    sock.sendall(b"ready\n")
    spare = new_spare()
    spare_due = 0.0  # when to fork the next spare (not while the last one creates its container)
    while True:
        if spare is None and spare_due:
            r, _, _ = select.select([sock], [], [], max(0.0, spare_due - time.monotonic()))
            if not r:
                spare, spare_due = new_spare(), 0.0
                continue
        try:
            msg, fds = _recv_with_fds(sock)
        except InterruptedError:
            continue
        if not msg:
            if spare is not None:
                spare.close()  # the spare sees EOF and exits
            return 0  # the daemon went away; monitors live on
        try:
            req = json.loads(msg)
            with open(req["cfg"]) as f:
                cfg = json.load(f)
        except (ValueError, OSError, KeyError) as e:
            for fd in fds:
                os.close(fd)
            sock.sendall(json.dumps({"error": str(e)}).encode() + b"\n")
            continue
        ready_fd = fds[0]
        handed = False
        if spare is not None:
            try:
                spare.sendmsg([json.dumps(cfg).encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [ready_fd]).tobytes())])
                handed = True
            except OSError:  # the spare died: fork one the old way
                traceback.print_exc()
            spare.close()
            spare = None
        if not handed:
            def body(cfg: dict = cfg, ready_fd: int = ready_fd) -> int:
                sock.close()
                return run(cfg, ready_fd)

            _fork_detached(body)
        for fd in fds:
            os.close(fd)
        sock.sendall(b"ok\n")
        # the next spare is forked a moment later: a fork now would compete for the CPU with
        # the monitor that is creating the container (a request meanwhile forks directly)
        spare_due = time.monotonic() + SPARE_DELAY


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--zygote":
        return zygote(int(argv[1]))
    cfg_path, ready_fd = argv[0], int(argv[1])
    with open(cfg_path) as f:
        cfg = json.load(f)
    if os.fork() != 0:  # the daemon's child exits now; the monitor is adopted by init
        os._exit(0)
    return run(cfg, ready_fd)


if __name__ == "__main__":
    sys.exit(main())
