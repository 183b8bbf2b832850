"""Engine jobs and events."""

from __future__ import annotations

import threading
import time

import pytest

from engine.jobs import Engine, match_filters


def test_run_records_job_lifecycle():
    e = Engine()
    seen = []

    def op(x):
        seen.append([j.name for j in e.jobs()])
        return x * 2

    assert e.run("double", op, 21) == 42
    assert seen == [["double"]]
    assert e.jobs() == []
    (j,) = e.jobs(all=True)
    assert j.status == "done" and j.result == 42 and j.finished >= j.started > 0
    assert j.to_dict()["Args"] == {}


def test_failed_job_keeps_error_and_reraises():
    e = Engine()
    with pytest.raises(ValueError):
        e.run("bad", lambda: (_ for _ in ()).throw(ValueError("boom")))
    (j,) = e.jobs(all=True)
    assert j.status == "failed" and j.error == "boom"


def test_job_named_arg_and_progress():
    e = Engine()
    job = e.job("image.pull", name="busybox")
    with e.track(job):
        job.set_progress({"status": "Downloading"})
        d = e.jobs()[0].to_dict()
    assert d["Args"] == {"name": "busybox"} and d["Progress"] == {"status": "Downloading"}


def test_events_shape_and_filters():
    e = Engine()
    ev = e.emit("container", "start", "abc123", {"name": "web", "image": "busybox"})
    assert ev["Type"] == "container" and ev["Action"] == "start"
    assert ev["Actor"] == {"ID": "abc123", "Attributes": {"name": "web", "image": "busybox"}}
    assert ev["status"] == "start" and ev["id"] == "abc123" and ev["from"] == "busybox"
    assert ev["time"] == ev["timeNano"] // 10**9
    assert match_filters({"container": ["web"]})(ev)
    assert match_filters({"container": ["abc"]})(ev)
    assert not match_filters({"container": ["other"]})(ev)
    assert match_filters({"event": ["start"], "type": ["container"]})(ev)
    assert not match_filters({"type": ["image"]})(ev)
    assert match_filters({"label": ["image=busybox"]})(ev)
    assert not match_filters({"label": ["image=alpine"]})(ev)
    exec_ev = e.emit("container", "exec_start: sh", "abc123", {})
    assert match_filters({"event": ["exec_start"]})(exec_ev)


def test_events_replay_since_then_live_until():
    e = Engine()
    t0 = time.time()
    e.emit("image", "pull", "a:1")
    threading.Timer(0.2, lambda: e.emit("image", "tag", "a:2")).start()
    got = [ev["Action"] for ev in e.events(since=t0, until=time.time() + 0.6, poll=0.05)]
    assert got == ["pull", "tag"]


def test_events_idle_ticks_and_stop():
    e = Engine()
    flag = {"stop": False}
    out = []
    for ev in e.events(poll=0.01, idle=True, stop=lambda: flag["stop"]):
        out.append(ev)
        if len(out) == 3:
            flag["stop"] = True
    assert out == [None, None, None]


def test_slow_subscriber_drops_instead_of_blocking():
    e = Engine()
    sub = e.subscribe()
    t = time.time()
    for i in range(10000):
        e.emit("image", "tag", f"x:{i}")
    assert time.time() - t < 5
    assert sub.get(0)["Actor"]["ID"] == "x:5904"  # the oldest kept of a 4096-deep queue
    e.unsubscribe(sub)


def test_trimmer_runs_once_after_a_quiet_moment():
    from engine.jobs import Trimmer

    calls = []
    t = Trimmer(idle=0.2, trim=calls.append)
    for _ in range(5):  # a burst: no trim while it lasts
        t.poke()
        time.sleep(0.05)
    assert calls == []
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert calls == [0]
    time.sleep(0.4)
    assert calls == [0]  # nothing new happened: no second trim
    t.poke()
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert calls == [0, 0]
    t.close()


def test_finished_jobs_keep_small_results_only():
    e = Engine()
    big = {"k": "v" * 10_000}
    assert e.run("big", lambda: big) is big  # the caller still gets it
    assert e.run("small", lambda: 7) == 7
    big_job, small_job = e.jobs(all=True)
    assert big_job.result is None and small_job.result == 7
    e.close()
