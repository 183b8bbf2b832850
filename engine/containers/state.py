"""The container state machine and its docker-shaped views (State{}, "Up 5 seconds")."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from engine.errors import Conflict
from engine.timefmt import human_duration

CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
RESTARTING = "restarting"
EXITED = "exited"
REMOVING = "removing"
DEAD = "dead"
STATUSES = (CREATED, RUNNING, PAUSED, RESTARTING, EXITED, REMOVING, DEAD)

# Which status may follow which: anything else is a bug or a client asking the impossible.
TRANSITIONS: dict[str, frozenset[str]] = {
    CREATED: frozenset({RUNNING, EXITED, REMOVING, DEAD}),
    RUNNING: frozenset({PAUSED, EXITED, RESTARTING, REMOVING, DEAD}),
    PAUSED: frozenset({RUNNING, EXITED, REMOVING, DEAD}),
    RESTARTING: frozenset({RUNNING, EXITED, REMOVING, DEAD}),
    EXITED: frozenset({RUNNING, RESTARTING, REMOVING, DEAD}),
    REMOVING: frozenset({DEAD, EXITED, CREATED}),  # back when a removal fails half-way
    DEAD: frozenset({REMOVING}),
}

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_iso() -> str:
    """RFC 3339 with nanoseconds in UTC, as docker writes timestamps."""
    ns = time.time_ns()
    return iso_from_ns(ns)


def iso_from_ns(ns: int) -> str:
    sec, frac = divmod(ns, 10**9)
    base = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def parse_iso(s: str) -> float:
    """Seconds since the epoch from docker's RFC 3339 (nanosecond) timestamps."""
    if not s or s.startswith("0001-"):
        return 0.0
    s = s.rstrip("Z")
    if "." in s:
        base, frac = s.split(".", 1)
    else:
        base, frac = s, "0"
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return dt.timestamp() + float("0." + (frac or "0"))


class State:
    """docker's container State, mutated only through transition() and friends."""

    def __init__(self, d: dict | None = None) -> None:
        d = d or {}
        self.status: str = d.get("Status", CREATED)
        self.pid: int = d.get("Pid", 0)
        self.exit_code: int = d.get("ExitCode", 0)
        self.error: str = d.get("Error", "")
        self.started_at: str = d.get("StartedAt", ZERO_TIME)
        self.finished_at: str = d.get("FinishedAt", ZERO_TIME)
        self.oom_killed: bool = d.get("OOMKilled", False)
        self.monitor_pid: int = d.get("MonitorPid", 0)
        self.manually_stopped: bool = d.get("ManuallyStopped", False)
        self.restart_count: int = d.get("RestartCount", 0)

    def transition(self, new: str) -> None:
        if new == self.status:
            return
        if new not in TRANSITIONS.get(self.status, frozenset()):
            raise Conflict(f"cannot move container from {self.status} to {new}")
        self.status = new

    def set_running(self, pid: int, monitor_pid: int) -> None:
        self.transition(RUNNING)
        self.pid, self.monitor_pid = pid, monitor_pid
        self.exit_code, self.error, self.oom_killed = 0, "", False
        self.started_at = now_iso()

    def set_exited(self, code: int, *, oom: bool = False, finished_at: str | None = None,
                   error: str = "") -> None:
        self.transition(EXITED)
        self.pid = self.monitor_pid = 0
        self.exit_code, self.oom_killed, self.error = code, oom, error
        self.finished_at = finished_at or now_iso()

    @property
    def running(self) -> bool:
        return self.status in (RUNNING, PAUSED, RESTARTING)

    def to_db(self) -> dict:
        d = self.to_docker()
        d["MonitorPid"] = self.monitor_pid
        d["ManuallyStopped"] = self.manually_stopped
        d["RestartCount"] = self.restart_count
        return d

    def to_docker(self) -> dict:
        return {
            "Status": self.status,
            "Running": self.status in (RUNNING, PAUSED),
            "Paused": self.status == PAUSED,
            "Restarting": self.status == RESTARTING,
            "OOMKilled": self.oom_killed,
            "Dead": self.status == DEAD,
            "Pid": self.pid if self.status in (RUNNING, PAUSED) else 0,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }

    def human(self, now: float | None = None) -> str:
        """The STATUS column of `docker ps`."""
        now = time.time() if now is None else now
        if self.status in (RUNNING, PAUSED):
            s = "Up " + human_duration(now - parse_iso(self.started_at))
            return s + " (Paused)" if self.status == PAUSED else s
        if self.status == RESTARTING:
            return (f"Restarting ({self.exit_code}) "
                    f"{human_duration(now - parse_iso(self.finished_at))} ago")
        if self.status == EXITED:
            if self.started_at == ZERO_TIME:
                return "Created"
            return f"Exited ({self.exit_code}) {human_duration(now - parse_iso(self.finished_at))} ago"
        if self.status == REMOVING:
            return "Removal In Progress"
        if self.status == DEAD:
            return "Dead"
        return "Created"


def unix_addr(path: str | os.PathLike) -> tuple[str, int | None]:
    """A bindable/connectable address for a unix socket path that may exceed sun_path (108):
    long paths go through /proc/self/fd/<dirfd>/<name>. Close the returned fd afterwards."""
    p = os.fspath(path)
    if len(p.encode()) < 100:
        return p, None
    dfd = os.open(os.path.dirname(p) or ".", os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{dfd}/{os.path.basename(p)}", dfd


def _at_unix(op: Callable[[str], None], path: str | os.PathLike) -> None:
    addr, dfd = unix_addr(path)
    try:
        op(addr)
    finally:
        if dfd is not None:
            os.close(dfd)


def bind_unix(sock: socket.socket, path: str | os.PathLike) -> None:
    _at_unix(sock.bind, path)


def connect_unix(sock: socket.socket, path: str | os.PathLike) -> None:
    _at_unix(sock.connect, path)
