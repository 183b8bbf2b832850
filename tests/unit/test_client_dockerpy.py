"""docker-py (the `docker` package) against skiffd's router and fake backends: the wire shapes
docker-py relies on (hijack, multiplexed frames, wait, errors), without root."""

from __future__ import annotations

import pytest

docker = pytest.importorskip("docker")

from engine.daemon.fakes import fake_daemon  # noqa: E402


@pytest.fixture
def cli():
    with fake_daemon() as (path, b):
        b.images.pull("busybox:latest")
        c = docker.DockerClient(base_url="unix://" + path, version="auto", timeout=20)
        yield c, b
        c.close()


def test_ping_version(cli):
    c, _ = cli
    assert c.ping() is True
    assert c.version()["ApiVersion"] == "1.44"
    assert c.api.api_version == "1.44"


def test_containers_run_logs_remove(cli):
    c, b = cli
    assert c.containers.run("busybox", ["echo", "hello"], remove=True) == b"hello\n"
    assert b.containers.cs == {}


def test_containers_run_error(cli):
    c, _ = cli
    with pytest.raises(docker.errors.ContainerError) as ei:
        c.containers.run("busybox", ["exit", "3"])
    assert ei.value.exit_status == 3


def test_detached_exec_run_wait_remove(cli):
    c, _ = cli
    ct = c.containers.run("busybox", ["sleep"], detach=True, name="dp1")
    r = ct.exec_run(["echo", "x"])
    assert r.exit_code == 0 and r.output == b"x\n"
    assert ct.exec_run(["exit", "2"]).exit_code == 2
    ct.kill()
    assert ct.wait()["StatusCode"] == 137
    ct.remove()
    assert c.containers.list(all=True) == []


def test_attach_socket_stdin(cli):
    c, _ = cli
    ct = c.containers.create("busybox", ["cat"], stdin_open=True)
    ct.start()
    s = ct.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    s._sock.sendall(b"ping")
    data = b""
    while len(data) < 12:
        data += s._sock.recv(100)
    assert data == b"\x01\x00\x00\x00\x00\x00\x00\x04ping"
    s.close()


def test_errors_map_to_docker_py_exceptions(cli):
    c, _ = cli
    with pytest.raises(docker.errors.NotFound):
        c.containers.get("nope")
    with pytest.raises(docker.errors.ImageNotFound):
        c.images.get("nope")
    with pytest.raises(docker.errors.APIError) as ei:
        c.containers.create("busybox", name="bad name")
    assert ei.value.status_code == 400


def test_images_pull_list_remove(cli):
    c, _ = cli
    img = c.images.pull("slow", tag="latest")
    assert "slow:latest" in img.tags
    assert {"busybox:latest", "slow:latest"} <= {t for i in c.images.list() for t in i.tags}
    c.images.remove("slow:latest")
    assert "slow:latest" not in {t for i in c.images.list() for t in i.tags}


def test_events_and_networks_volumes(cli):
    import time

    c, _ = cli
    t0 = time.time()
    c.containers.run("busybox", ["true"], remove=True)
    evs = list(c.events(since=t0, until=time.time() + 0.5, decode=True,
                        filters={"type": "container"}))
    assert [e["Action"] for e in evs][:2] == ["create", "start"]
    assert {n.name for n in c.networks.list()} == {"bridge", "host", "none"}
    v = c.volumes.create("dpv")
    assert v.name == "dpv" and [x.name for x in c.volumes.list()] == ["dpv"]
    v.remove()


def test_old_api_version_1_24_still_works():
    with fake_daemon() as (path, b):
        b.images.pull("busybox:latest")
        c = docker.DockerClient(base_url="unix://" + path, version="1.24", timeout=20)
        try:
            assert c.containers.run("busybox", ["echo", "old"], remove=True) == b"old\n"
            assert c.api.inspect_image("busybox")["RepoTags"] == ["busybox:latest"]
        finally:
            c.close()


def test_logs_requested_before_a_removal_still_stream():
    """docker-py's run(remove=True) asks for logs, waits, removes, then reads the logs: the
    daemon must have looked the container up when it answered, not when it first reads."""
    from engine.daemon import fakes

    with fake_daemon() as (path, b):
        b.images.pull("busybox:latest")
        c = docker.DockerClient(base_url="unix://" + path, version="1.24", timeout=20)
        try:
            ct = c.containers.create("busybox", ["echo", "late"])
            ct.start()
            logs = ct.logs(stream=True, follow=True)
            ct.remove()
            assert b"".join(logs) == b"late\n"
            # the same contract on the backend itself, without the thread timing
            ct = c.containers.create("busybox", ["echo", "later"])
            ct.start()
            it = b.containers.logs(ct.id, stdout=True, stderr=True, follow=True, since=0,
                                   until=0, timestamps=False, tail="all")
            ct.remove()
            assert b"".join(it) == fakes._frame(1, b"later\n")
        finally:
            c.close()
