"""skiffd as a process and network options, against the real kernel (root)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest

from tests.system.daemon import Skiffd

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def d(require_root, busybox_image):
    with Skiffd("skt8a", subnet="10.208.0.0/26") as dm:
        if shutil.which("docker") is not None:
            dm.load_busybox(busybox_image)
        yield dm


def test_restart_right_after_sigkill(d):
    """The old daemon is SIGKILLed and not yet reaped (a zombie) when the new one starts:
    its pid file and socket are stale and must not stop the new daemon."""
    old = d.proc
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    d.proc = None
    try:
        d.start(timeout=30)
        assert d.ping()
        pid = int((d.exec_root / "skiffd.pid").read_text())
        assert pid == d.proc.pid
    finally:
        old.wait(5)


def test_network_create_honours_options_labels_internal(d):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    br = "skt8anet0"
    try:
        r = d.docker("network", "create", "-o", f"com.docker.network.bridge.name={br}",
                     "--label", "a=b", "--internal", "--subnet", "10.208.0.64/26",
                     "--gateway", "10.208.0.126", "skt8anet")
        assert r.returncode == 0, r.stderr
        info = json.loads(d.docker("network", "inspect", "skt8anet").stdout)[0]
        assert info["Options"].get("com.docker.network.bridge.name") == br
        assert info["Labels"] == {"a": "b"} and info["Internal"] is True
        assert info["IPAM"]["Config"][0]["Gateway"] == "10.208.0.126"
        r = d.docker("run", "--rm", "--network", "skt8anet", "busybox", "true")
        assert r.returncode == 0, r.stderr
        assert subprocess.run(["ip", "link", "show", br], capture_output=True).returncode == 0
        assert d.docker("network", "rm", "skt8anet").returncode == 0
    finally:
        d.docker("network", "rm", "skt8anet")
        subprocess.run(["ip", "link", "del", br], capture_output=True)


def test_pull_twice_says_up_to_date_and_platform_is_passed(d, busybox_image):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    from tests.system.registry import LocalRegistry

    with LocalRegistry() as reg:
        reg.push_docker_archive(busybox_image / "docker-save.tar", "skt8/busybox:latest")
        src = f"{reg.host}/skt8/busybox"
        try:
            r = d.docker("pull", src)
            assert r.returncode == 0, r.stderr
            assert f"Status: Downloaded newer image for {src}:latest" in r.stdout
            r = d.docker("pull", "--platform", "linux/amd64", src)
            assert r.returncode == 0, r.stderr
            assert f"Status: Image is up to date for {src}:latest" in r.stdout
            assert "Downloaded newer image" not in r.stdout
            # an index with only linux/amd64: the requested platform decides the outcome
            _put_index(reg.url, "skt8/busybox", "latest", "multi")
            r = d.docker("pull", "--platform", "linux/arm64", f"{src}:multi")
            assert r.returncode != 0 and "arm64" in r.stderr, (r.stdout, r.stderr)
            r = d.docker("pull", "--platform", "linux/amd64", f"{src}:multi")
            assert r.returncode == 0, r.stderr
        finally:
            d.docker("rmi", "-f", f"{src}:latest", f"{src}:multi")


def _put_index(url: str, repo: str, tag: str, new_tag: str) -> None:
    """Tag `new_tag` as an OCI index holding `tag`'s manifest for linux/amd64 only."""
    import httpx

    accept = ("application/vnd.oci.image.manifest.v1+json,"
              "application/vnd.docker.distribution.manifest.v2+json")
    r = httpx.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": accept})
    r.raise_for_status()
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": r.headers["content-type"].split(";")[0],
                            "digest": r.headers["docker-content-digest"],
                            "size": len(r.content),
                            "platform": {"os": "linux", "architecture": "amd64"}}]}
    r = httpx.put(f"{url}/v2/{repo}/manifests/{new_tag}", content=json.dumps(index).encode(),
                  headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    r.raise_for_status()
