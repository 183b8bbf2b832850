"""A real distribution registry for tests: Debian's `docker-registry serve` on 127.0.0.1.

    from tests.system.registry import LocalRegistry, local_registry   # the fixture

    with LocalRegistry() as reg:            # storage in a fresh temp dir, a free port
        reg.push_docker_archive(tar, "busybox:latest")   # skopeo copy, v2s2
        reg.push_oci_layout(oci_dir, "busybox:latest", "app:1")   # skopeo copy, OCI
        reg.host                            # "127.0.0.1:PORT" (dockerd/skiff: insecure by default)
        reg.blob_path(digest)               # the stored blob file (to corrupt it in fault tests)
        reg.stop(); reg.start()             # same port, same storage

The process is started by this helper and stopped by its pid only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import procs

REGISTRY_BIN = "docker-registry"
CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRegistry:
    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        if shutil.which(REGISTRY_BIN) is None:
            raise RuntimeError("docker-registry is not installed: run scripts/bootstrap")
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="skiff-registry-"))
        self.storage = self.root / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = self.root / "config.yml"
        self.config.write_text(CONFIG.format(storage=self.storage, port=self.port))
        self.proc: subprocess.Popen | None = None
        self.log = self.root / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 10.0) -> LocalRegistry:
        if self.proc and self.proc.poll() is None:
            return self
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not become ready")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        procs.stop(p, 5)

    def kill(self) -> None:
        """SIGKILL by pid: a registry that dies mid-transfer."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- content -------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def repo_dir(self, repo: str) -> Path:
        return self.storage / "docker/registry/v2/repositories" / repo

    def skopeo(self, src: str, name: str, fmt: str | None = None, *extra: str) -> None:
        argv = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        if fmt:
            argv += ["--format", fmt]
        argv += [*extra, src, f"docker://{self.host}/{name}"]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def push_docker_archive(self, tar: Path, name: str) -> None:
        """skopeo copy docker-archive: -> a docker schema2 manifest."""
        self.skopeo(f"docker-archive:{tar}", name, "v2s2")

    def push_oci_layout(self, layout: Path, ref_name: str, name: str | None = None,
                        *, keep_index: bool = False) -> None:
        """skopeo copy oci: -> an OCI manifest (or, with keep_index, the whole index)."""
        extra = ("--multi-arch", "all") if keep_index else ()
        self.skopeo(f"oci:{layout}:{ref_name}", name or ref_name, None if keep_index else "oci",
                    *extra)


@pytest.fixture
def local_registry(require_root: None):
    """A running registry on a free port, removed afterwards (also when the test fails)."""
    reg = LocalRegistry()
    try:
        yield reg.start()
    finally:
        reg.close()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1:<free port> in front of a registry that can cut transfers.

    With `cut_after = N`, each connection is shut down once N bytes of response went through:
    a registry that stops mid-download, deterministically. `cut_after = None` forwards all.
    """

    def __init__(self, upstream_port: int, cut_after: int | None = None) -> None:
        import threading

        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.port = free_port()
        self.cuts = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(16)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> CuttingProxy:
        self._thread.start()
        return self

    def _accept(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            self._conns += [client, up]
            threading.Thread(target=self._pump, args=(client, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, response: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                limit = self.cut_after if response else None
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[: max(0, limit - sent)])
                    self.cuts += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for s in self._conns:
            try:
                s.close()
            except OSError:
                pass
        self._thread.join(2)

    def __enter__(self) -> CuttingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
