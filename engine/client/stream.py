"""Terminal side of attach/exec: raw mode, stdin/stdout pumps, demux, resize, detach keys."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator

DEFAULT_DETACH = b"\x10\x11"  # ctrl-p ctrl-q


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's --detach-keys: 'ctrl-p,ctrl-q', 'a,ctrl-x', ..."""
    if not spec:
        return DEFAULT_DETACH
    out = bytearray()
    for part in spec.split(","):
        part = part.strip().lower()
        if part.startswith("ctrl-") and len(part) == 6:
            c = part[5]
            code = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(c)
            out.append(code if code is not None else (ord(c) - ord("a") + 1))
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise ValueError(f"invalid detach key {part!r}")
    return bytes(out)


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not os.isatty(sys.stdin.fileno()):
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def terminal_size() -> tuple[int, int] | None:
    for fd in (sys.stdout.fileno(), sys.stdin.fileno()):
        try:
            if os.isatty(fd):
                sz = os.get_terminal_size(fd)
                return sz.lines, sz.columns
        except OSError:
            continue
    return None


@contextlib.contextmanager
def on_resize(resize: Callable[[int, int], None], enabled: bool) -> Iterator[None]:
    """Send the terminal size now and on every SIGWINCH."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def push(*_a: object) -> None:
        sz = terminal_size()
        if sz:
            try:
                resize(*sz)
            except Exception:  # noqa: BLE001 - a finished container answers 409
                pass

    old = signal.signal(signal.SIGWINCH, push)
    push()
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, old)


def pump(sock: socket.socket, leftover: bytes, *, tty: bool, stdin: bool,
         detach_keys: bytes = DEFAULT_DETACH) -> bool:
    """Copy stdin -> sock and sock -> stdout/stderr until the stream ends.

    Returns True when the user detached with the detach keys. Without stdin the write side is
    half-closed at once, as the docker CLI does."""
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    detached = threading.Event()

    def reader() -> None:
        buf = leftover
        try:
            while True:
                if tty:
                    if buf:
                        out.write(buf)
                        out.flush()
                        buf = b""
                else:
                    while len(buf) >= 8:
                        st, size = buf[0], struct.unpack(">I", buf[4:8])[0]
                        if len(buf) < 8 + size:
                            break
                        (err if st == 2 else out).write(buf[8:8 + size])
                        (err if st == 2 else out).flush()
                        buf = buf[8 + size:]
                d = sock.recv(65536)
                if not d:
                    return
                buf += d
        except OSError:
            return

    def writer() -> None:
        fd = sys.stdin.fileno()
        pending = b""
        try:
            while True:
                d = os.read(fd, 4096)
                if not d:
                    break
                if tty and detach_keys:
                    data = pending + d
                    if detach_keys in data:
                        before = data.split(detach_keys, 1)[0]
                        if before:
                            sock.sendall(before)
                        detached.set()
                        sock.shutdown(socket.SHUT_RDWR)
                        return
                    # keep a possible prefix of the sequence back until the next read
                    keep = 0
                    for n in range(len(detach_keys) - 1, 0, -1):
                        if data.endswith(detach_keys[:n]):
                            keep = n
                            break
                    pending = data[len(data) - keep:] if keep else b""
                    d = data[: len(data) - keep] if keep else data
                if d:
                    sock.sendall(d)
            if pending:
                sock.sendall(pending)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    if stdin:
        threading.Thread(target=writer, daemon=True).start()
    else:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join()
    with contextlib.suppress(OSError):
        sock.close()
    return detached.is_set()
