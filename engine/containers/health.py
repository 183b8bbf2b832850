"""Healthchecks: Config.Healthcheck probes run as execs in the container, docker's state machine.

Where the probes run: in the daemon, one thread per running container with a healthcheck,
through the same exec path as `docker exec` (so the monitor runs them inside the container's
namespaces and cgroup). Why the daemon and not the per-container monitor: the results must
become `health_status` events and `State.Health`, which live in the daemon; the health state is
persisted with the container (SQLite), and restore() re-attaches every live container through
the same hook that starts the prober, so after a daemon restart probing resumes where the
persisted FailingStreak and Log left off. While the daemon is down nothing probes, as with
dockerd's live-restore. The monitor stays a small, dumb process holding stdio.

The state machine is pure (`record`) and unit-tested; the thread only sleeps, probes, records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidParameter

log = logging.getLogger("skiff.health")

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096
MIN_DURATION_NS = 1_000_000  # docker: durations below 1ms are refused (0 means default)


@dataclass(frozen=True)
class HealthConfig:
    argv: tuple[str, ...]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    start_period: float = 0.0
    start_interval: float = 0.0  # probe period while starting within the start period


def validate(hc: Any, where: str = "Healthcheck") -> None:
    """400 for a malformed Config.Healthcheck, naming the field and the value."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidParameter(f"{where}: expected a JSON object, got {hc!r}")
    test = hc.get("Test")
    if test is not None:
        if not isinstance(test, list) or not all(isinstance(x, str) for x in test):
            raise InvalidParameter(f"{where}.Test: expected a list of strings, got {test!r}")
        if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise InvalidParameter(f"{where}.Test: the first item must be NONE, CMD or "
                                   f"CMD-SHELL, got {test[0]!r}")
        if test and test[0] in ("CMD", "CMD-SHELL") and len(test) < 2:
            raise InvalidParameter(f"{where}.Test: {test[0]} needs a command")
    for k in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = hc.get(k)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool):
            raise InvalidParameter(f"{where}.{k}: expected nanoseconds (integer), got {v!r}")
        if v != 0 and v < MIN_DURATION_NS:
            raise InvalidParameter(f"{where}.{k} in Healthcheck cannot be less than 1ms "
                                   f"(got {v}ns)")
    r = hc.get("Retries")
    if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r < 0):
        raise InvalidParameter(f"{where}.Retries can't be negative (got {r!r})")


def config_of(container_config: dict) -> HealthConfig | None:
    """The effective probe of a container's (merged) Config; None without one or with NONE."""
    hc = container_config.get("Healthcheck") or {}
    test = list(hc.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        argv = test[1:]
    elif test[0] == "CMD-SHELL":
        shell = list(container_config.get("Shell") or ["/bin/sh", "-c"])
        argv = [*shell, " ".join(test[1:])]
    else:
        return None

    def sec(k: str, default: float) -> float:
        v = hc.get(k) or 0
        return v / 1e9 if v > 0 else default

    return HealthConfig(tuple(argv), sec("Interval", DEFAULT_INTERVAL),
                        sec("Timeout", DEFAULT_TIMEOUT),
                        int(hc.get("Retries") or 0) or DEFAULT_RETRIES,
                        sec("StartPeriod", 0.0), sec("StartInterval", 0.0))


_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def parse_duration(s: str) -> int:
    """Go's time.ParseDuration subset ('1m30s', '500ms', '0') -> nanoseconds."""
    s = s.strip()
    if s == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DUR.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise InvalidParameter(f"invalid duration {s!r}")
    return int(total)


def parse_healthcheck_instruction(arg: str) -> dict:
    """A Dockerfile HEALTHCHECK argument (`--interval=5s CMD ...`, `NONE`) -> Healthcheck."""
    words = arg.split()  # only the leading --flag=value words are read; they have no spaces
    hc: dict[str, Any] = {}
    i = 0
    while i < len(words) and words[i].startswith("--"):
        k, _, v = words[i][2:].partition("=")
        key = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
               "start-interval": "StartInterval", "retries": "Retries"}.get(k)
        if key is None:
            raise InvalidParameter(f"HEALTHCHECK: unknown flag --{k}")
        if key == "Retries" and not v.isdigit():
            raise InvalidParameter(f"HEALTHCHECK: --retries needs a number, got {v!r}")
        hc[key] = int(v) if key == "Retries" else parse_duration(v)
        i += 1
    rest = arg.split(None, i)[-1] if i else arg.strip()
    if rest.upper() == "NONE":
        return {"Test": ["NONE"]}
    kind, _, cmd = rest.partition(" ")
    if kind.upper() != "CMD" or not cmd.strip():
        raise InvalidParameter(f"HEALTHCHECK: expected NONE or CMD <command>, got {arg!r}")
    cmd = cmd.strip()
    if cmd.startswith("["):
        import json

        try:
            hc["Test"] = ["CMD", *json.loads(cmd)]
        except ValueError:
            raise InvalidParameter(f"HEALTHCHECK: bad JSON command {cmd!r}") from None
    else:
        hc["Test"] = ["CMD-SHELL", cmd]
    validate(hc, "HEALTHCHECK")
    return hc


# ---- the state machine ------------------------------------------------------------------------

def initial(previous: dict | None = None) -> dict:
    """The state of a new run: starting, no failures; docker keeps the previous run's Log."""
    return {"Status": STARTING, "FailingStreak": 0,
            "Log": list((previous or {}).get("Log") or [])}


def stopped(health: dict | None) -> None:
    """The container stopped, so probing stopped: docker then shows "unhealthy" (its
    CloseMonitorChannel does so "for compatibility reasons"), without a health_status event.

    Docker does the same on pause; here probing just skips paused periods and the status
    stays what the last probe said (a documented difference)."""
    if isinstance(health, dict) and health.get("Status") in (STARTING, HEALTHY):
        health["Status"] = UNHEALTHY


