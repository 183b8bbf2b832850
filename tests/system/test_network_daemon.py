"""Published ports end to end: the unmodified docker CLI against skiffd (root).

The daemon runs with its own root, socket, bridge (skt5br8, 10.205.8.0/24), nft table and
cgroup parent; the test checks `-p` from the CLI, docker's conflict wording, `docker port`,
a SIGKILLed daemon (with its table lost) coming back with the mapping working, and that `rm`
leaves no rule behind. Everything is removed in the finalizer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from .test_network_support import dnat_rules, leftovers, nft_table

pytestmark = pytest.mark.root

BRIDGE, TABLE, CGROUP = "skt5br8", "skt5dt", "skt5dt"
PORT = 18095


class Daemon:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = base / "d.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "engine.daemon.main",
            "-H",
            f"unix://{self.sock}",
            "--root",
            str(self.base / "root"),
            "--exec-root",
            str(self.base / "exec"),
            "--bridge",
            BRIDGE,
            "--bridge-subnet",
            "10.205.8.0/24",
            "--nft-table",
            TABLE,
            "--cgroup-parent",
            CGROUP,
            "--storage-driver",
            "vfs",
        ]
        self.proc = subprocess.Popen(
            argv,
            stdout=open(self.base / "daemon.log", "a"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.docker("version", check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError((self.base / "daemon.log").read_text()[-2000:])

    def kill(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        r = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.returncode} {r.stderr}")
        return r


def _rm_cgroups(name: str) -> None:
    root = Path("/sys/fs/cgroup")
    for base in [root / name, *root.glob(f"*/{name}")]:
        if base.is_dir():
            for d in sorted(base.rglob("*"), key=lambda p: -len(p.parts)):
                if d.is_dir():
                    d.rmdir()
            base.rmdir()


@pytest.fixture
def daemon(require_root, busybox_image):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    fwd = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    base = Path(f"/var/tmp/skt5-dt-{uuid.uuid4().hex[:8]}")
    base.mkdir(parents=True)
    d = Daemon(base)
    try:
        d.start()
        d.docker("load", "-i", str(busybox_image / "docker-save.tar"))
        yield d
    finally:
        try:
            if d.proc is not None:
                for name in ("skt5web", "skt5web2", "skt5pub"):
                    d.docker("rm", "-f", name, check=False)
            d.kill(signal.SIGTERM)
        finally:
            subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
            for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
                if line.split()[1].startswith(str(base)):
                    subprocess.run(["umount", "-l", line.split()[1]], capture_output=True)
            _rm_cgroups(CGROUP)
            shutil.rmtree(base, ignore_errors=True)
            Path("/proc/sys/net/ipv4/ip_forward").write_text(fwd)
    assert [x for x in leftovers() if BRIDGE in x or TABLE in x] == []


def get(url: str) -> str:
    try:
        return urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError as e:
        return f"ERR {e}"


def test_docker_cli_publish_conflict_restart_rm(daemon):
    daemon.docker(
        "run",
        "-d",
        "--name",
        "skt5web",
        "-p",
        f"{PORT}:80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    )
    assert daemon.docker("port", "skt5web").stdout.strip() == f"80/tcp -> 0.0.0.0:{PORT}"
    assert "root:x:0:0" in get(f"http://127.0.0.1:{PORT}/passwd")
    r = daemon.docker(
        "run",
        "-d",
        "--name",
        "skt5web2",
        "-p",
        f"{PORT}:80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        check=False,
    )
    assert r.returncode == 125
    assert f"Bind for 0.0.0.0:{PORT} failed: port is already allocated" in r.stderr
    ip = daemon.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "skt5web").stdout.strip()
    assert dnat_rules(TABLE) == [("tcp", PORT, ip, 80)]
    # the daemon dies hard and its table is lost; the restarted daemon rebuilds it
    daemon.kill(signal.SIGKILL)
    subprocess.run(["nft", "delete", "table", "ip", TABLE], check=True)
    time.sleep(0.5)
    daemon.start()
    assert dnat_rules(TABLE) == [("tcp", PORT, ip, 80)]
    assert "root:x:0:0" in get(f"http://127.0.0.1:{PORT}/passwd")
    # -P with an exposed port takes a free port from ip_local_port_range
    daemon.docker(
        "run",
        "-d",
        "--name",
        "skt5pub",
        "-P",
        "--expose",
        "80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    )
    line = daemon.docker("port", "skt5pub", "80/tcp").stdout.strip().splitlines()[0]
    eph = int(line.rsplit(":", 1)[1])
    lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert lo <= eph <= hi
    assert "root:x:0:0" in get(f"http://127.0.0.1:{eph}/passwd")
    daemon.docker("rm", "-f", "skt5web", "skt5web2", "skt5pub")
    assert dnat_rules(TABLE) == []
    assert nft_table(TABLE) is not None  # the table stays, empty of mappings
    assert get(f"http://127.0.0.1:{PORT}/passwd").startswith("ERR")
