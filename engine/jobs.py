"""The Engine: every daemon operation runs as a Job, and jobs feed Docker-format events.

Why a Job for everything: it gives one place to time operations, to expose what the daemon is
busy with (`GET /jobs`, `skiff jobs`, a Skiff extension) and to turn finished work into the
event stream that `docker events` reads. Handlers call `engine.run(name, fn, ...)`; backends
that emit their own events (the ContainerManager) get `engine.emit` as their callback.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)


@dataclass
class Job:
    """One operation: its name, arguments, status, latest progress, result or error, timing."""

    name: str
    args: dict[str, Any]
    id: int = field(default_factory=lambda: next(_ids))
    status: str = "pending"  # pending -> running -> done | failed
    progress: Any = None
    result: Any = None
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0

    def set_progress(self, value: Any) -> None:
        self.progress = value

    def to_dict(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {
            "ID": self.id,
            "Name": self.name,
            "Args": {k: _plain(v) for k, v in self.args.items()},
            "Status": self.status,
            "Progress": _plain(self.progress),
            "Error": self.error,
            "Started": self.started,
            "Duration": round(end - self.started, 6) if self.started else 0.0,
        }


def _plain(v: Any) -> Any:
    """Args can hold sockets or file objects; only JSON-able values go out over the API."""
    if v is None or isinstance(v, str | int | float | bool):
        return v
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return repr(v)


class Subscription:
    """A bounded queue of events for one `/events` reader; a slow reader drops, never blocks."""

    def __init__(self, match: Callable[[dict], bool], maxlen: int = 4096) -> None:
        self.match = match
        self._q: collections.deque[dict] = collections.deque(maxlen=maxlen)
        self._cv = threading.Condition()
        self.closed = False

    def put(self, ev: dict) -> None:
        if not self.match(ev):
            return
        with self._cv:
            self._q.append(ev)
            self._cv.notify()

    def get(self, timeout: float | None = None) -> dict | None:
        with self._cv:
            if not self._q and not self.closed:
                self._cv.wait(timeout)
            return self._q.popleft() if self._q else None

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()


def match_filters(filters: dict[str, list[str]] | None) -> Callable[[dict], bool]:
    """docker's event filters: type, event/action, container, image, network, volume, label."""
    f = {k: list(v) for k, v in (filters or {}).items() if v}

    def match(ev: dict) -> bool:
        actor = ev.get("Actor", {})
        attrs = actor.get("Attributes", {})
        if "type" in f and ev.get("Type") not in f["type"]:
            return False
        if "event" in f or "action" in f:
            wanted = f.get("event", []) + f.get("action", [])
            action = ev.get("Action", "")
            if action not in wanted and action.split(":")[0] not in wanted:
                return False
        for kind in ("container", "image", "network", "volume"):
            if kind in f:
                if ev.get("Type") != kind:
                    return False
                ids = {actor.get("ID", ""), attrs.get("name", "")}
                if not any(w in ids or (len(w) >= 3 and actor.get("ID", "").startswith(w))
                           for w in f[kind]):
                    return False
        if "label" in f:
            for want in f["label"]:
                k, _, v = want.partition("=")
                if k not in attrs or (v and attrs[k] != v):
                    return False
        return True

    return match