def record(health: dict, cfg: HealthConfig, *, exit_code: int, output: str, start: str,
           end: str, since_start: float) -> bool:
    """Add one probe result to docker's State.Health; True when Status changed.

    Exit 0 is healthy and resets the streak; anything else is a failure that counts unless
    the container is still starting and within its start period; `retries` failures in a
    row make it unhealthy."""
    old = health.get("Status", STARTING)
    logs = list(health.get("Log") or [])
    logs.append({"Start": start, "End": end, "ExitCode": exit_code,
                 "Output": output[:MAX_OUTPUT]})
    health["Log"] = logs[-MAX_LOG:]
    if exit_code == 0:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
    elif not (old == STARTING and since_start < cfg.start_period):
        health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
        if health["FailingStreak"] >= cfg.retries:
            health["Status"] = UNHEALTHY
    return health["Status"] != old


def public(health: dict | None) -> dict | None:
    """State.Health as docker shows it (private bookkeeping keys removed)."""
    if health is None:
        return None
    return {k: v for k, v in health.items() if not k.startswith("_")}


def ps_suffix(health: dict | None) -> str:
    """What `docker ps` appends to "Up 5 seconds"."""
    st = (health or {}).get("Status")
    if st == STARTING:
        return " (health: starting)"
    if st in (HEALTHY, UNHEALTHY):
        return f" ({st})"
    return ""


# ---- the prober -------------------------------------------------------------------------------

def _demux(data: bytes) -> str:
    out = bytearray()
    while len(data) >= 8:
        size = struct.unpack(">I", data[4:8])[0]
        out += data[8:8 + size]
        data = data[8 + size:]
    return out.decode(errors="replace")


def probe(m: Any, c: Any, cfg: HealthConfig) -> tuple[int, str]:
    """Run the probe once as an exec; (exit code, output). -1 on timeout or exec failure."""
    eid = m.exec_create(c.id, {"Cmd": list(cfg.argv), "AttachStdout": True,
                               "AttachStderr": True})
    ours, theirs = socket.socketpair()
    err: list[BaseException] = []

    def run() -> None:
        try:
            m.exec_start(eid, theirs, False, False)
        except BaseException as e:  # noqa: BLE001 - reported as the probe's output
            err.append(e)
        finally:
            with contextlib.suppress(OSError):
                theirs.shutdown(socket.SHUT_RDWR)

    t = threading.Thread(target=run, daemon=True, name=f"health-{c.id[:12]}")
    t.start()
    deadline = time.monotonic() + cfg.timeout
    buf = bytearray()
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ours.settimeout(left)
            try:
                d = ours.recv(65536)
            except TimeoutError:
                timed_out = True
                break
            if not d:
                break
            if len(buf) < 2 * MAX_OUTPUT:
                buf += d
        if timed_out:
            # kill the probe; on a slow machine its exec may not even have a pid yet when the
            # timeout fires: wait for it (bounded) rather than leave it running
            give_up = time.monotonic() + 10
            while t.is_alive() and time.monotonic() < give_up:
                pid = int((m.exec_records.get(eid) or {}).get("Pid") or 0)
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(0.02)
            t.join(5)
            return -1, f"Health check exceeded timeout ({cfg.timeout:g}s)"
        rec = m.exec_records.get(eid) or {}
        t.join(10)
        if err:
            return -1, str(err[0])
        code = rec.get("ExitCode")
        return (int(code) if code is not None else -1), _demux(bytes(buf))
    finally:
        ours.close()
        theirs.close()
        with m._lock:  # a probe is not an exec users see (docker drops them too)
            m.exec_records.pop(eid, None)
            c.execs.discard(eid)


def start(m: Any, c: Any) -> None:
    """Start probing a container that just started (or was re-attached after a restart)."""
    cfg = config_of(c.config)
    if cfg is None:
        return
    with c.lock:
        h = c.health
        if not isinstance(h, dict) or h.get("_StartedAt") != c.state.started_at:
            h = initial(h if isinstance(h, dict) else None)  # a re-attached run keeps all
            h["_StartedAt"] = c.state.started_at
            c.health = h
            m._save(c)
        gen = c.exit_gen
    threading.Thread(target=_loop, args=(m, c, cfg, gen), daemon=True,
                     name=f"health-{c.id[:12]}").start()


def _loop(m: Any, c: Any, cfg: HealthConfig, gen: int) -> None:
    from .state import now_iso, parse_iso

    def alive() -> bool:
        return (not c.removed and not m._closing and c.exit_gen == gen
                and c.state.status in ("running", "paused"))

    while True:
        wait = cfg.interval
        if cfg.start_interval and (c.health or {}).get("Status") == STARTING and \
                time.time() - parse_iso(c.state.started_at) < cfg.start_period:
            wait = cfg.start_interval  # docker 25's --health-start-interval
        time.sleep(wait)
        if not alive():
            return
        if c.state.status == "paused":
            continue
        start_iso = now_iso()
        since = time.time() - parse_iso(c.state.started_at)  # docker: the probe's start
        try:
            code, output = probe(m, c, cfg)
        except Exception as e:  # noqa: BLE001 - e.g. the container stopped meanwhile
            if not alive():
                return
            code, output = -1, str(e)
        end_iso = now_iso()
        with c.lock:
            if not alive():
                return
            changed = record(c.health, cfg, exit_code=code, output=output, start=start_iso,
                             end=end_iso, since_start=since)
            m._save(c)
            status = c.health["Status"]
        if changed:
            m.emit(c, f"health_status: {status}")
