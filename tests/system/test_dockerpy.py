"""docker-py (the `docker` package) against a real skiffd (root, real kernel)."""

from __future__ import annotations

import pytest

from tests.system.daemon import Skiffd

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def d(require_root, busybox_image):
    docker = pytest.importorskip("docker")
    with Skiffd("skt4b", subnet="10.204.0.64/26") as dm:
        cli = dm.client()
        with open(busybox_image / "docker-save.tar", "rb") as f:
            cli.images.load(f.read())
        yield dm, cli, docker
        cli.close()


def test_version_ping(d):
    _, cli, _ = d
    assert cli.ping() is True
    assert cli.version()["ApiVersion"] == "1.44"


def test_images_list_get(d):
    _, cli, _ = d
    tags = [t for i in cli.images.list() for t in i.tags]
    assert "busybox:latest" in tags
    assert cli.images.get("busybox").id.startswith("sha256:")


def test_containers_run_output_and_remove(d):
    _, cli, _ = d
    out = cli.containers.run("busybox", ["echo", "hello"], remove=True)
    assert out == b"hello\n"


def test_run_nonzero_raises_container_error(d):
    _, cli, docker = d
    with pytest.raises(docker.errors.ContainerError) as ei:
        cli.containers.run("busybox", ["sh", "-c", "exit 4"], remove=True)
    assert ei.value.exit_status == 4


def test_detached_logs_exec_run_wait_remove(d):
    _, cli, _ = d
    c = cli.containers.run("busybox", ["sh", "-c", "echo ready; sleep 30"], detach=True,
                           name="skt4b-c1")
    try:
        r = c.exec_run(["sh", "-c", "echo from-exec; exit 2"])
        assert r.exit_code == 2 and r.output == b"from-exec\n"
        c.reload()
        assert c.status == "running"
        assert b"ready" in c.logs()
        c.kill()
        assert c.wait(timeout=30)["StatusCode"] == 137
    finally:
        c.remove(force=True)
    assert "skt4b-c1" not in [x.name for x in cli.containers.list(all=True)]


def test_not_found_errors(d):
    _, cli, docker = d
    with pytest.raises(docker.errors.NotFound):
        cli.containers.get("skt4b-none")
    with pytest.raises(docker.errors.ImageNotFound):
        cli.images.get("skt4b-none:latest")


def test_images_pull_and_remove_from_local_registry(d):
    dm, cli, _ = d
    try:
        from tests.system.registry import LocalRegistry
    except ImportError:
        pytest.skip("tests/system/registry.py not available")
    import shutil

    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        pytest.skip("docker-registry/skopeo not installed")
    from tests.images import busybox

    with LocalRegistry() as reg:
        reg.push_docker_archive(busybox.build() / "docker-save.tar", "skt4b/bb:1")
        img = cli.images.pull(f"{reg.host}/skt4b/bb", tag="1")
        assert f"{reg.host}/skt4b/bb:1" in img.tags
        cli.images.remove(f"{reg.host}/skt4b/bb:1")
        assert f"{reg.host}/skt4b/bb:1" not in [t for i in cli.images.list() for t in i.tags]
