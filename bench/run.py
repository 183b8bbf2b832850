"""`python -m bench run [--runs N] [--concurrent N] [--out docs/bench-daemon.md]` (root).

The same docker CLI drives skiffd and Debian's dockerd, interleaved run by run, so machine
noise hits both alike: `docker run --rm busybox true` on each, `skiff run --rm` on skiffd,
N containers started concurrently on each, and each daemon's idle memory. Everything the
benchmark creates is named after --prefix (default skt4: state dirs, sockets, bridges, nft
table, cgroups) and removed at the end; dockerd is started with iptables/ip-forward/masquerade
off on its own bridge. --subnet (a /24) is split: skiffd's bridge gets the lower half, dockerd's
the upper.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Series, interleave, table

REPO = Path(__file__).resolve().parent.parent
KEEP_FROM = "## Where the time goes"  # from this heading on, the output file is kept as it is


def run_cmd(argv: list[str], **kw) -> Callable[[], None]:
    """Like bench.common.run_cmd, but a failure shows the command's stderr."""
    def go() -> None:
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           **kw)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} -> {r.returncode}: {r.stderr.strip()}")

    return go


def rss_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


class Dockerd:
    """Debian's dockerd with its own dirs, socket and bridge; stopped by pid."""

    def __init__(self, prefix: str = "skt4", bridge_addr: str = "10.204.0.129/25") -> None:
        self.proc: subprocess.Popen | None = None
        self.root = Path(f"/var/lib/{prefix}-dockerd")
        self.exec_root = Path(f"/run/{prefix}-dockerd")
        self.bridge = f"{prefix}dbr0"[:15]
        self.bridge_addr = bridge_addr
        self.host = f"unix://{self.exec_root / 'docker.sock'}"
        self.log = Path(f"/tmp/{prefix}-dockerd.log")

    def start(self) -> None:
        self.exec_root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", self.bridge_addr, "dev", self.bridge],
                       check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root), "--exec-root", str(self.exec_root),
             "--pidfile", str(self.exec_root / "dockerd.pid"), "-H", self.host,
             "--storage-driver", "overlay2", "--iptables=false", "--ip-forward=false",
             "--ip-masq=false", "--bridge", self.bridge, "--userland-proxy=false"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(300):
            if subprocess.run(["docker", "-H", self.host, "version"],
                              capture_output=True).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("dockerd did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                ids = subprocess.run(["docker", "-H", self.host, "ps", "-aq"],
                                     capture_output=True, text=True, timeout=60).stdout.split()
                if ids:
                    subprocess.run(["docker", "-H", self.host, "rm", "-f", *ids],
                                   capture_output=True, timeout=120)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        for m in sorted((ln.split()[1] for ln in open("/proc/self/mounts")
                         if ln.split()[1].startswith((str(self.root), str(self.exec_root)))),
                        key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        with contextlib.suppress(OSError):
            self.log.unlink()

    def idle_rss(self) -> tuple[int, int]:
        """(dockerd alone, dockerd + its containerd) in kB."""
        assert self.proc is not None
        d = rss_kb(self.proc.pid)
        return d, d + sum(rss_kb(c) for c in children(self.proc.pid))


def concurrent_runs(host: str, n: int, tag: str) -> float:
    """Seconds until n `docker run -d` started concurrently have all returned."""
    def one(i: int) -> str:
        r = subprocess.run(["docker", "-H", host, "run", "-d", "--name", f"{tag}{i}",
                            "busybox", "sleep", "120"], capture_output=True, text=True,
                           timeout=300)
        return "" if r.returncode == 0 else r.stderr.strip()

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        errors = [e for e in ex.map(one, range(n)) if e]
    dt = time.perf_counter() - t0
    for e in sorted(set(errors)):
        print(f"warning: {tag}: {errors.count(e)} failed: {e}", file=sys.stderr)
    ids = subprocess.run(["docker", "-H", host, "ps", "-aq"], capture_output=True,
                         text=True).stdout.split()
    running = len(subprocess.run(["docker", "-H", host, "ps", "-q"], capture_output=True,
                                 text=True).stdout.split())
    if running != n:
        print(f"warning: {tag}: {running}/{n} running", file=sys.stderr)
    if ids:
        subprocess.run(["docker", "-H", host, "rm", "-f", *ids], capture_output=True,
                       timeout=300)
    return dt


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench run")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--concurrent", type=int, default=50)
    p.add_argument("--out", default=str(REPO / "docs" / "bench-daemon.md"))
    p.add_argument("--prefix", default="skt4", help="name prefix of everything created")
    p.add_argument("--subnet", default="10.204.0.0/24",
                   help="a /24: skiffd gets its lower half, dockerd its upper")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench run: needs root", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    from tests.images import busybox
    from tests.system.daemon import Skiffd

    img = busybox.build() / "docker-save.tar"
    load_before = os.getloadavg()[0]
    import ipaddress

    lower, upper = ipaddress.IPv4Network(a.subnet).subnets(new_prefix=25)
    skiffd = Skiffd(f"{a.prefix}bench", subnet=str(lower), bridge=f"{a.prefix}sbr0"[:15])
    dockerd = Dockerd(a.prefix, f"{upper.network_address + 1}/25")
    try:
        skiffd.start()
        dockerd.start()
        for host in (skiffd.host, dockerd.host):
            subprocess.run(["docker", "-H", host, "load", "-i", str(img)], check=True,
                           capture_output=True)
        time.sleep(2)
        sk_rss_idle = rss_kb(skiffd.proc.pid)  # type: ignore[union-attr]
        dk_rss, dk_rss_all = dockerd.idle_rss()
        skiff_cli = [sys.executable, "-m", "engine.client.cli", "-H", skiffd.host]
        # an installed skiff has byte-compiled modules: let the warm-up rounds write them
        cli_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cases = {
            "docker run --rm (dockerd)": run_cmd(["docker", "-H", dockerd.host, "run", "--rm",
                                                  "busybox", "true"]),
            "docker run --rm (skiffd)": run_cmd(["docker", "-H", skiffd.host, "run", "--rm",
                                                 "busybox", "true"]),
            "skiff run --rm (skiffd)": run_cmd([*skiff_cli, "run", "--rm", "busybox", "true"],
                                               cwd=str(REPO), env=cli_env),
            "docker run --rm --network none (dockerd)": run_cmd(
                ["docker", "-H", dockerd.host, "run", "--rm", "--network", "none", "busybox",
                 "true"]),
            "docker run --rm --network none (skiffd)": run_cmd(
                ["docker", "-H", skiffd.host, "run", "--rm", "--network", "none", "busybox",
                 "true"]),
        }
        print(f"run --rm: {a.runs} interleaved rounds", file=sys.stderr)
        series = interleave(cases, a.runs)
        conc: list[Series] = []
        for name, host, tag in (("dockerd", dockerd.host, f"{a.prefix}bd"),
                                ("skiffd", skiffd.host, f"{a.prefix}bs")):
            s = Series(f"{a.concurrent} x docker run -d, concurrent ({name})")
            s.samples.append(concurrent_runs(host, a.concurrent, tag))
            conc.append(s)
        time.sleep(2)  # idle again, as after the load
        sk_rss_after = rss_kb(skiffd.proc.pid)  # type: ignore[union-attr]
        dk_rss_after, dk_rss_all_after = dockerd.idle_rss()
    except Exception:
        print("skiffd log:\n" + skiffd.log_tail(), file=sys.stderr)
        raise
    finally:
        dockerd.stop()
        skiffd.cleanup()

    run_table = table(series, "docker run --rm (dockerd)")
    conc_table = table(conc, conc[0].name)
    mem = ["| daemon | idle RSS after load (MB) | idle RSS after the benchmark (MB) |",
           "|---|---|---|",
           f"| skiffd | {sk_rss_idle / 1024:.1f} | {sk_rss_after / 1024:.1f} |",
           f"| dockerd | {dk_rss / 1024:.1f} | {dk_rss_after / 1024:.1f} |",
           f"| dockerd + containerd | {dk_rss_all / 1024:.1f} | {dk_rss_all_after / 1024:.1f} |"]
    ratio = series[1].median / series[0].median
    text = "\n".join([
        "# skiffd vs dockerd: the daemon benchmark",
        "",
        "Produced by `sudo python -m bench run` (bench/run.py): the same docker CLI "
        f"({subprocess.run(['docker', '--version'], capture_output=True, text=True).stdout.strip()}) "
        "against skiffd and Debian's dockerd 20.10 (overlay2, own bridge, iptables off), "
        "interleaved, busybox image loaded with `docker load`. Times are start-to-exit of the "
        "client command; absolute numbers are noisy on a shared machine, compare ratios.",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{os.uname().release}, {os.cpu_count()} CPUs, load average {load_before:.1f} before "
        f"and {os.getloadavg()[0]:.1f} after the run.",
        "",
        "## `run --rm busybox true`",
        "",
        run_table,
        "",
        f"skiffd / dockerd (docker CLI, bridge network): **{ratio:.2f}x** (target <= 0.25x).",
        "",
        f"## {a.concurrent} containers started concurrently (`docker run -d ... sleep`)",
        "",
        conc_table,
        "",
        "## Daemon memory",
        "",
        "\n".join(mem),
        "",
    ])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = ""
    if out.exists():  # a hand-written analysis after the tables survives a re-run
        old = out.read_text()
        i = old.find("\n" + KEEP_FROM)
        kept = old[i:] if i >= 0 else ""
    out.write_text(text + kept)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
