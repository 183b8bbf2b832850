"""Containers and exec areas against the fake ContainerManager over a real socket."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from engine.client.api import APIError, Client, demux
from engine.daemon.fakes import fake_daemon


@pytest.fixture
def d():
    with fake_daemon() as (path, b):
        b.images.pull("busybox:latest")
        yield Client("unix://" + path), b


def create(c: Client, cmd, **extra) -> str:
    return c.post("/containers/create", {"Image": "busybox", "Cmd": cmd, **extra})["Id"]


def status_of(fn) -> tuple[int, str]:
    with pytest.raises(APIError) as ei:
        fn()
    return ei.value.status, ei.value.message


def test_create_returns_201_id_and_warnings(d):
    c, b = d
    r = c.http.post("/v1.44/containers/create?name=web", json={"Image": "busybox"})
    assert r.status_code == 201
    body = r.json()
    assert len(body["Id"]) == 64 and body["Warnings"] == []
    assert c.get("/containers/web/json")["Name"] == "/web"


@pytest.mark.parametrize("body,word", [
    ({"Image": 5}, "Image"),
    ({"Image": "busybox", "Cmd": 3}, "Cmd"),
    ({"Image": "busybox", "Env": [1]}, "Env"),
    ({"Image": "busybox", "Tty": "yes"}, "Tty"),
    ({"Image": "busybox", "HostConfig": {"Memory": "lots"}}, "Memory"),
    ({"Image": "busybox", "HostConfig": {"Memory": 1024}}, "6MB"),
    ({"Image": "busybox", "HostConfig": {"Memory": -1}}, "memory"),
    ({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, "restart"),
    ({"Image": "busybox", "HostConfig": {"AutoRemove": True,
                                         "RestartPolicy": {"Name": "always"}}}, "AutoRemove"),
    ({"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}},
     "host port"),
    ({"Image": "busybox", "ExposedPorts": {"http": {}}}, "containerPort"),
    ({"Image": "busybox", "WorkingDir": "relative"}, "absolute"),
    ({"Image": "busybox", "HostConfig": []}, "HostConfig"),
    ({}, "image"),
    ([], "object"),
    ({"Image": "busybox", "HostConfig": {"NanoCpus": 10**15}}, "Range of CPUs"),
    ({"Image": "busybox", "HostConfig": {"ShmSize": -5}}, "ShmSize"),
    ({"Image": "busybox", "HostConfig": {"OomScoreAdj": 5000}}, "oom score"),
])
def test_create_rejects_bad_bodies_with_400(d, body, word):
    c, b = d
    st, msg = status_of(lambda: c.post("/containers/create", body))
    assert st == 400 and word.lower() in msg.lower()
    assert b.containers.cs == {}  # nothing half-created


def test_create_malformed_json_and_bad_name(d):
    c, _ = d
    r = c.http.post("/v1.44/containers/create", content=b"{nope",
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["message"]
    st, msg = status_of(lambda: c.post("/containers/create", {"Image": "busybox"},
                                       name="bad name!"))
    assert st == 400 and "Invalid container name" in msg


def test_create_unknown_image_is_404_no_such_image(d):
    c, _ = d
    st, msg = status_of(lambda: c.post("/containers/create", {"Image": "nothere"}))
    assert st == 404 and msg == "No such image: nothere:latest"


def test_name_conflict_is_409(d):
    c, _ = d
    c.post("/containers/create", {"Image": "busybox"}, name="xx")
    st, msg = status_of(lambda: c.post("/containers/create", {"Image": "busybox"}, name="xx"))
    assert st == 409 and "already in use" in msg


def test_unknown_container_is_404_everywhere(d):
    c, _ = d
    for fn in (lambda: c.get("/containers/zzz/json"),
               lambda: c.post("/containers/zzz/start"),
               lambda: c.post("/containers/zzz/stop"),
               lambda: c.post("/containers/zzz/kill"),
               lambda: c.post("/containers/zzz/wait"),
               lambda: c.delete("/containers/zzz"),
               lambda: c.get("/containers/zzz/logs", stdout=1),
               lambda: c.post("/containers/zzz/attach", stream=1),
               lambda: c.post("/containers/zzz/exec", {"Cmd": ["ls"]})):
        st, msg = status_of(fn)
        assert st == 404 and "No such container: zzz" in msg


def test_lifecycle_start_stop_kill_restart_rm(d):
    c, b = d
    cid = create(c, ["sleep"])
    assert c.get("/containers/json") == []
    assert [x["Id"] for x in c.get("/containers/json", all=1)] == [cid]
    c.post(f"/containers/{cid}/start")
    assert c.get(f"/containers/{cid[:12]}/json")["State"]["Running"] is True
    r = c.http.post(f"/v1.44/containers/{cid}/start")
    assert r.status_code == 304
    st, msg = status_of(lambda: c.delete(f"/containers/{cid}"))
    assert st == 409 and "running" in msg
    c.post(f"/containers/{cid}/stop", t=1)
    c.post(f"/containers/{cid}/restart")
    st, msg = status_of(lambda: c.post(f"/containers/{cid}/kill", signal="NOPE"))
    assert st == 400 and "Invalid signal" in msg
    c.post(f"/containers/{cid}/kill", signal="9")
    assert c.get(f"/containers/{cid}/json")["State"]["ExitCode"] == 137
    c.delete(f"/containers/{cid}")
    assert c.get("/containers/json", all=1) == []


def test_wait_flushes_200_headers_before_the_container_exits(d):
    c, b = d
    cid = create(c, ["sleep"])
    c.post(f"/containers/{cid}/start")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(c.unix)
    s.sendall(f"POST /v1.44/containers/{cid}/wait?condition=not-running HTTP/1.1\r\n"
              "Host: x\r\nContent-Length: 0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Transfer-Encoding: chunked" in head
    s.settimeout(0.3)
    with pytest.raises(TimeoutError):
        s.recv(4096)  # no body while the container runs
    s.settimeout(5)
    c.post(f"/containers/{cid}/kill")
    rest = head.split(b"\r\n\r\n", 1)[1]
    while b"0\r\n\r\n" not in rest:
        rest += s.recv(4096)
    body = json.loads(rest.split(b"\r\n")[1])
    assert body == {"Error": None, "StatusCode": 137}


def test_wait_bad_condition_400(d):
    c, _ = d
    cid = create(c, ["sleep"])
    st, msg = status_of(lambda: c.post(f"/containers/{cid}/wait", condition="whenever"))
    assert st == 400 and "condition" in msg


def test_wait_removed_with_autoremove(d):
    c, _ = d
    cid = create(c, ["exit", "3"], HostConfig={"AutoRemove": True})
    r = c.raw("POST", f"/containers/{cid}/wait", {"condition": "removed"})
    c.post(f"/containers/{cid}/start")
    assert json.loads(r.read())["StatusCode"] == 3


def test_attach_upgrades_and_multiplexes(d):
    c, _ = d
    cid = create(c, ["echo", "hi"], AttachStdout=True, AttachStderr=True)
    sock, left = c.hijack(f"/containers/{cid}/attach",
                          {"stream": 1, "stdout": 1, "stderr": 1})
    sock.shutdown(socket.SHUT_WR)  # like the docker CLI without -i
    c.post(f"/containers/{cid}/start")
    data = left
    while True:
        x = sock.recv(4096)
        if not x:
            break
        data += x
    assert data == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"


def test_attach_101_headers(d):
    c, _ = d
    cid = create(c, ["sleep"])
    r = c.raw("POST", f"/containers/{cid}/attach", {"stream": 1, "stdout": 1}, upgrade=True)
    assert r.status == 101
    assert r.headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert r.headers["api-version"] == "1.44"
    r.sock.close()


def test_attach_with_stdin_tty_is_raw(d):
    c, _ = d
    cid = create(c, ["cat"], Tty=True, OpenStdin=True)
    c.post(f"/containers/{cid}/start")
    sock, left = c.hijack(f"/containers/{cid}/attach", {"stream": 1, "stdin": 1, "stdout": 1})
    sock.sendall(b"hello")
    got = left
    while len(got) < 5:
        got += sock.recv(100)
    assert got == b"hello"
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(100) == b""


def test_early_stdin_bytes_reach_the_backend(d):
    c, _ = d
    cid = create(c, ["cat"], OpenStdin=True)
    c.post(f"/containers/{cid}/start")
    s = socket.socket(socket.AF_UNIX)
    s.connect(c.unix)
    # request and stdin in one write: h11 buffers the stdin, the server must forward it
    s.sendall(f"POST /v1.44/containers/{cid}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n"
              "Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly".encode())
    s.shutdown(socket.SHUT_WR)
    data = b""
    s.settimeout(5)
    while True:
        x = s.recv(4096)
        if not x:
            break
        data += x
    assert data.split(b"\r\n\r\n", 1)[1] == b"\x01\x00\x00\x00\x00\x00\x00\x05early"


def test_logs_framed_tail_and_requires_a_stream(d):
    c, _ = d
    cid = create(c, ["echo", "a"])
    c.post(f"/containers/{cid}/start")
    frames = list(demux(c.stream("GET", f"/containers/{cid}/logs",
                                 {"stdout": 1, "stderr": 1, "tail": "1"})))
    assert frames == [(1, b"a\n")]
    r = c.http.get(f"/v1.44/containers/{cid}/logs?stdout=1")
    assert r.headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    st, msg = status_of(lambda: c.get(f"/containers/{cid}/logs"))
    assert st == 400 and "at least one stream" in msg
    ts = b"".join(c.stream("GET", f"/containers/{cid}/logs", {"stdout": 1, "timestamps": 1}))
    assert b"2026-01-01T" in ts


def test_resize_top_stats_update(d):
    c, b = d
    cid = create(c, ["sleep"])
    st, _ = status_of(lambda: c.post(f"/containers/{cid}/resize", h=10, w=20))
    assert st == 409
    c.post(f"/containers/{cid}/start")
    c.post(f"/containers/{cid}/resize", h=10, w=20)
    assert b.containers.resized == [(cid, 10, 20)]
    st, msg = status_of(lambda: c.post(f"/containers/{cid}/resize", h="x", w=20))
    assert st == 400
    assert c.get(f"/containers/{cid}/top")["Titles"][1] == "PID"
    s = c.get(f"/containers/{cid}/stats", stream=0)
    assert s["memory_stats"]["limit"] == 1 << 30
    assert c.post(f"/containers/{cid}/update", {"Memory": 64 << 20}) == {"Warnings": []}
    st, msg = status_of(lambda: c.post(f"/containers/{cid}/update", {"Memory": "x"}))
    assert st == 400


def test_exec_create_start_inspect(d):
    c, _ = d
    cid = create(c, ["sleep"])
    st, msg = status_of(lambda: c.post(f"/containers/{cid}/exec", {"Cmd": ["ls"]}))
    assert st == 409  # not running
    c.post(f"/containers/{cid}/start")
    st, msg = status_of(lambda: c.post(f"/containers/{cid}/exec", {"Cmd": []}))
    assert st == 400 and "No exec command" in msg
    eid = c.post(f"/containers/{cid}/exec", {"Cmd": ["echo", "x"], "AttachStdout": True})["Id"]
    sock, left = c.hijack(f"/exec/{eid}/start", body={"Detach": False, "Tty": False})
    data = left
    while True:
        x = sock.recv(4096)
        if not x:
            break
        data += x
    assert data == struct.pack(">BxxxI", 1, 2) + b"x\n"
    info = c.get(f"/exec/{eid}/json")
    assert info["ExitCode"] == 0 and info["Running"] is False
    eid2 = c.post(f"/containers/{cid}/exec", {"Cmd": ["exit", "4"]})["Id"]
    c.post(f"/exec/{eid2}/start", {"Detach": True})
    assert c.get(f"/exec/{eid2}/json")["ExitCode"] == 4
    st, _ = status_of(lambda: c.get("/exec/nope/json"))
    assert st == 404
    st, _ = status_of(lambda: c.post("/exec/nope/start", {"Detach": False}))
    assert st == 404


def test_slow_client_does_not_block_others(d):
    c, _ = d
    hogs = []
    for _ in range(5):  # half-sent requests that never finish
        s = socket.socket(socket.AF_UNIX)
        s.connect(c.unix)
        s.sendall(b"POST /v1.44/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100"
                  b"\r\n\r\n{\"Ima")
        hogs.append(s)
    t0 = time.time()
    assert c.get("/_ping") == b"OK"
    assert time.time() - t0 < 1
    for s in hogs:
        s.close()


def test_events_from_container_lifecycle(d):
    c, b = d
    seen: list[dict] = []
    t0 = time.time()

    def reader():
        for ev in c.stream_json("GET", "/events", {"since": str(t0), "until": str(t0 + 1.5),
                                                   "filters": json.dumps({"type": ["container"]})}):
            seen.append(ev)

    t = threading.Thread(target=reader)
    t.start()
    cid = create(c, ["echo", "x"])
    c.post(f"/containers/{cid}/start")
    t.join(5)
    assert [e["Action"] for e in seen] == ["create", "start", "die"]
    assert all(e["Actor"]["ID"] == cid and e["id"] == cid for e in seen)


def test_jobs_record_container_operations(d):
    c, b = d
    cid = create(c, ["sleep"])
    c.post(f"/containers/{cid}/start")
    names = [j.name for j in b.engine.jobs(all=True)]
    assert "container.create" in names and "container.start" in names


def test_logs_follow_client_leaving_frees_the_connection(d):
    c, b = d
    cid = create(c, ["sleep"])
    c.post(f"/containers/{cid}/start")
    s = socket.socket(socket.AF_UNIX)
    s.connect(c.unix)
    s.sendall(f"GET /v1.44/containers/{cid}/logs?stdout=1&follow=1 HTTP/1.1\r\nHost: x\r\n\r\n"
              .encode())
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    s.close()
    from engine.daemon.router import ticking

    def slow():
        yield b"a"
        time.sleep(0.3)
        yield b"b"

    assert [x for x in ticking(slow(), tick=0.1) if x is not None] == [b"a", b"b"]
    assert None in list(ticking(slow(), tick=0.1))


def test_exec_start_passes_console_size(d):
    # `docker exec -it` sends ConsoleSize [h, w] with start: without it the pty starts at 0x0
    c, b = d
    cid = create(c, ["sleep"])
    c.post(f"/containers/{cid}/start")
    eid = c.post(f"/containers/{cid}/exec", {"Cmd": ["echo", "x"], "Tty": True})["Id"]
    sock, _ = c.hijack(f"/exec/{eid}/start", body={"Detach": False, "Tty": True,
                                                   "ConsoleSize": [24, 80]})
    while sock.recv(4096):
        pass
    assert b.containers.exec_console_sizes[eid] == [24, 80]
    eid2 = c.post(f"/containers/{cid}/exec", {"Cmd": ["echo", "y"]})["Id"]
    c.post(f"/exec/{eid2}/start", {"Detach": True, "ConsoleSize": [0, 0]})
    assert b.containers.exec_console_sizes[eid2] is None
    eid3 = c.post(f"/containers/{cid}/exec", {"Cmd": ["echo", "z"]})["Id"]
    st, msg = status_of(lambda: c.post(f"/exec/{eid3}/start",
                                       {"Detach": True, "ConsoleSize": [24]}))
    assert st == 400 and "ConsoleSize" in msg


def test_attach_passes_detach_keys(d):
    c, b = d
    cid = create(c, ["echo", "hi"])
    sock, _ = c.hijack(f"/containers/{cid}/attach",
                       {"stream": 1, "stdout": 1, "detachKeys": "ctrl-a,a"})
    c.post(f"/containers/{cid}/start")
    while sock.recv(4096):
        pass
    assert b.containers.attach_detach_keys == ["ctrl-a,a"]


def test_attach_registers_before_the_101(d, monkeypatch):
    # docker run --rm: attach, start; the container may run and be auto-removed before the
    # stream after the 101 gets going. The stream must still carry its output.
    c, b = d
    run = b.engine.run

    def slow(name, fn, /, *a, **kw):
        if name == "container.attach":
            time.sleep(0.3)  # widen the gap between the 101 and the stream
        return run(name, fn, *a, **kw)

    monkeypatch.setattr(b.engine, "run", slow)
    cid = create(c, ["echo", "bye"], HostConfig={"AutoRemove": True})
    sock, left = c.hijack(f"/containers/{cid}/attach", {"stream": 1, "stdout": 1})
    sock.shutdown(socket.SHUT_WR)
    c.post(f"/containers/{cid}/start")
    assert status_of(lambda: c.get(f"/containers/{cid}/json"))[0] == 404  # removed already
    data = left
    sock.settimeout(10)
    while True:
        x = sock.recv(4096)
        if not x:
            break
        data += x
    assert data == b"\x01\x00\x00\x00\x00\x00\x00\x04bye\n"


def test_resize_routes_share_size_checks(d):
    c, b = d
    cid = create(c, ["sleep"])
    c.post(f"/containers/{cid}/start")
    eid = c.post(f"/containers/{cid}/exec", {"Cmd": ["echo", "x"]})["Id"]
    for path in (f"/containers/{cid}/resize", f"/exec/{eid}/resize"):
        st, msg = status_of(lambda p=path: c.post(p, h=-1, w=20))
        assert st == 400 and "invalid terminal size -1x20" in msg
        st, _ = status_of(lambda p=path: c.post(p, h="x", w=20))
        assert st == 400
    c.post(f"/containers/{cid}/resize", w=30)  # a missing side is 0, like docker
    assert b.containers.resized[-1] == (cid, 0, 30)
