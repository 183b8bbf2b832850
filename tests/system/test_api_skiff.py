"""The `skiff` client and API details against a real skiffd (root, real kernel)."""

from __future__ import annotations

import json
import time

import pytest

from engine.client.api import Client
from tests.system.daemon import Skiffd

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def d(require_root, busybox_image):
    with Skiffd("skt4c", subnet="10.204.0.128/26") as dm:
        r = dm.skiff("load", "-i", str(busybox_image / "docker-save.tar"))
        assert r.returncode == 0, r.stderr
        yield dm


def ok(r):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr}"
    return r


def test_version_info_images(d):
    assert "Skiff Engine" in ok(d.skiff("version")).stdout
    assert str(d.root) in ok(d.skiff("info")).stdout
    assert "busybox" in ok(d.skiff("images", "--format", "{{.Repository}}:{{.Tag}}")).stdout


def test_run_rm_and_exit_codes(d):
    r = ok(d.skiff("run", "--rm", "busybox", "echo", "hi"))
    assert r.stdout == "hi\n"
    assert d.skiff("run", "--rm", "busybox", "sh", "-c", "exit 5").returncode == 5
    r = d.skiff("run", "--rm", "skt4c-noimage:latest", "true")
    assert r.returncode == 125


def test_run_d_ps_logs_exec_stop_rm(d):
    cid = ok(d.skiff("run", "-d", "--name", "skt4c-a", "busybox", "sh", "-c",
                     "echo up; sleep 60")).stdout.strip()
    assert len(cid) == 64
    assert "skt4c-a" in ok(d.skiff("ps", "--format", "{{.Names}}")).stdout
    time.sleep(0.5)
    assert "up" in ok(d.skiff("logs", "skt4c-a")).stdout
    r = d.skiff("exec", "skt4c-a", "sh", "-c", "echo e; exit 6")
    assert r.returncode == 6 and r.stdout == "e\n"
    insp = json.loads(ok(d.skiff("inspect", "skt4c-a")).stdout)
    assert insp[0]["Id"] == cid and insp[0]["State"]["Running"] is True
    ok(d.skiff("stop", "-t", "1", "skt4c-a"))
    ok(d.skiff("rm", "skt4c-a"))
    assert "skt4c-a" not in d.skiff("ps", "-a").stdout


def test_wait_headers_before_start_and_events(d):
    c = Client(d.host)
    t0 = time.time()
    cid = c.post("/containers/create", {"Image": "busybox", "Cmd": ["sh", "-c", "exit 9"]})["Id"]
    r = c.raw("POST", f"/containers/{cid}/wait", {"condition": "next-exit"})
    assert r.status == 200  # answered before the start
    c.post(f"/containers/{cid}/start")
    assert json.loads(r.read())["StatusCode"] == 9
    evs = list(c.stream_json("GET", "/events", {"since": str(t0), "until": str(time.time()),
                                                "filters": json.dumps({"container": [cid]})}))
    actions = [e["Action"] for e in evs]
    assert "create" in actions and "start" in actions and "die" in actions
    c.delete(f"/containers/{cid}")


def test_jobs_endpoint_lists_finished_jobs(d):
    r = ok(d.skiff("jobs", "-a"))
    assert "container.create" in r.stdout


def test_bad_input_never_crashes_the_daemon(d):
    c = Client(d.host)
    for body in (b"{", b"[]", b'{"Image": 5}', b'{"Image": "busybox", "HostConfig": 1}'):
        resp = c.http.post("/v1.44/containers/create", content=body)
        assert resp.status_code == 400, body
    assert c.get("/_ping") == b"OK"


def test_daemon_restart_keeps_running_containers(d):
    cid = ok(d.skiff("run", "-d", "--name", "skt4c-live", "busybox", "sleep", "300")
             ).stdout.strip()
    d.stop()  # SIGTERM: the daemon goes, the container's monitor stays
    d.start()
    c = Client(d.host)
    assert c.get(f"/containers/{cid}/json")["State"]["Running"] is True
    ok(d.skiff("rm", "-f", "skt4c-live"))


def test_sigterm_is_graceful(d):
    d.stop()
    assert not d.sock.exists()  # the socket is removed on the way out
    d.start()
    assert d.ping()


def _pty_session(argv: list[str], script: list[tuple[bytes, bytes]], timeout: float = 20
                 ) -> tuple[bytes, int]:
    """Run argv on a pty; for each (wait_for, then_send) step wait for output, then type."""
    import os
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    buf = b""

    def read_until(token: bytes) -> None:
        nonlocal buf
        end = time.time() + timeout
        while token not in buf and time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    d = os.read(fd, 4096)
                except OSError:
                    return
                if not d:
                    return
                buf += d

    try:
        for wait_for, send in script:
            read_until(wait_for)
            if send:
                os.write(fd, send)
        read_until(b"\x00never")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return buf, os.waitstatus_to_exitcode(status)


def test_skiff_run_it_in_a_real_terminal(d):
    import sys

    argv = [sys.executable, "-m", "engine.client.cli", "-H", d.host, "run", "-it", "--rm",
            "busybox", "sh"]
    out, rc = _pty_session(argv, [(b"#", b"stty size; echo $((6*7))\r"), (b"42", b"exit 4\r")])
    assert b"42" in out and rc == 4


def test_skiff_detach_keys_leave_the_container_running(d):
    import sys

    argv = [sys.executable, "-m", "engine.client.cli", "-H", d.host, "run", "-it",
            "--name", "skt4c-det", "busybox", "sh"]
    out, rc = _pty_session(argv, [(b"#", b"\x10\x11")], timeout=10)
    assert rc == 0
    c = Client(d.host)
    try:
        assert c.get("/containers/skt4c-det/json")["State"]["Running"] is True
    finally:
        c.delete("/containers/skt4c-det", force=1)


def test_skiff_exec_it(d):
    import sys

    ok(d.skiff("run", "-d", "--name", "skt4c-ex", "busybox", "sleep", "300"))
    try:
        argv = [sys.executable, "-m", "engine.client.cli", "-H", d.host, "exec", "-it",
                "skt4c-ex", "sh"]
        out, rc = _pty_session(argv, [(b"#", b"tty; exit 2\r")])
        assert b"/dev/pts/" in out and rc == 2
    finally:
        d.skiff("rm", "-f", "skt4c-ex")


def test_exec_start_console_size_reaches_the_pty(d):
    # docker exec -it sends ConsoleSize with start: the pty must begin at that size, not 0x0
    c = Client(d.host)
    ok(d.skiff("run", "-d", "--name", "skt4c-cs", "busybox", "sleep", "300"))
    try:
        eid = c.post("/containers/skt4c-cs/exec", {"Cmd": ["stty", "size"], "Tty": True,
                                                   "AttachStdout": True})["Id"]
        sock, data = c.hijack(f"/exec/{eid}/start", body={"Detach": False, "Tty": True,
                                                          "ConsoleSize": [33, 101]})
        sock.settimeout(10)
        while True:
            x = sock.recv(4096)
            if not x:
                break
            data += x
        sock.close()
        assert data.strip() == b"33 101"
    finally:
        d.skiff("rm", "-f", "skt4c-cs")
