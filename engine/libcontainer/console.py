"""The container's pty: opened by its init inside the container's devpts, master fd handed out.

Like runc: with terminal=true the master goes to --console-socket (SCM_RIGHTS, message = the
slave's name); `run` without a console socket proxies the master to its own stdio instead.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E


def open_pty() -> tuple[int, str]:
    """Open a pty on this mount namespace's /dev/ptmx; returns (master fd, slave path)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    return master, f"/dev/pts/{n}"


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def make_controlling(slave_path: str) -> None:
    """In the init (after setsid): the slave becomes stdio and the controlling terminal."""
    slave = os.open(slave_path, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    fcntl.ioctl(0, TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)


def send_fd(sock_fd: int, fd: int, msg: bytes) -> None:
    import socket

    s = socket.socket(fileno=os.dup(sock_fd))
    try:
        s.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
    finally:
        s.close()


def recv_fd(sock_fd: int) -> tuple[bytes, int | None]:
    import socket

    s = socket.socket(fileno=os.dup(sock_fd))
    try:
        msg, anc, _flags, _addr = s.recvmsg(65536, socket.CMSG_SPACE(4))
    finally:
        s.close()
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            return msg, struct.unpack("i", data[:4])[0]
    return msg, None


def send_to_console_socket(path: str, master: int, name: str) -> None:
    """Hand the master to whoever listens on `path` (runc's --console-socket protocol)."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     struct.pack("i", master))])
    finally:
        s.close()


def proxy(master: int, exit_fd: int) -> None:
    """Copy stdin -> master and master -> stdout until `exit_fd` (a pidfd) is readable.

    Puts a tty stdin in raw mode for the duration and follows window-size changes.
    """
    import select
    import signal
    import tty

    old = None
    stdin_tty = os.isatty(0)
    if stdin_tty:
        try:
            old = termios.tcgetattr(0)
            tty.setraw(0)
            rows, cols = get_winsize(0)
            set_winsize(master, rows, cols)
        except termios.error:
            old = None

        def winch(_s: int, _f: object) -> None:
            try:
                rows, cols = get_winsize(0)
                set_winsize(master, rows, cols)
            except OSError:
                pass

        signal.signal(signal.SIGWINCH, winch)
    fds = [master, exit_fd, 0]
    try:
        done = False
        while True:
            try:
                r, _, _ = select.select(fds, [], [], 0.05 if done else None)
            except InterruptedError:
                continue
            if not r and done:
                break
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    fds.remove(master)
                    if done or exit_fd not in fds:
                        break
                else:
                    os.write(1, data)
            if 0 in r:
                try:
                    data = os.read(0, 65536)
                except OSError:
                    data = b""
                if data:
                    os.write(master, data)
                else:
                    fds.remove(0)
            if exit_fd in r:
                fds.remove(exit_fd)
                done = True  # drain what is left in the master, then stop
                if master not in fds:
                    break
    finally:
        if old is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, old)
