"""Server plumbing: listeners, socket mode, stale sockets, routing, version parsing, flags."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from engine.client.api import Client
from engine.daemon import errors as errmap
from engine.daemon.main import parse_args
from engine.daemon.router import Backends, build
from engine.daemon.server import Response, Router, Server, parse_target
from engine.jobs import Engine


def test_parse_target_versions_and_query():
    assert parse_target("/v1.44/containers/json?all=1&x=") == (
        "1.44", "/containers/json", {"all": ["1"], "x": [""]})
    assert parse_target("/_ping") == ("", "/_ping", {})
    assert parse_target("/v1.24/info")[0] == "1.24"
    with pytest.raises(errmap.InvalidParameter):
        parse_target("/v1.45/info")
    with pytest.raises(errmap.InvalidParameter):
        parse_target("/v1.23/info")


def test_router_patterns_and_405():
    r = Router()
    r.add("GET", "/images/json", lambda req: "list")
    r.add("GET", "/images/{name:.+}/json", lambda req, name: name)
    r.add("POST", "/containers/{name}/start", lambda req, name: name)
    h, p = r.match("GET", "/images/json")
    assert h(None) == "list"
    h, p = r.match("GET", "/images/localhost:5000/a/b:1/json")
    assert p == {"name": "localhost:5000/a/b:1"}
    h, p = r.match("HEAD", "/images/json")  # HEAD falls back to GET
    with pytest.raises(errmap.MethodNotAllowed):
        r.match("GET", "/containers/x/start")
    with pytest.raises(errmap.NotFound):
        r.match("GET", "/containers/x/y/start")


def test_error_map():
    from engine.libcontainer import errors as lc

    assert errmap.to_status(errmap.NotFound("No such container: x")) == (
        404, "No such container: x")
    assert errmap.to_status(errmap.Conflict("c"))[0] == 409
    assert errmap.to_status(lc.ConfigError("a.b", 1, "bad"))[0] == 400
    assert errmap.to_status(lc.ContainerNotFound("x"))[0] == 404
    assert errmap.to_status(lc.StateError("paused"))[0] == 409
    assert errmap.to_status(RuntimeError("boom")) == (500, "boom")


def test_unix_socket_mode_stale_socket_and_busy(tmp_path):
    path = str(tmp_path / "d.sock")
    s = Server.listen("unix://" + path, group=None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    with pytest.raises(errmap.Conflict):
        Server.listen("unix://" + path, group=None)  # a live daemon owns it
    s.close()
    s2 = Server.listen(path, group=None)  # stale file from a dead daemon is replaced
    s2.close()


def test_tcp_listener_serves_the_api():
    ls = Server.listen("tcp://127.0.0.1:0")
    port = ls.getsockname()[1]
    srv = Server(build(Backends(engine=Engine())), [ls])
    srv.start()
    try:
        assert Client(f"tcp://127.0.0.1:{port}").get("/_ping") == b"OK"
    finally:
        srv.shutdown()


def test_handler_crash_is_a_500_not_a_dead_connection(tmp_path):
    r = Router()

    def boom(req):
        raise ZeroDivisionError("division by zero")

    r.add("GET", "/boom", boom)
    r.add("GET", "/ok", lambda req: Response.json({"ok": True}))
    path = str(tmp_path / "d.sock")
    srv = Server(r, [Server.listen(path, group=None)])
    srv.start()
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b'{"ok": true}' not in buf:
            buf += s.recv(4096)
        assert buf.startswith(b"HTTP/1.1 500") and b"division by zero" in buf
    finally:
        srv.shutdown()


def test_shutdown_removes_the_socket(tmp_path):
    path = str(tmp_path / "d.sock")
    srv = Server(Router(), [Server.listen(path, group=None)])
    srv.start()
    srv.shutdown()
    assert not os.path.exists(path)


def test_skiffd_flags_and_defaults():
    a = parse_args([])
    assert a.host is None and a.root == "/var/lib/skiff" and a.exec_root == "/run/skiff"
    a = parse_args(["-H", "unix:///run/skt4/x.sock", "-H", "tcp://127.0.0.1:2399", "--root",
                    "/var/lib/skt4", "--exec-root", "/run/skt4", "--storage-driver", "vfs",
                    "--bridge", "skt4br0", "--bridge-subnet", "10.204.0.0/24", "--nft-table",
                    "skt4", "--cgroup-parent", "skt4", "--log-level", "debug", "--pidfile",
                    "/run/skt4/pid"])
    assert a.host == ["unix:///run/skt4/x.sock", "tcp://127.0.0.1:2399"]
    assert (a.storage_driver, a.bridge, a.nft_table, a.cgroup_parent) == (
        "vfs", "skt4br0", "skt4", "skt4")


def test_expect_100_continue_gets_a_100(tmp_path):
    r = Router()
    r.add("POST", "/echo", lambda req: Response(200, req.data(), "text/plain"))
    path = str(tmp_path / "d.sock")
    srv = Server(r, [Server.listen(path, group=None)])
    srv.start()
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100")
        s.sendall(b"hello")
        buf = b""
        while not buf.endswith(b"hello"):
            buf += s.recv(100)
        assert b"200 OK" in buf
    finally:
        srv.shutdown()
