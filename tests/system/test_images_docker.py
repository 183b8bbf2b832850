"""Interop with the real thing: Debian's dockerd 20.10 reads what Skiff writes and back.

A private dockerd (own --data-root/--exec-root/-H, no iptables, no bridge) pulls an image Skiff
pushed, `docker save` output loads into Skiff with the same image ID, and Skiff's save output
`docker load`s. Skipped where dockerd is not installed (it is not in scripts/bootstrap).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from engine.graph import Graph
from tests import procs
from tests.system.registry import LocalRegistry

pytestmark = pytest.mark.usefixtures("require_root")


class PrivateDockerd:
    def __init__(self, registry: str) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="skt3-dockerd-", dir="/var/tmp"))
        self.sock = self.base / "docker.sock"
        self.registry = registry
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateDockerd:
        log = open(self.base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.base / "root"), "--exec-root",
             str(self.base / "exec"), "--pidfile", str(self.base / "dockerd.pid"),
             "-H", f"unix://{self.sock}", "--storage-driver", "overlay2", "--iptables=false",
             "--ip-forward=false", "--ip-masq=false", "--bridge=none",
             "--insecure-registry", self.registry],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        for _ in range(300):
            if self.sock.exists() and self.docker("version", check=False).returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("dockerd did not start")

    def docker(self, *args: str, check: bool = True, stdin=None) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", f"unix://{self.sock}", *args], check=check,
                              capture_output=True, stdin=stdin, timeout=120)

    def stop(self) -> None:
        p, self.proc = self.proc, None
        procs.stop(p, 30)
        procs.unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def env():
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with LocalRegistry() as reg:
        d = PrivateDockerd(reg.host).start()
        try:
            yield reg, d
        finally:
            d.stop()


@pytest.fixture
def graph():
    root = Path(tempfile.mkdtemp(prefix="skt3-graph-", dir="/var/tmp"))
    g = Graph(root)
    yield g
    g.close(unmount=True)
    shutil.rmtree(root, ignore_errors=True)


def test_dockerd_pulls_what_skiff_pushed(env, graph, busybox_image):
    reg, d = env
    with open(busybox_image / "docker-save.tar", "rb") as f:
        graph.load(f)
    ref = f"{reg.host}/interop/pushed:1"
    graph.tag("busybox:latest", ref)
    res = graph.push(ref)
    d.docker("pull", ref)
    info = json.loads(d.docker("image", "inspect", ref).stdout)[0]
    assert info["Id"] == graph.get("busybox").id
    assert info["RepoDigests"] == [f"{reg.host}/interop/pushed@{res['Digest']}"]


def test_docker_save_loads_into_skiff(env, graph, busybox_image, tmp_path):
    _, d = env
    with open(busybox_image / "docker-save.tar", "rb") as f:
        d.docker("load", stdin=f)
    d.docker("tag", "busybox:latest", "interop/saved:2")
    d.docker("save", "-o", str(tmp_path / "d.tar"), "interop/saved:2")
    with open(tmp_path / "d.tar", "rb") as f:
        assert graph.load(f) == ["Loaded image: interop/saved:2"]
    want = json.loads(d.docker("image", "inspect", "interop/saved:2").stdout)[0]["Id"]
    assert graph.get("interop/saved:2").id == want


def test_skiff_save_loads_into_docker(env, graph, busybox_image, tmp_path):
    _, d = env
    with open(busybox_image / "rootfs.tar", "rb") as f:
        img = graph.import_tar(f, "interop/imported:3", ['CMD ["sh"]'])
    with open(tmp_path / "s.tar", "wb") as f:
        graph.save(["interop/imported:3"], f)
    with open(tmp_path / "s.tar", "rb") as f:
        out = d.docker("load", stdin=f).stdout.decode()
    assert "interop/imported:3" in out
    info = json.loads(d.docker("image", "inspect", "interop/imported:3").stdout)[0]
    assert info["Id"] == img.id and info["Config"]["Cmd"] == ["sh"]
