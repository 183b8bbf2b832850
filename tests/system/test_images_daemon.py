"""The image verbs end to end: the docker CLI -> skiffd -> Graph -> a real registry.

skiffd runs with its fixed flags and private paths under /var/tmp/skt3-*; its network backend
is kept from starting (a bridge name no kernel accepts), so this module creates no links, nft
tables or cgroups. Stopped by pid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests import procs
from tests.system.registry import LocalRegistry

pytestmark = pytest.mark.usefixtures("require_root")


class Daemon:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="skt3-daemon-", dir="/var/tmp"))
        self.sock = self.base / "skiff.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Daemon:
        log = open(self.base / "skiffd.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.daemon.main", "-H", f"unix://{self.sock}",
             "--root", str(self.base / "root"), "--exec-root", str(self.base / "exec"),
             "--bridge", "skt3-no-such-bridge-name", "--nft-table", "skt3",
             "--cgroup-parent", "skt3", "--log-level", "warning"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2])
        for _ in range(200):
            if self.sock.exists() and self.docker("version", check=False).returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("skiffd did not start: " + (self.base / "skiffd.log").read_text())

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["docker", "-H", f"unix://{self.sock}", *args], capture_output=True,
                           text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.returncode}\n{r.stderr}")
        return r

    def stop(self) -> None:
        p, self.proc = self.proc, None
        procs.stop(p, 15)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def env(require_root, busybox_image):
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on PATH")
    with LocalRegistry() as reg:
        reg.push_docker_archive(busybox_image / "docker-save.tar", "lib/busybox:latest")
        d = Daemon().start()
        try:
            yield reg, d
        finally:
            d.stop()


def test_pull_images_inspect_push_rmi(env):
    reg, d = env
    src = f"{reg.host}/lib/busybox"
    out = d.docker("pull", src).stdout
    assert "Pull complete" in out and f"Downloaded newer image for {src}:latest" in out
    assert "Already exists" in d.docker("pull", src).stdout
    rows = d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
    assert f"{src}:latest 1.98MB" in rows
    info = json.loads(d.docker("image", "inspect", src).stdout)[0]
    assert info["Os"] == "linux" and info["RootFS"]["Type"] == "layers"
    dst = f"{reg.host}/pushed/bb:1"
    d.docker("tag", src, dst)
    out = d.docker("push", dst).stdout
    assert f"Mounted from {src}" in out and "1: digest: sha256:" in out
    out = d.docker("rmi", dst, src).stdout
    assert f"Untagged: {dst}" in out and f"Deleted: {info['Id']}" in out
    assert d.docker("images", "-q").stdout.strip() == ""


def test_save_load_import_history(env, busybox_image, tmp_path):
    _, d = env
    out = d.docker("import", str(busybox_image / "rootfs.tar"), "imp:1").stdout
    iid = out.strip()
    assert iid.startswith("sha256:")
    assert "Imported from -" in d.docker("history", "imp:1").stdout
    d.docker("save", "-o", str(tmp_path / "s.tar"), "imp:1")
    d.docker("rmi", "imp:1")
    assert d.docker("load", "-i", str(tmp_path / "s.tar")).stdout.strip() == \
        "Loaded image: imp:1"
    assert d.docker("image", "inspect", "--format", "{{.Id}}", "imp:1").stdout.strip() == iid
    d.docker("rmi", "imp:1")


def test_pull_errors_reach_the_cli(env):
    reg, d = env
    r = d.docker("pull", f"{reg.host}/nope:1", check=False)
    assert r.returncode == 1
    assert f"manifest for {reg.host}/nope:1 not found" in r.stderr
    assert d.docker("images", "-q").stdout.strip() == ""
