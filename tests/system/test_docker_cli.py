"""The unmodified docker CLI against a real skiffd (root, real kernel): what users judge."""

from __future__ import annotations

import os
import pty
import select
import shutil
import time

import pytest

from tests.system.daemon import Skiffd

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def d(require_root, busybox_image):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    with Skiffd("skt4a", subnet="10.204.0.0/26") as dm:
        dm.load_busybox(busybox_image)
        yield dm


def ok(r):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr}"
    return r


def test_version_and_info(d):
    out = ok(d.docker("version")).stdout
    assert "Skiff Engine" in out and "1.44" in out
    info = ok(d.docker("info", "--format", "{{.ServerVersion}} {{.DockerRootDir}}")).stdout
    assert str(d.root) in info


def test_images_and_inspect_image(d):
    out = ok(d.docker("images")).stdout
    assert "busybox" in out and "latest" in out
    ok(d.docker("inspect", "busybox"))


def test_run_rm_echo(d):
    r = ok(d.docker("run", "--rm", "busybox", "echo", "hi"))
    assert r.stdout == "hi\n"
    assert d.docker("ps", "-aq").stdout.strip() == ""


def test_run_exit_code_and_stderr(d):
    r = d.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7 and r.stdout == "out\n" and r.stderr.endswith("err\n")


def test_run_stdin(d):
    r = d.docker("run", "--rm", "-i", "busybox", "sh", "-c", "cat | wc -c", input="hello\n")
    assert r.returncode == 0 and r.stdout.strip() == "6"


def test_run_detached_ps_logs_exec_stop_rm(d):
    cid = ok(d.docker("run", "-d", "--name", "skt4a-web", "busybox", "sh", "-c",
                      "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done")
             ).stdout.strip()
    assert len(cid) == 64
    ps = ok(d.docker("ps", "--format", "{{.Names}} {{.State}}")).stdout
    assert "skt4a-web running" in ps
    for _ in range(50):
        if "started" in d.docker("logs", "skt4a-web").stdout:
            break
        time.sleep(0.1)
    assert ok(d.docker("logs", "--tail", "1", "skt4a-web")).stdout == "started\n"
    r = d.docker("exec", "skt4a-web", "sh", "-c", "echo in-exec; exit 3")
    assert r.returncode == 3 and r.stdout == "in-exec\n"
    assert ok(d.docker("exec", "-i", "skt4a-web", "cat", input="piped")).stdout == "piped"
    st = ok(d.docker("inspect", "-f", "{{.State.Running}}", "skt4a-web")).stdout.strip()
    assert st == "true"
    ok(d.docker("stop", "-t", "5", "skt4a-web"))
    assert ok(d.docker("inspect", "-f", "{{.State.Running}}", "skt4a-web")).stdout.strip() \
        == "false"
    assert "skt4a-web" in ok(d.docker("ps", "-a")).stdout
    ok(d.docker("rm", "-f", "skt4a-web"))
    assert "skt4a-web" not in d.docker("ps", "-a").stdout


def test_logs_follow_ends_with_the_container(d):
    ok(d.docker("run", "-d", "--name", "skt4a-f", "busybox", "sh", "-c",
                "for i in 1 2 3; do echo $i; sleep 0.2; done"))
    r = ok(d.docker("logs", "-f", "skt4a-f", timeout=30))
    assert r.stdout.split() == ["1", "2", "3"]
    ok(d.docker("rm", "-f", "skt4a-f"))


def test_errors_have_docker_messages(d):
    r = d.docker("inspect", "skt4a-nothing")
    assert r.returncode == 1 and "No such object" in r.stderr
    r = d.docker("rm", "skt4a-nothing")
    assert r.returncode == 1 and "No such container" in r.stderr
    r = d.docker("run", "--rm", "--memory", "1k", "busybox", "true")
    assert r.returncode == 125 and "Minimum memory limit" in r.stderr


def test_run_it_through_a_pty(d):
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("docker", ["docker", "-H", d.host, "run", "-it", "--rm", "busybox", "sh"])
    buf = b""

    def read_until(token: bytes, timeout: float = 20) -> None:
        nonlocal buf
        end = time.time() + timeout
        while token not in buf and time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    buf += os.read(fd, 4096)
                except OSError:
                    return

    try:
        read_until(b"#")
        os.write(fd, b"echo $((6*7)); tty\r")
        read_until(b"/dev/pts/")
        assert b"42" in buf and b"/dev/pts/" in buf
        os.write(fd, b"exit 3\r")
        read_until(b"\x00never", timeout=5)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 3


def test_missing_command_is_127_and_leaves_nothing(d):
    r = d.docker("run", "--rm", "busybox", "skt4a-nosuchcmd", timeout=60)
    assert r.returncode == 127 and "not found" in r.stderr
    assert d.docker("ps", "-aq").stdout.strip() == ""


def test_tty_logs_and_attach(d):
    ok(d.docker("run", "-d", "-t", "--name", "skt4a-tty", "busybox", "sh", "-c",
                "echo tty-out; sleep 300"))
    try:
        for _ in range(50):
            if "tty-out" in d.docker("logs", "skt4a-tty").stdout:
                break
            time.sleep(0.1)
        assert d.docker("logs", "skt4a-tty").stdout.strip() == "tty-out"
    finally:
        ok(d.docker("rm", "-f", "skt4a-tty"))


def test_attach_sees_new_output_and_exit_code(d):
    ok(d.docker("run", "-d", "--name", "skt4a-att", "busybox", "sh", "-c",
                "sleep 1; echo late; exit 5"))
    try:
        r = d.docker("attach", "--no-stdin", "skt4a-att", timeout=30)
        assert r.stdout == "late\n" and r.returncode == 5
    finally:
        d.docker("rm", "-f", "skt4a-att")
