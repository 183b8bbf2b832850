"""Start a real `skiffd` for system tests, with every kernel-visible name under one prefix.

    from tests.system.daemon import Skiffd

    with Skiffd("skt4", subnet="10.204.0.0/24") as d:   # root, exec-root, socket, bridge,
        d.docker("run", "--rm", "busybox", "true")     # nft table, cgroup parent: skt4*
        d.skiff("ps", "-a")
        d.client()                                      # docker-py DockerClient
        d.load_busybox(busybox_dir)                     # docker load of the test image

State lives in /var/lib/<prefix>-<n>, sockets and runtime state in /run/<prefix>-<n>/. The daemon
is stopped by its pid (SIGTERM, then SIGKILL); `cleanup()` then removes the containers it left,
the state directories, the bridge, the nft table and the cgroup parent it was given, and nothing
else. Use one prefix per test module so that modules never share kernel objects.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_seq = itertools.count()



def until(cond, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `cond` with a wall-clock deadline (the VM under TCG is many times slower than
    this machine: a fixed number of tries is not enough there)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)

class Skiffd:
    def __init__(self, prefix: str = "skt4", *, subnet: str = "10.204.0.0/24",
                 bridge: str | None = None, storage_driver: str | None = None,
                 log_level: str = "info", extra_args: tuple[str, ...] = ()) -> None:
        n = f"{os.getpid() % 10000}{next(_seq)}"
        self.prefix = prefix
        self.root = Path(f"/var/lib/{prefix}-{n}")
        self.exec_root = Path(f"/run/{prefix}-{n}")
        self.sock = self.exec_root / "skiff.sock"
        self.host = f"unix://{self.sock}"
        self.bridge = bridge or f"{prefix}br0"[:15]
        self.subnet = subnet
        self.table = prefix
        self.cgroup_parent = prefix
        self.storage_driver = storage_driver
        self.log_level = log_level
        self.extra_args = extra_args
        self.log = Path(f"/tmp/{prefix}-{n}-skiffd.log")
        self.proc: subprocess.Popen | None = None

    # process ----------------------------------------------------------------------------
    def argv(self) -> list[str]:
        a = [sys.executable, "-m", "engine.daemon.main", "-H", self.host,
             "--root", str(self.root), "--exec-root", str(self.exec_root),
             "--bridge", self.bridge, "--bridge-subnet", self.subnet,
             "--nft-table", self.table, "--cgroup-parent", self.cgroup_parent,
             "--pidfile", str(self.exec_root / "skiffd.pid"), "--log-level", self.log_level]
        if self.storage_driver:
            a += ["--storage-driver", self.storage_driver]
        return a + list(self.extra_args)

    def start(self, timeout: float = 30.0) -> Skiffd:
        self.exec_root.mkdir(parents=True, exist_ok=True)
        repo = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(self.argv(), stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, env=env, cwd=repo,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiffd exited {self.proc.returncode}:\n{self.log_tail()}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"skiffd did not answer within {timeout}s:\n{self.log_tail()}")

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by pid (containers keep running), SIGKILL after the timeout."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def kill(self) -> None:
        """SIGKILL the daemon (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> Skiffd:
        self.stop()
        return self.start()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # clients ----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_HOST=self.host, SKIFF_HOST=self.host)

    def docker(self, *args: str, input: bytes | str | None = None, check: bool = False,
               timeout: float = 120) -> subprocess.CompletedProcess:
        """The real docker CLI (on PATH) against this daemon."""
        return subprocess.run(["docker", "-H", self.host, *args], input=input,
                              capture_output=True, text=not isinstance(input, bytes),
                              timeout=timeout, check=check)

    def skiff(self, *args: str, input: bytes | str | None = None, check: bool = False,
              timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine.client.cli", "-H", self.host,
                               *args], input=input, capture_output=True,
                              text=not isinstance(input, bytes), timeout=timeout, check=check,
                              cwd=str(Path(__file__).resolve().parents[2]))

    def client(self, version: str = "auto"):
        import docker

        return docker.DockerClient(base_url=self.host, version=version, timeout=120)

    def load_busybox(self, image_dir: Path) -> None:
        # Through the docker CLI where there is one, else through skiff (the VM has no docker CLI).
        load = self.docker if shutil.which("docker") else self.skiff
        r = load("load", "-i", str(Path(image_dir) / "docker-save.tar"))
        if r.returncode != 0:
            raise RuntimeError(f"docker load failed: {r.stderr}\n{self.log_tail()}")

    # cleanup ----------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove what this daemon made: containers, state dirs, bridge, nft table, cgroups."""
        if self.proc is None and (self.root / "containers").exists():
            with contextlib.suppress(Exception):
                self.start()
        if self.proc is not None:
            with contextlib.suppress(Exception):
                ids = self.docker("ps", "-aq", timeout=30).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, timeout=60)
        self.stop()
        self._kill_leftover_monitors()
        _umount_under(self.root)
        _umount_under(self.exec_root)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", self.table], capture_output=True)
        for base in Path("/sys/fs/cgroup").glob("*"):
            _rm_cgroup_tree(base / self.cgroup_parent)
        with contextlib.suppress(OSError):
            self.log.unlink()

    def _kill_leftover_monitors(self) -> None:
        """Processes whose command line names this daemon's state dirs (its monitors)."""
        mine = (str(self.root), str(self.exec_root))
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m + "/" in cmd or cmd.rstrip().endswith(m) for m in mine):
                with contextlib.suppress(OSError):
                    os.kill(int(d.name), signal.SIGKILL)

    def __enter__(self) -> Skiffd:
        try:
            return self.start()
        except Exception:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _umount_under(path: Path) -> None:
    p = str(path)
    try:
        mounts = [ln.split()[1] for ln in open("/proc/self/mounts")]
    except OSError:
        return
    for m in sorted((m for m in mounts if m == p or m.startswith(p + "/")), key=len,
                    reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def _rm_cgroup_tree(path: Path) -> None:
    if not path.is_dir():
        return
    for child in sorted((c for c in path.rglob("*") if c.is_dir()), key=lambda c: -len(str(c))):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()
