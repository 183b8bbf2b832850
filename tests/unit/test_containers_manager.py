"""ContainerManager + real monitor processes over the fake (plain process) execdriver.

No root, no namespaces: what is exercised is the engine's own machinery — state, SQLite,
monitor lifecycle, logs, attach with stdin, tty, exec, restart policies, restore, rollback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.containers.manager import ContainerManager
from engine.errors import Conflict, InvalidParameter, NotFound, NotModified

from .test_containers_fakes import FakeGraph


class Events(list):
    def __call__(self, typ: str, action: str, actor: str, attrs: dict) -> None:
        self.append((typ, action, actor, attrs))

    def actions(self, cid: str) -> list[str]:
        return [a for _, a, i, _ in self if i == cid]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[ContainerManager, FakeGraph, Events, Path]]:
    g = FakeGraph(tmp_path / "graph")
    g.add("busybox:latest", {"config": {"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"]}})
    ev = Events()
    m = ContainerManager(tmp_path / "root", tmp_path / "run", g, None, ev,
                         cgroup_parent="skt7", exec_driver="fake")
    yield m, g, ev, tmp_path
    for c in list(m.containers.values()):
        pids = (c.state.pid, c.state.monitor_pid)
        try:
            m.remove(c.id, force=True)
        except Exception:  # noqa: BLE001
            for pid in pids:  # never leave a monitor or its process behind
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
    m.close()


def run(m: ContainerManager, cmd: list[str], name: str | None = None, **cfg) -> str:
    hc = cfg.pop("HostConfig", {})
    cid, _ = m.create(name, {"Image": "busybox", "Cmd": cmd, **cfg}, hc, {})
    return cid


def unframe(data: bytes) -> dict[int, bytes]:
    parts: dict[int, list[bytes]] = {1: [], 2: []}
    i = 0
    while i < len(data):
        stream, size = struct.unpack_from(">BxxxI", data, i)
        parts.setdefault(stream, []).append(data[i + 8 : i + 8 + size])
        i += 8 + size
    return {k: b"".join(v) for k, v in parts.items()}


def recv_all(s: socket.socket, timeout: float = 10) -> bytes:
    s.settimeout(timeout)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def test_lifecycle_logs_inspect_list_remove(env) -> None:
    m, g, ev, _ = env
    cid = run(m, ["sh", "-c", "echo out; echo err >&2; exit 3"], "web")
    c = m.inspect("web")
    assert c["Name"] == "/web" and c["State"]["Status"] == "created"
    assert c["Config"]["Hostname"] == cid[:12] and c["Image"].startswith("sha256:")
    assert m.list() == [] and m.list(all=True)[0]["Names"] == ["/web"]
    waiter = m.wait_prepare(cid, "next-exit")
    m.start(cid)
    assert waiter(10) == {"StatusCode": 3, "Error": None}
    st = m.inspect(cid)["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 3 and st["FinishedAt"] > st["StartedAt"]
    out = unframe(b"".join(m.logs(cid)))
    assert out[1] == b"out\n" and out[2] == b"err\n"
    log_lines = [json.loads(x) for x in Path(m.inspect(cid)["LogPath"]).read_text().splitlines()]
    assert {x["stream"] for x in log_lines} == {"stdout", "stderr"}
    assert m.list(all=True, filters={"status": ["exited"]})[0]["Id"] == cid
    assert m.list(all=True, filters={"exited": ["0"]}) == []
    assert m.list(all=True)[0]["Status"].startswith("Exited (3)")
    assert m.get(cid[:8]).id == cid
    m.remove(cid)
    assert ev.actions(cid) == ["create", "start", "die", "destroy"]
    assert ev[2][3]["exitCode"] == "3"
    with pytest.raises(NotFound, match="No such container: web"):
        m.get("web")
    assert cid not in g.layers
    assert not (m.cdir / cid).exists()


def test_name_conflict_and_validation(env) -> None:
    m, g, _, _ = env
    cid = run(m, ["true"], "dup")
    with pytest.raises(Conflict) as e:
        run(m, ["true"], "dup")
    assert str(e.value) == (
        f'Conflict. The container name "/dup" is already in use by container "{cid}". You have '
        "to remove (or rename) that container to be able to reuse that name.")
    with pytest.raises(InvalidParameter, match=r"Invalid container name \(a b\)"):
        run(m, ["true"], "a b")
    with pytest.raises(NotFound, match="No such image: nope"):
        m.create(None, {"Image": "nope", "Cmd": ["true"]}, {}, {})
    anon = run(m, ["true"])
    assert m.inspect(anon)["Name"].count("_") >= 1
    m.rename(anon, "renamed")
    assert m.get("renamed").id == anon
    with pytest.raises(Conflict, match='"/dup" is already in use'):
        m.rename(anon, "dup")


def test_failed_create_leaves_nothing(env) -> None:
    m, g, _, _ = env
    before = (set(g.layers), set(p.name for p in m.cdir.iterdir()), m.volumes.list())
    with pytest.raises(InvalidParameter, match="Minimum memory limit"):
        m.create("bad", {"Image": "busybox", "Cmd": ["true"], "Volumes": {"/v": {}}},
                 {"Memory": 1024, "Binds": ["named1:/data"]}, {})
    with pytest.raises(InvalidParameter):
        m.create("bad", {"Image": "busybox", "Cmd": ["true"]},
                 {"Binds": ["named2:/data", "/tmp:/data"]}, {})
    after = (set(g.layers), set(p.name for p in m.cdir.iterdir()), m.volumes.list())
    assert before == after
    assert m.store.all() == []


def test_failed_start_rolls_back(env) -> None:
    m, g, ev, _ = env
    cid = run(m, ["/no/such/binary"])
    # the fake driver execs in the child: the process exits 127 right away
    w = m.wait_prepare(cid, "next-exit")
    m.start(cid)
    assert w(10)["StatusCode"] == 127
    assert g.mounted.get(cid, 0) == 0  # rootfs released after the exit


def test_attach_stdin_before_start(env) -> None:
    m, _, ev, _ = env
    cid = run(m, ["cat"], OpenStdin=True, StdinOnce=True, AttachStdin=True)
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=m.attach, args=(cid, theirs),
                         kwargs={"stdin": True, "stdout": True, "stderr": True})
    t.start()
    time.sleep(0.1)
    w = m.wait_prepare(cid, "next-exit")
    m.start(cid)
    ours.sendall(b"hello\nworld\n")
    ours.shutdown(socket.SHUT_WR)
    data = recv_all(ours)
    t.join(10)
    assert unframe(data)[1] == b"hello\nworld\n"
    assert w(10)["StatusCode"] == 0
    assert "attach" in ev.actions(cid)


def test_two_attachers_see_output(env) -> None:
    m, _, _, _ = env
    cid = run(m, ["sh", "-c", "read x; echo got $x"], OpenStdin=True)
    m.start(cid)
    pairs = [socket.socketpair() for _ in range(2)]
    threads = []
    for i, (_, theirs) in enumerate(pairs):
        t = threading.Thread(target=m.attach, args=(cid, theirs), kwargs={"stdin": i == 0})
        t.start()
        threads.append(t)
    time.sleep(0.3)
    pairs[0][0].sendall(b"ping\n")
    for ours, _ in pairs:
        assert unframe(recv_all(ours))[1] == b"got ping\n"
    for t in threads:
        t.join(5)


def test_tty_raw_stream_and_resize(env) -> None:
    m, _, _, _ = env
    cid = run(m, ["sh", "-c", "sleep 0.3; stty size; echo done"], Tty=True)
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=m.attach, args=(cid, theirs))
    t.start()
    time.sleep(0.1)
    m.start(cid)
    m.resize(cid, 33, 101)
    data = recv_all(ours)
    t.join(5)
    assert b"33 101" in data and b"done" in data
    assert not data.startswith(b"\x01\x00\x00\x00")  # not multiplexed
    logs = b"".join(m.logs(cid))
    assert b"done" in logs


def test_exec(env) -> None:
    m, _, ev, _ = env
    cid = run(m, ["sleep", "30"])
    m.start(cid)
    eid = m.exec_create(cid, {"Cmd": ["sh", "-c", "echo in-exec; echo e >&2; exit 7"],
                              "AttachStdout": True, "AttachStderr": True})
    ours, theirs = socket.socketpair()
    m.exec_start(eid, theirs)
    theirs.close()
    out = unframe(recv_all(ours))
    assert out[1] == b"in-exec\n" and out[2] == b"e\n"
    info = m.exec_inspect(eid)
    assert info["ExitCode"] == 7 and info["Running"] is False
    acts = ev.actions(cid)
    assert any(a.startswith("exec_create: sh -c") for a in acts)
    assert any(a.startswith("exec_die") for a in acts)
    # stdin through exec
    eid = m.exec_create(cid, {"Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True})
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=m.exec_start, args=(eid, theirs))
    t.start()
    ours.sendall(b"via stdin\n")
    ours.shutdown(socket.SHUT_WR)
    assert unframe(recv_all(ours))[1] == b"via stdin\n"
    t.join(5)
    assert m.exec_inspect(eid)["ExitCode"] == 0
    # detached
    eid = m.exec_create(cid, {"Cmd": ["sh", "-c", "exit 4"]})
    m.exec_start(eid, None, detach=True)
    deadline = time.time() + 5
    while m.exec_inspect(eid)["ExitCode"] is None and time.time() < deadline:
        time.sleep(0.05)
    assert m.exec_inspect(eid)["ExitCode"] == 4
    with pytest.raises(InvalidParameter, match="No exec command"):
        m.exec_create(cid, {"Cmd": []})
    m.kill(cid)
    m.wait(cid, timeout=10)
    with pytest.raises(Conflict, match="is not running"):
        m.exec_create(cid, {"Cmd": ["true"]})


def test_stop_kill_pause(env) -> None:
    m, _, ev, _ = env
    cid = run(m, ["sleep", "30"])
    with pytest.raises(Conflict, match="is not running"):
        m.kill(cid)
    m.start(cid)
    with pytest.raises(NotModified):
        m.start(cid)
    m.pause(cid)
    assert m.inspect(cid)["State"]["Paused"] is True
    with pytest.raises(Conflict, match="already paused"):
        m.pause(cid)
    with pytest.raises(Conflict, match="You cannot remove a paused container"):
        m.remove(cid)
    m.unpause(cid)
    t0 = time.monotonic()
    m.stop(cid, timeout=5)
    assert time.monotonic() - t0 < 4
    st = m.inspect(cid)["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 143
    with pytest.raises(NotModified):
        m.stop(cid)
    acts = ev.actions(cid)
    assert acts[-3:] == ["kill", "die", "stop"] or acts[-2:] == ["die", "stop"]
    assert "pause" in acts and "unpause" in acts


def test_stop_timeout_escalates_to_sigkill(env) -> None:
    m, _, _, _ = env
    cid = run(m, ["sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"])
    m.start(cid)
    time.sleep(0.2)
    m.stop(cid, timeout=1)
    assert m.inspect(cid)["State"]["ExitCode"] == 137


def test_restart_policy_on_failure(env) -> None:
    m, _, ev, _ = env
    cid = run(m, ["sh", "-c", "exit 1"],
              HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    m.start(cid)
    deadline = time.time() + 15
    while time.time() < deadline:
        d = m.inspect(cid)
        if d["RestartCount"] == 2 and d["State"]["Status"] == "exited":
            break
        time.sleep(0.05)
    d = m.inspect(cid)
    assert d["RestartCount"] == 2 and d["State"]["Status"] == "exited"
    assert ev.actions(cid).count("start") == 3 and ev.actions(cid).count("die") == 3


def test_restart_always_and_stop_cancels(env) -> None:
    m, _, _, _ = env
    cid = run(m, ["sh", "-c", "sleep 0.1"], HostConfig={"RestartPolicy": {"Name": "always"}})
    m.start(cid)
    deadline = time.time() + 10
    while m.inspect(cid)["RestartCount"] < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert m.inspect(cid)["RestartCount"] >= 2
    try:
        m.stop(cid, timeout=2)
    except NotModified:
        pass
    time.sleep(1.0)
    assert m.inspect(cid)["State"]["Status"] == "exited"
    n = m.inspect(cid)["RestartCount"]
    time.sleep(0.5)
    assert m.inspect(cid)["RestartCount"] == n


def test_auto_remove(env) -> None:
    m, _, ev, _ = env
    cid = run(m, ["true"], HostConfig={"AutoRemove": True})
    w = m.wait_prepare(cid, "removed")
    m.start(cid)
    assert w(10)["StatusCode"] == 0
    assert ev.actions(cid)[-1] == "destroy"
    with pytest.raises(NotFound):
        m.get(cid)


def test_volumes_named_anonymous_and_copy_up(env) -> None:
    m, _, _, tmp = env
    host = tmp / "hostdir"
    cid = run(m, ["sh", "-c", "cat from-image > /dev/null; echo hi > copied; ls"],
              WorkingDir="/data", Volumes={"/anon": {}},
              HostConfig={"Binds": ["vol1:/data", f"{host}:/h:ro"]})
    assert host.is_dir()  # -v creates a missing host directory
    mounts = {mm["Destination"]: mm for mm in m.inspect(cid)["Mounts"]}
    assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["Name"] == "vol1"
    assert mounts["/h"]["Type"] == "bind" and mounts["/h"]["RW"] is False
    assert mounts["/anon"]["Type"] == "volume" and len(mounts["/anon"]["Name"]) == 64
    m.start(cid)
    m.wait(cid, "next-exit", timeout=10) if m.inspect(cid)["State"]["Running"] else None
    vol = m.volumes.inspect("vol1")
    assert (Path(vol["Mountpoint"]) / "from-image").read_text() == "hello from the image\n"
    with pytest.raises(Conflict, match="volume is in use"):
        m.volumes.remove("vol1")
    anon = mounts["/anon"]["Name"]
    m.remove(cid, volumes=True)
    names = [v["Name"] for v in m.volumes.list()]
    assert "vol1" in names and anon not in names  # named volumes survive rm -v
    m.volumes.remove("vol1")
    with pytest.raises(NotFound):
        m.volumes.inspect("vol1")


def test_restore_reattaches_and_records_exits(env) -> None:
    m, g, ev, tmp = env
    live = run(m, ["sh", "-c", "sleep 4; exit 5"], "live")
    ended = run(m, ["sh", "-c", "sleep 0.3; exit 9"], "ended")
    m.start(live)
    m.close()  # the "daemon" goes away; the monitors do not
    # start `ended` behind the old manager's back: a container that exits while we are down
    m_tmp = ContainerManager(tmp / "root", tmp / "run", g, None, lambda *a: None,
                             cgroup_parent="skt7", exec_driver="fake")
    m_tmp.start(ended)
    m_tmp.close()
    time.sleep(0.8)
    ev2 = Events()
    m2 = ContainerManager(tmp / "root", tmp / "run", g, None, ev2, cgroup_parent="skt7",
                          exec_driver="fake")
    m2.restore()
    st = m2.inspect("ended")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 9
    assert m2.inspect("live")["State"]["Running"] is True
    assert m2.wait("live", "not-running", timeout=10)["StatusCode"] == 5
    assert "die" in ev2.actions(live)
    for c in ("live", "ended"):
        m2.remove(c, force=True)
    m2.close()


def test_update_and_wait_conditions(env) -> None:
    m, _, _, _ = env
    cid = run(m, ["true"])
    assert m.wait(cid, "not-running", timeout=1)["StatusCode"] == 0  # created: not running
    with pytest.raises(InvalidParameter, match="invalid condition"):
        m.wait(cid, "whenever")
    m.update(cid, {"Memory": 64 * 1024 * 1024, "RestartPolicy": {"Name": "on-failure",
                                                                  "MaximumRetryCount": 1}})
    hc = m.inspect(cid)["HostConfig"]
    assert hc["Memory"] == 64 * 1024 * 1024 and hc["MemorySwap"] == 128 * 1024 * 1024
    assert hc["RestartPolicy"]["Name"] == "on-failure"
    with pytest.raises(InvalidParameter, match="Minimum memory limit"):
        m.update(cid, {"Memory": 1})


def test_top_and_stats_shapes(env) -> None:
    m, _, _, _ = env
    cid = run(m, ["sleep", "30"])
    m.start(cid)
    top = m.top(cid)
    assert "PID" in top["Titles"]
    st = m.stats(cid)
    assert st["id"] == cid and "cpu_stats" in st and "memory_stats" in st
    m.kill(cid)


def test_detach_keys_parse_and_scan() -> None:
    from engine.containers.manager import _scan_detach, parse_detach_keys

    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(InvalidParameter, match="Unknown character"):
        parse_detach_keys("ctrl-ab")
    assert _scan_detach(b"abc\x10\x11rest", b"\x10\x11") == (b"abc", b"", True)
    assert _scan_detach(b"abc\x10", b"\x10\x11") == (b"abc", b"\x10", False)
    assert _scan_detach(b"\x10x", b"\x10\x11") == (b"\x10x", b"", False)


def test_tty_detach_leaves_container_running(env) -> None:
    m, _, _, _ = env
    cid = run(m, ["sh"], Tty=True, OpenStdin=True)
    m.start(cid)
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=m.attach, args=(cid, theirs), kwargs={"stdin": True})
    t.start()
    ours.sendall(b"echo still-here\n")
    time.sleep(0.3)
    ours.sendall(b"\x10")
    ours.sendall(b"\x11")
    recv_all(ours)  # the stream ends
    t.join(5)
    assert not t.is_alive()
    assert m.inspect(cid)["State"]["Running"] is True
    m.kill(cid)


def test_prune_and_orphan_adoption(env) -> None:
    m, g, _, tmp = env
    keep = run(m, ["sleep", "30"], "keep")
    gone = run(m, ["true"], "gone", Labels={"x": "1"})
    m.start(keep)
    # the daemon "crashes" after the monitor started but before it recorded RUNNING
    c = m.get(keep)
    with c.lock:
        c.state.status = "created"
        c.state.pid = c.state.monitor_pid = 0
        m._save(c)
    m.close()
    m2 = ContainerManager(tmp / "root", tmp / "run", g, None, lambda *a: None,
                          cgroup_parent="skt7", exec_driver="fake")
    m2.restore()
    st = m2.inspect("keep")["State"]
    assert st["Running"] is True and st["Pid"] > 0
    assert m2.prune({"label": ["x=1"]})["ContainersDeleted"] == [gone]
    m2.kill("keep")
    assert m2.wait("keep", timeout=10)["StatusCode"] == 137
    m2.remove("keep")
    m2.close()


def test_restore_after_monitor_died_applies_restart_policy(env) -> None:
    m, g, _, tmp = env
    cid = run(m, ["sleep", "30"], "phoenix", HostConfig={"RestartPolicy": {"Name": "always"}})
    m.start(cid)
    st = m.inspect(cid)["State"]
    mon = m.get(cid).state.monitor_pid
    m.close()
    # the machine "reboots": monitor and container die without an exit record
    for pid in (mon, st["Pid"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    ev2 = Events()
    m2 = ContainerManager(tmp / "root", tmp / "run", g, None, ev2, cgroup_parent="skt7",
                          exec_driver="fake")
    t0 = time.monotonic()
    m2.restore()
    assert time.monotonic() - t0 < 3
    assert ev2[0][1] == "die" and ev2[0][3]["exitCode"] == "255"
    deadline = time.time() + 10
    while not m2.inspect(cid)["State"]["Running"] and time.time() < deadline:
        time.sleep(0.05)
    assert m2.inspect(cid)["State"]["Running"] and m2.inspect(cid)["RestartCount"] == 1
    m2.remove(cid, force=True)
    m2.close()


def test_large_stdin_never_blocks_the_monitor(env) -> None:
    """cat echoes 4 MiB: input and output pipes fill both ways; nothing may deadlock."""
    m, _, _, _ = env
    cid = run(m, ["cat"], OpenStdin=True, StdinOnce=True)
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=m.attach, args=(cid, theirs), kwargs={"stdin": True})
    t.start()
    time.sleep(0.1)
    m.start(cid)
    payload = bytes(range(256)) * (4 * 4096)

    def feed() -> None:
        ours.sendall(payload)
        ours.shutdown(socket.SHUT_WR)

    f = threading.Thread(target=feed)
    f.start()
    data = recv_all(ours, timeout=30)
    f.join(10)
    t.join(10)
    assert unframe(data)[1] == payload
    assert m.wait(cid, timeout=10)["StatusCode"] == 0


def test_attach_prepare_survives_auto_remove(env) -> None:
    # the router prepares before its 101 and streams after: a --rm container that ran and was
    # removed in between still delivers its output; an unknown one fails before the upgrade
    m, _, _, _ = env
    with pytest.raises(NotFound):
        m.attach_prepare("nosuch")
    cid = run(m, ["echo", "bye"], HostConfig={"AutoRemove": True})
    stream = m.attach_prepare(cid, stdout=True, stderr=True)
    w = m.wait_prepare(cid, "removed")
    m.start(cid)
    assert w(10)["StatusCode"] == 0
    with pytest.raises(NotFound):
        m.get(cid)
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=stream, args=(theirs,))
    t.start()
    t.join(10)
    theirs.close()
    assert unframe(recv_all(ours))[1] == b"bye\n"


def test_attach_prepare_cancel_unregisters(env) -> None:
    m, _, _, _ = env
    cid = run(m, ["true"])
    stream = m.attach_prepare(cid, stdout=True)
    assert len(m.get(cid).pending_attach) == 1
    stream.cancel()
    assert m.get(cid).pending_attach == []
