"""System area and server basics against fake backends over a real unix socket."""

from __future__ import annotations

import json
import socket

import pytest

from engine.client.api import APIError, Client
from engine.daemon.fakes import fake_daemon


@pytest.fixture
def daemon():
    with fake_daemon() as (path, b):
        yield path, b


def raw(path: str, data: bytes, timeout: float = 5.0) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(data)
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except TimeoutError:
            break
        if not d:
            break
        out += d
        if b"\r\n\r\n" in out:
            if data.startswith(b"HEAD"):
                break
            head, _, body = out.partition(b"\r\n\r\n")
            cl = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")]
            if cl and len(body) >= int(cl[0].split(b":")[1]):
                break
            if not cl and b"HEAD" in data[:5]:
                break
    s.close()
    return out


def test_ping_head_and_get_carry_version_headers(daemon):
    path, _ = daemon
    for method in (b"HEAD", b"GET"):
        out = raw(path, method + b" /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        head = out.split(b"\r\n\r\n")[0].decode()
        assert head.startswith("HTTP/1.1 200")
        assert "Api-Version: 1.44" in head
        assert "Ostype: linux" in head
        assert "Docker-Experimental: false" in head
        assert "Server: Skiff/" in head
        if method == b"GET":
            assert out.endswith(b"OK")


def test_version_versioned_and_unversioned(daemon):
    path, _ = daemon
    c = Client("unix://" + path)
    v = c.get("/version")
    assert v["ApiVersion"] == "1.44" and v["MinAPIVersion"] == "1.24" and v["Os"] == "linux"
    c24 = Client("unix://" + path, version="1.24")
    assert c24.get("/version")["Version"] == v["Version"]
    out = raw(path, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in out.split(b"\r\n")[0] and b'"ApiVersion"' in out


@pytest.mark.parametrize("ver,word", [("1.99", "too new"), ("1.12", "too old")])
def test_out_of_range_versions_are_400(daemon, ver, word):
    path, _ = daemon
    with pytest.raises(APIError) as ei:
        Client("unix://" + path, version=ver).get("/version")
    assert ei.value.status == 400 and word in ei.value.message


def test_unknown_path_404_and_wrong_method_405(daemon):
    path, _ = daemon
    c = Client("unix://" + path)
    with pytest.raises(APIError) as ei:
        c.get("/nope")
    assert ei.value.status == 404
    with pytest.raises(APIError) as ei:
        c.request("PUT", "/version")
    assert ei.value.status == 405


def test_info_has_the_fields_the_docker_cli_reads(daemon):
    path, b = daemon
    c = Client("unix://" + path)
    b.images.pull("busybox:latest")
    c.post("/containers/create", {"Image": "busybox", "Cmd": ["sleep"]})
    info = c.get("/info")
    for k in ("ID", "Containers", "ContainersRunning", "Images", "Driver", "ServerVersion",
              "KernelVersion", "OperatingSystem", "NCPU", "MemTotal", "DockerRootDir",
              "Swarm", "Plugins", "CgroupVersion", "SecurityOptions"):
        assert k in info
    assert info["Containers"] == 1 and info["ContainersStopped"] == 1


def test_info_survives_without_backends():
    with fake_daemon(containers=False, images=False, networks=False) as (path, _):
        c = Client("unix://" + path)
        assert c.get("/info")["Containers"] == 0
        with pytest.raises(APIError) as ei:
            c.get("/containers/json")
        assert ei.value.status == 503


def test_malformed_http_is_400_and_daemon_lives_on(daemon):
    path, _ = daemon
    out = raw(path, b"GARBAGE\x00\x01 nonsense\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert Client("unix://" + path).get("/_ping") == b"OK"


def test_keep_alive_serves_several_requests_on_one_connection(daemon):
    path, _ = daemon
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    req = b"GET /v1.44/version HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(req + req)
    buf = b""
    while buf.count(b"HTTP/1.1 200") < 2 or not buf.endswith(b"\n"):
        buf += s.recv(65536)
    s.close()
    assert buf.count(b"HTTP/1.1 200") == 2


def test_jobs_lists_running_and_recent(daemon):
    path, b = daemon
    c = Client("unix://" + path)
    job = b.engine.job("test.op", x=1)
    with b.engine.track(job):
        running = c.get("/jobs")
        assert [j["Name"] for j in running] == ["test.op"]
        assert running[0]["Args"] == {"x": 1} and running[0]["Status"] == "running"
    assert c.get("/jobs") == []
    assert any(j["Name"] == "test.op" and j["Status"] == "done" for j in c.get("/jobs", all=1))


def test_events_stream_filters_and_until(daemon):
    import threading
    import time

    path, b = daemon
    c = Client("unix://" + path)
    t0 = time.time()

    def later():
        time.sleep(0.3)
        b.engine.emit("container", "start", "abc", {"name": "x"})
        b.engine.emit("image", "pull", "busybox:latest", {"name": "busybox:latest"})

    threading.Thread(target=later).start()
    evs = list(c.stream_json("GET", "/events", {"since": str(t0), "until": str(t0 + 1.5),
                                                 "filters": json.dumps({"type": ["image"]})}))
    assert [(e["Type"], e["Action"]) for e in evs] == [("image", "pull")]
    assert evs[0]["Actor"]["ID"] == "busybox:latest" and evs[0]["timeNano"] > 0