def _malloc_trim() -> Callable[[int], Any] | None:
    """glibc's malloc_trim, or None where there is none (musl, other platforms). Looked up in
    the process's own symbols: ctypes.util.find_library would run ldconfig in a subprocess."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class Trimmer:
    """Hands the C heap's free pages back to the kernel once the daemon has been idle a moment.

    Why: a burst of work (50 containers started at once: a thread, sockets and JSON per
    container) leaves glibc's arenas holding megabytes that Python already freed, so the idle
    daemon's RSS would keep the high-water mark of its busiest minute. malloc_trim(0) after
    `idle` seconds without a job or an event returns them; it never runs during a burst."""

    def __init__(self, idle: float = 1.0, trim: Callable[[int], Any] | None = None) -> None:
        self.idle = idle
        self._trim = trim
        self._lookup = trim is None  # resolved in the trimming thread, on first use
        self._cv = threading.Condition()
        self._last = 0.0
        self._dirty = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.count = 0

    def poke(self) -> None:
        """Something happened: trim after the next quiet `idle` seconds."""
        if self._closed or (self._trim is None and not self._lookup):
            return
        with self._cv:
            self._last = time.monotonic()
            if not self._dirty:
                self._dirty = True
                self._cv.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="malloc-trim",
                                                daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._dirty and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                left = self._last + self.idle - time.monotonic()
                if left > 0:
                    self._cv.wait(left)
                    continue
                self._dirty = False
            if self._lookup:
                self._trim, self._lookup = _malloc_trim(), False
            if self._trim is None:
                return
            try:
                self._trim(0)
                self.count += 1
            except Exception:  # noqa: BLE001 - only an optimisation
                self._trim = None
                return

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class Engine:
    """Runs jobs, keeps the running ones visible, and fans events out to subscribers."""

    def __init__(self, history: int = 1000, trim_after: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, Job] = {}
        self._recent: collections.deque[Job] = collections.deque(maxlen=100)
        self._events: collections.deque[dict] = collections.deque(maxlen=history)
        self._subs: list[Subscription] = []
        self.trimmer = Trimmer(trim_after)

    # jobs -------------------------------------------------------------------------------
    def job(self, name: str, /, **args: Any) -> Job:
        """A new Job, registered as running until it ends (use `run` or `with engine.track(job)`)."""
        return Job(name=name, args=args)

    def run(self, name: str, fn: Callable[..., Any], /, *a: Any, _job_args: dict | None = None,
            **kw: Any) -> Any:
        """Run fn(*a, **kw) as Job `name`; the Job is visible in `jobs()` while it runs."""
        job = self.job(name, **(_job_args if _job_args is not None else kw))
        with self.track(job):
            result = job.result = fn(*a, **kw)
        return result

    def track(self, job: Job) -> _Tracker:
        return _Tracker(self, job)

    def _start(self, job: Job) -> None:
        job.status, job.started = "running", time.time()
        with self._lock:
            self._running[job.id] = job

    def _end(self, job: Job, err: BaseException | None) -> None:
        job.finished = time.time()
        if err is None:
            job.status = "done"
        else:
            job.status, job.error = "failed", str(err) or type(err).__name__
        if not (job.result is None or isinstance(job.result, int | float | bool)
                or (isinstance(job.result, str) and len(job.result) <= 256)):
            job.result = None  # finished jobs are kept for `skiff jobs -a`, not their payloads
        with self._lock:
            self._running.pop(job.id, None)
            self._recent.append(job)
        self.trimmer.poke()

    def jobs(self, all: bool = False) -> list[Job]:
        with self._lock:
            running = list(self._running.values())
            return (list(self._recent) + running) if all else running

    # events -----------------------------------------------------------------------------
    def emit(self, type: str, action: str, actor_id: str, attributes: dict | None = None) -> dict:
        """Record a Docker-format event and hand it to every subscriber."""
        now = time.time_ns()
        attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
        ev: dict[str, Any] = {
            "Type": type,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": attrs},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if type == "container":  # the pre-1.22 fields docker still sends for containers
            ev.update(status=action, id=actor_id, **({"from": attrs["image"]}
                                                      if "image" in attrs else {}))
        with self._lock:
            self._events.append(ev)
            subs = list(self._subs)
        for s in subs:
            s.put(ev)
        self.trimmer.poke()
        return ev

    def subscribe(self, filters: dict | None = None) -> Subscription:
        sub = Subscription(match_filters(filters))
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def events(self, since: float | None = None, until: float | None = None,
               filters: dict | None = None, poll: float = 1.0,
               stop: Callable[[], bool] | None = None,
               idle: bool = False) -> Iterator[dict | None]:
        """Past events from `since`, then live ones until `until` (forever without it).

        With idle=True a None is yielded on every quiet `poll` interval, so that the server can
        notice a reader that went away."""
        match = match_filters(filters)
        sub = self.subscribe(filters)
        try:
            if since is not None:
                with self._lock:
                    past = [e for e in self._events if e["timeNano"] >= since * 1e9]
                for e in past:
                    if until is not None and e["timeNano"] > until * 1e9:
                        return
                    if match(e):
                        yield e
                # drop live duplicates of what we just replayed
                last = past[-1]["timeNano"] if past else 0
            else:
                last = 0
            while True:
                if until is not None and time.time() >= until:
                    return
                if stop is not None and stop():
                    return
                wait = poll if until is None else max(0.0, min(poll, until - time.time()))
                ev = sub.get(wait)
                if ev is None:
                    if sub.closed:
                        return
                    if idle:
                        yield None
                    continue
                if ev["timeNano"] <= last:
                    continue
                if until is not None and ev["timeNano"] > until * 1e9:
                    return
                yield ev
        finally:
            self.unsubscribe(sub)

    def close(self) -> None:
        self.trimmer.close()
        with self._lock:
            subs, self._subs = self._subs, []
        for s in subs:
            s.close()


class _Tracker:
    def __init__(self, engine: Engine, job: Job) -> None:
        self.engine, self.job = engine, job

    def __enter__(self) -> Job:
        self.engine._start(self.job)
        return self.job

    def __exit__(self, et, ev, tb) -> None:
        self.engine._end(self.job, ev)
