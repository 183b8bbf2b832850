"""Pull + extract of a ~110 MB multi-layer image from a local registry: Skiff vs dockerd vs skopeo.

    python -m bench pull [--runs N] [--warmup N] [--out docs/bench-pull.md]

Needs root, docker-registry, skopeo and Debian's docker.io (dockerd 20.10). One registry on
127.0.0.1 serves the image (tests/images/debs.py: busybox + 4 Debian packages, one layer each,
pushed once with skopeo as docker schema2). Each round, interleaved:
  skiff    a fresh `python -c` process: Graph(<new empty root>, "overlay").pull(...)
  dockerd  `docker pull` against a private dockerd (own --data-root/--exec-root/-H, no
           iptables/bridge), after `docker rmi` left its layer store empty
  skopeo   `skopeo copy docker://... oci:<new dir>` (download only, no extraction)
Every case starts from a cold store. The dockerd is stopped by pid and its dirs removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import interleave, table
from tests import procs

REPO = Path(__file__).resolve().parent.parent
STATE = Path("/var/tmp/skt3-bench")
IMAGE = "bench/debs:latest"

SKIFF_PULL = (
    "import sys; from pathlib import Path; from engine.graph import Graph; "
    "g = Graph(Path(sys.argv[1]), 'overlay'); g.pull(sys.argv[2]); g.close()"
)


class Dockerd:
    """A private dockerd: its own root, exec root and socket; stopped by pid."""

    def __init__(self, base: Path, registry: str) -> None:
        self.base = base
        self.sock = base / "docker.sock"
        self.proc: subprocess.Popen | None = None
        self.registry = registry

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.base / "root"), "--exec-root",
             str(self.base / "exec"), "--pidfile", str(self.base / "dockerd.pid"),
             "-H", f"unix://{self.sock}", "--storage-driver", "overlay2",
             "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
             "--insecure-registry", self.registry, "--max-concurrent-downloads", "3"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        for _ in range(300):
            if self.sock.exists() and self.docker("version", check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dockerd did not start: {(self.base / 'dockerd.log').read_text()}")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", f"unix://{self.sock}", *args], check=check,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        p, self.proc = self.proc, None
        procs.stop(p, 30)
        procs.unmount_under(self.base)  # overlay mounts dockerd may have left under its root
        shutil.rmtree(self.base, ignore_errors=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench pull", description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench-pull.md")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench pull: needs root", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from tests.images import debs
    from tests.system.registry import LocalRegistry

    img_dir = debs.build()
    STATE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=STATE))
    reg = LocalRegistry(root=work / "registry")
    dockerd = None
    try:
        reg.start()
        reg.push_docker_archive(img_dir / "docker-save.tar", IMAGE)
        ref = f"{reg.host}/{IMAGE}"
        dockerd = Dockerd(work / "dockerd", reg.host)
        dockerd.start()
        targets = {"skiff": work / "skiff", "skopeo": work / "skopeo"}

        def setup(name: str) -> None:
            if name in targets:
                shutil.rmtree(targets[name], ignore_errors=True)
            elif name == "dockerd":
                dockerd.docker("rmi", "-f", ref, check=False)
                dockerd.docker("image", "prune", "-af", check=False)
            subprocess.run(["sync"], check=False)

        py = sys.executable
        targets["skiff-api"] = work / "skiff-api"

        def skiff_api() -> None:
            from engine.graph import Graph

            g = Graph(targets["skiff-api"], "overlay")
            g.pull(ref)
            g.close()

        cases = {
            "skiff": lambda: subprocess.run([py, "-c", SKIFF_PULL, str(targets["skiff"]), ref],
                                            check=True, cwd=REPO),
            "skiff-api": skiff_api,
            "dockerd": lambda: dockerd.docker("pull", "-q", ref),
            "skopeo": lambda: subprocess.run(
                ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                 f"docker://{ref}", f"oci:{targets['skopeo']}:latest"],
                check=True, stdout=subprocess.DEVNULL),
        }
        load0 = os.getloadavg()
        series = interleave(cases, args.runs, args.warmup, setup)
        load1 = os.getloadavg()
        size = sum(p.stat().st_size for p in (img_dir / "oci" / "blobs" / "sha256").iterdir())
        md = table(series, baseline="dockerd", unit="ms")
        header = (
            "# Pull + extract benchmark (bench/pull.py)\n\n"
            f"Image: tests/images/debs.py ({debs.NAME}: busybox + {', '.join(debs.PACKAGES)}; "
            f"{len(debs.PACKAGES) + 1} layers, ~110 MB unpacked, {size / 1e6:.0f} MB in its OCI "
            "layout), pushed once to Debian's docker-registry 2.8 on 127.0.0.1 with skopeo "
            "(docker schema2, gzip).\n"
            f"{args.runs} interleaved rounds after {args.warmup} warm-up round(s), cold store "
            "for every run. skiff = a new Python process doing Graph(root, 'overlay').pull() "
            "(interpreter start and imports included); skiff-api = the same call in the "
            "benchmark's process (what the daemon pays); dockerd = `docker pull` against Debian's "
            "dockerd 20.10 (overlay2, max 3 concurrent downloads) after `docker rmi`; skopeo = "
            "`skopeo copy` to an OCI layout (download and verify only, no extraction).\n"
            f"Machine: {os.cpu_count()} CPUs, shared with other work; load average "
            f"{load0[0]:.1f} before, {load1[0]:.1f} after. Compare the ratios, not the "
            "absolute times.\n\n"
        )
        text = header + md + "\n"
        print(text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    finally:
        if dockerd is not None:
            dockerd.stop()
        reg.close()
        shutil.rmtree(work, ignore_errors=True)
        try:
            STATE.rmdir()
        except OSError:
            pass
    return 0
