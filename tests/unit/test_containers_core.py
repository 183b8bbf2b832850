"""State machine, restart backoff, json-file logs and rotation, the store's name uniqueness."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from engine.containers import logs as L
from engine.containers.restart import RestartManager
from engine.containers.state import (
    CREATED,
    DEAD,
    EXITED,
    PAUSED,
    REMOVING,
    RESTARTING,
    RUNNING,
    State,
    human_duration,
    iso_from_ns,
    parse_iso,
)
from engine.containers.store import Store
from engine.errors import Conflict, InvalidParameter

# -- state machine -----------------------------------------------------------------------------


def test_lifecycle_transitions() -> None:
    s = State()
    assert s.status == CREATED
    s.set_running(10, 11)
    assert s.to_docker()["Running"] and s.to_docker()["Pid"] == 10
    s.transition(PAUSED)
    assert s.to_docker()["Paused"] and s.to_docker()["Running"]
    s.transition(RUNNING)
    s.set_exited(137, oom=True)
    d = s.to_docker()
    assert d["Status"] == EXITED and d["ExitCode"] == 137 and d["OOMKilled"] and d["Pid"] == 0
    s.transition(RESTARTING)
    assert s.to_docker()["Restarting"]
    s.transition(RUNNING)
    s.transition(REMOVING)
    s.transition(DEAD)
    assert s.to_docker()["Dead"]


@pytest.mark.parametrize(("src", "dst"), [
    (CREATED, PAUSED), (EXITED, PAUSED), (PAUSED, RESTARTING), (DEAD, RUNNING),
    (REMOVING, RUNNING),
])
def test_forbidden_transitions(src: str, dst: str) -> None:
    s = State({"Status": src})
    with pytest.raises(Conflict):
        s.transition(dst)


def test_state_roundtrip_through_db_shape() -> None:
    s = State()
    s.set_running(5, 6)
    s.restart_count = 2
    s.manually_stopped = True
    t = State(s.to_db())
    assert (t.status, t.pid, t.monitor_pid, t.restart_count, t.manually_stopped) == (
        RUNNING, 5, 6, 2, True)


def test_human_status() -> None:
    now = time.time()
    s = State({"Status": RUNNING, "StartedAt": iso_from_ns(int((now - 5) * 1e9))})
    assert s.human(now) == "Up 5 seconds"
    s = State({"Status": EXITED, "ExitCode": 3, "StartedAt": iso_from_ns(int((now - 200) * 1e9)),
               "FinishedAt": iso_from_ns(int((now - 120) * 1e9))})
    assert s.human(now) == "Exited (3) 2 minutes ago"
    assert State().human(now) == "Created"
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(3600) == "About an hour"


def test_iso_roundtrip() -> None:
    ns = 1_700_000_000_123_456_789
    s = iso_from_ns(ns)
    assert s == "2023-11-14T22:13:20.123456789Z"
    assert abs(parse_iso(s) - ns / 1e9) < 1e-6


# -- restart policy ----------------------------------------------------------------------------


def test_no_policy_never_restarts() -> None:
    assert RestartManager("no").should_restart(1, False, 1) == (False, 0.0)


def test_backoff_doubles_and_caps() -> None:
    rm = RestartManager("always")
    delays = [rm.should_restart(0, False, 0.1)[1] for _ in range(12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(delays) == 60.0 and delays[-1] == 60.0
    assert rm.restart_count == 12


def test_backoff_resets_after_long_run() -> None:
    rm = RestartManager("always")
    for _ in range(5):
        rm.should_restart(0, False, 0.1)
    assert rm.should_restart(0, False, 11.0) == (True, 0.1)


def test_on_failure_counts() -> None:
    rm = RestartManager("on-failure", max_retries=2)
    assert rm.should_restart(0, False, 1)[0] is False
    assert rm.should_restart(1, False, 1)[0] is True
    assert rm.should_restart(1, False, 1)[0] is True
    assert rm.should_restart(1, False, 1)[0] is False
    assert RestartManager("on-failure").should_restart(1, False, 1)[0] is True


def test_manual_stop_wins() -> None:
    for name in ("always", "unless-stopped", "on-failure"):
        assert RestartManager(name).should_restart(1, True, 1)[0] is False


def test_daemon_start_restarts() -> None:
    assert RestartManager("always").restart_on_daemon_start(False, True)
    assert not RestartManager("unless-stopped").restart_on_daemon_start(True, True)
    assert not RestartManager("on-failure").restart_on_daemon_start(False, True)


# -- logs --------------------------------------------------------------------------------------


def test_json_file_format(tmp_path: Path) -> None:
    p = tmp_path / "c-json.log"
    w = L.JsonFileWriter(p)
    w.write("stdout", b"hello\nwor")
    w.write("stdout", b"ld\n")
    w.write("stderr", b"oops")
    w.close()
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert [(x["log"], x["stream"]) for x in lines] == [
        ("hello\n", "stdout"), ("world\n", "stdout"), ("oops", "stderr")]
    assert all(x["time"].endswith("Z") and "T" in x["time"] for x in lines)


def test_long_lines_split(tmp_path: Path) -> None:
    p = tmp_path / "c-json.log"
    w = L.JsonFileWriter(p)
    w.write("stdout", b"x" * (L.MAX_PARTIAL * 2 + 5) + b"\n")
    w.close()
    logs = [json.loads(x)["log"] for x in p.read_text().splitlines()]
    assert [len(x) for x in logs] == [L.MAX_PARTIAL, L.MAX_PARTIAL, 6]


def test_rotation(tmp_path: Path) -> None:
    p = tmp_path / "c-json.log"
    w = L.JsonFileWriter(p, max_size=1000, max_file=3)
    for i in range(100):
        w.write("stdout", f"line {i:03d}\n".encode())
    w.close()
    files = L.log_files(p)
    assert [f.name for f in files] == ["c-json.log.2", "c-json.log.1", "c-json.log"]
    assert all(f.stat().st_size <= 1000 for f in files)
    out = b"".join(L.read_logs(p, tty=True))
    lines = out.decode().splitlines()
    assert lines[-1] == "line 099"
    nums = [int(x.split()[1]) for x in lines]
    assert nums == sorted(nums) and len(nums) < 100  # the oldest went away


def test_rotation_single_file_truncates(tmp_path: Path) -> None:
    p = tmp_path / "c-json.log"
    w = L.JsonFileWriter(p, max_size=500, max_file=1)
    for i in range(50):
        w.write("stdout", f"line {i}\n".encode())
    w.close()
    assert L.log_files(p) == [p] and p.stat().st_size <= 500


def test_read_logs_filters_and_framing(tmp_path: Path) -> None:
    p = tmp_path / "c-json.log"
    w = L.JsonFileWriter(p)
    w.write("stdout", b"a\n")
    w.write("stderr", b"b\n")
    w.write("stdout", b"c\n")
    w.close()
    framed = b"".join(L.read_logs(p))
    assert framed == (L.frame(1, b"a\n") + L.frame(2, b"b\n") + L.frame(1, b"c\n"))
    assert b"".join(L.read_logs(p, stderr=False, tty=True)) == b"a\nc\n"
    assert b"".join(L.read_logs(p, tail=1, tty=True)) == b"c\n"
    assert b"".join(L.read_logs(p, tail=0, tty=True)) == b""
    ts = b"".join(L.read_logs(p, tail=1, tty=True, timestamps=True))
    assert ts.endswith(b"Z c\n")
    future = time.time() + 100
    assert b"".join(L.read_logs(p, since=future, tty=True)) == b""
    assert b"".join(L.read_logs(p, until=1.0, tty=True)) == b""


def test_follow_sees_new_lines_and_stops(tmp_path: Path) -> None:
    p = tmp_path / "c-json.log"
    w = L.JsonFileWriter(p, max_size=300, max_file=2)
    w.write("stdout", b"first\n")
    state = {"running": True, "n": 0}

    def running() -> bool:
        state["n"] += 1
        if state["n"] == 3:
            for i in range(20):  # enough to rotate under the follower
                w.write("stdout", f"more {i}\n".encode())
        if state["n"] > 6:
            state["running"] = False
        return state["running"]

    out = b"".join(L.read_logs(p, follow=True, tty=True, running=running, poll=0.01))
    text = out.decode()
    assert text.startswith("first\n") and "more 19\n" in text


def test_log_config_validation() -> None:
    assert L.parse_log_config(None) == ("json-file", -1, 1)
    assert L.parse_log_config({"Type": "json-file", "Config": {"max-size": "10m",
                                                                "max-file": "3"}}) == (
        "json-file", 10 * 1024 * 1024, 3)
    assert L.parse_log_config({"Type": "json-file", "Config": {"max-size": "1k"}})[1] == 1024
    with pytest.raises(InvalidParameter, match="unknown log opt 'bogus'"):
        L.parse_log_config({"Type": "json-file", "Config": {"bogus": "1"}})
    with pytest.raises(InvalidParameter, match="no log driver named 'syslog2'"):
        L.parse_log_config({"Type": "syslog2"})
    with pytest.raises(InvalidParameter, match="max-file cannot be less than 1"):
        L.parse_log_config({"Config": {"max-size": "1m", "max-file": "0"}})
    with pytest.raises(InvalidParameter, match="invalid size"):
        L.parse_log_config({"Config": {"max-size": "lots"}})


def test_frame_header() -> None:
    assert L.frame(2, b"xyz") == b"\x02\x00\x00\x00\x00\x00\x00\x03xyz"


# -- store -------------------------------------------------------------------------------------


def test_store_unique_names(tmp_path: Path) -> None:
    st = Store(tmp_path / "c.db")
    st.insert("a" * 64, "/web", "t", {"Id": "a"})
    with pytest.raises(sqlite3.IntegrityError):
        st.insert("b" * 64, "/web", "t", {"Id": "b"})
    assert st.id_by_name("/web") == "a" * 64
    st.update("a" * 64, {"Id": "a", "x": 1}, name="/web2")
    assert st.id_by_name("/web") is None and st.all() == [{"Id": "a", "x": 1}]
    st.delete("a" * 64)
    assert st.all() == []
    journal = st._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
    st.close()


def test_follow_loses_no_line_written_while_the_history_is_read(tmp_path: Path) -> None:
    """docker-py's run() follows the logs from the start of a running container: a line the
    container writes between the history and the follow must still come (a reopen + seek to
    the end dropped it: a middle line of a slow container's output went missing)."""
    path = tmp_path / "c-json.log"
    w = L.JsonFileWriter(path)
    w.write("stdout", b"a\n")
    alive = [True]
    g = L.read_logs(path, follow=True, tty=True, running=lambda: alive[0], poll=0.01)
    assert next(g) == b"a\n"  # the history; the generator pauses right after it
    w.write("stdout", b"b\nc")  # written before the follow loop runs, "c" still partial
    w.write("stdout", b"\n")
    w.close()
    alive[0] = False
    assert list(g) == [b"b\n", b"c\n"]
