"""Published-port throughput and publish/unpublish latency of the network driver (root).

    python -m bench net [--mib 256] [--runs 5] [--dockerd] [--out FILE]
    python -m bench.net ...   (the same, without the dispatcher)

Paths compared in the same run, interleaved:
  direct          host -> container address (no NAT): the ceiling
  skiff 127.0.0.1 host -> 127.0.0.1:PORT -> nftables DNAT + route_localnet + masquerade
  skiff gateway   host -> the bridge address:PORT (another local address) -> DNAT
  docker-proxy    host -> 127.0.0.1:PORT -> Debian's docker-proxy (dockerd's userland proxy, the
                  path dockerd uses for localhost traffic with its default userland-proxy=true),
                  started with the arguments dockerd gives it. dockerd itself is not started: it
                  would rewrite the shared machine's firewall (FORWARD policy DROP, docker0).
Sender and receiver are the same small Python programs on every path.
Everything is named skt5b*; all of it is removed at the end, ip_forward is restored.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Series, interleave, table

RECEIVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
buf = bytearray(1 << 20)
while True:
    c, _ = s.accept()
    total = 0
    while True:
        n = c.recv_into(buf)
        if not n:
            break
        total += n
    c.sendall(str(total).encode())
    c.close()
"""

CONTAINER_PORT = 5001
SKIFF_PORT = 18500
PROXY_PORT = 18501
DOCKERD_PORT = 18502


def send(addr: tuple[str, int], nbytes: int) -> None:
    chunk = b"\0" * (1 << 20)
    with socket.create_connection(addr, timeout=30) as s:
        left = nbytes
        while left > 0:
            s.sendall(chunk if left >= len(chunk) else chunk[:left])
            left -= len(chunk)
        s.shutdown(socket.SHUT_WR)
        got = int(s.recv(64) or b"0")
    if got != nbytes:
        raise RuntimeError(f"receiver got {got} of {nbytes} bytes via {addr}")


def start_proxy(container_ip: str, host_port: int = PROXY_PORT) -> subprocess.Popen:
    binary = shutil.which("docker-proxy") or "/usr/sbin/docker-proxy"
    r, w = os.pipe()
    argv = [
        binary,
        "-proto",
        "tcp",
        "-host-ip",
        "127.0.0.1",
        "-host-port",
        str(host_port),
        "-container-ip",
        container_ip,
        "-container-port",
        str(CONTAINER_PORT),
    ]
    # docker-proxy expects its status pipe on fd 3, as dockerd passes it (ExtraFiles)
    proc = subprocess.Popen(
        ["bash", "-c", f'exec "$@" 3>&{w}', "bash", *argv], pass_fds=(w,), stdin=subprocess.DEVNULL
    )
    os.close(w)
    with os.fdopen(r) as f:  # docker-proxy reports "0" (ok) or "1\n<error>" on fd 3
        status = f.read(1)
    if status != "0":
        proc.kill()
        raise RuntimeError("docker-proxy failed to start")
    return proc


class Dockerd:
    """Debian's dockerd in its own dirs, on a bridge we made, with its firewall, forwarding and
    masquerade management off (so it changes nothing on the shared host). A busybox container
    holds a netns whose published port dockerd serves through its docker-proxy; our receiver
    runs in that netns (the image has no Python)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.proc: subprocess.Popen | None = None
        self.sock = base / "docker.sock"

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "-H", f"unix://{self.sock}", *args],
            check=True,
            capture_output=True,
            text=True,
            **kw,
        )

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ip", "link", "add", "skt5dk0", "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", "10.205.210.1/24", "dev", "skt5dk0"], check=True)
        subprocess.run(["ip", "link", "set", "skt5dk0", "up"], check=True)
        log = open(self.base / "dockerd.log", "w")
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.base / "root"),
                "--exec-root",
                str(self.base / "exec"),
                "--pidfile",
                str(self.base / "dockerd.pid"),
                "-H",
                f"unix://{self.sock}",
                "--storage-driver",
                "vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge",
                "skt5dk0",
                "--userland-proxy=true",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                subprocess.run(
                    ["docker", "-H", f"unix://{self.sock}", "version"], capture_output=True
                ).returncode
                == 0
            ):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"dockerd did not come up; see {self.base / 'dockerd.log'}")

    def run_receiver(self, save_tar: Path, port: int) -> tuple[str, subprocess.Popen]:
        self.docker("load", "-i", str(save_tar))
        cid = self.docker(
            "run",
            "-d",
            "--name",
            "skt5-recv",
            "-p",
            f"127.0.0.1:{port}:{CONTAINER_PORT}",
            "busybox:latest",
            "sleep",
            "3600",
        ).stdout.strip()
        pid = self.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
        recv = subprocess.Popen(
            ["nsenter", "-t", pid, "-n", sys.executable, "-c", RECEIVER, str(CONTAINER_PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
        return cid, recv

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(
                ["docker", "-H", f"unix://{self.sock}", "rm", "-f", "skt5-recv"],
                capture_output=True,
                timeout=60,
            )
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["ip", "link", "del", "skt5dk0"], capture_output=True)
        # nothing of dockerd may stay mounted under its dirs
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        for line in reversed(mounts):
            target = line.split()[1]
            if target.startswith(str(self.base)):
                subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def publish_bench(d, rounds: int) -> list[tuple[str, float]]:
    """Seconds to publish and unpublish 100 ports: in one container, and one per container."""
    from engine.drivers.network.driver import NetworkDriver

    assert isinstance(d, NetworkDriver)
    out = []
    p = d.create_sandbox("skt5b-many")
    one, back = [], []
    for _ in range(rounds):
        bindings = {f"{7000 + i}/tcp": [{"HostPort": str(19000 + i)}] for i in range(100)}
        t0 = time.perf_counter()
        d.connect("skt5b-many", p, port_bindings=bindings)
        one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        d.disconnect("skt5b-many")
        back.append(time.perf_counter() - t0)
    d.delete_sandbox("skt5b-many")
    out.append(("publish 100 ports, 1 container (connect)", sorted(one)[len(one) // 2]))
    out.append(("unpublish 100 ports, 1 container (disconnect)", sorted(back)[len(back) // 2]))
    paths = [d.create_sandbox(f"skt5b-{i}") for i in range(100)]
    t0 = time.perf_counter()
    for i, path in enumerate(paths):
        d.connect(f"skt5b-{i}", path, port_bindings={"80/tcp": [{"HostPort": str(19000 + i)}]})
    out.append(("publish 100 ports, 100 containers (100 connects)", time.perf_counter() - t0))
    t0 = time.perf_counter()
    for i in range(100):
        d.disconnect(f"skt5b-{i}")
    out.append(("unpublish 100 ports, 100 containers (100 disconnects)", time.perf_counter() - t0))
    for i in range(100):
        d.delete_sandbox(f"skt5b-{i}")
    # the peer: dockerd starts one docker-proxy process per published port
    t0 = time.perf_counter()
    procs = []
    try:
        for i in range(100):
            procs.append(start_proxy("10.205.200.250", 19200 + i))
        out.append(("docker-proxy: start 100 (one per port, as dockerd)", time.perf_counter() - t0))
    finally:
        t0 = time.perf_counter()
        for pr in procs:
            pr.terminate()
        for pr in procs:
            pr.wait()
        out.append(("docker-proxy: stop 100", time.perf_counter() - t0))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench net")
    ap.add_argument("--mib", type=int, default=256, help="MiB sent per sample")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="")
    ap.add_argument(
        "--dockerd",
        action="store_true",
        help="also measure a real dockerd's published port (userland proxy)",
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench net: needs root", file=sys.stderr)
        return 2
    from engine.drivers.network import NetworkDriver

    state = Path("/var/tmp/skt5-bench")
    shutil.rmtree(state, ignore_errors=True)
    fwd = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    d = NetworkDriver(
        state,
        bridge="skt5bbr0",
        subnet="10.205.200.0/24",
        table="skt5bench",
        bridge_prefix="skt5bbr",
        veth_prefix="skt5bv",
        netns_prefix="skt5b-",
    )
    receiver = proxy = dk_recv = None
    dk = Dockerd(Path("/var/tmp/skt5-bench-dockerd")) if args.dockerd else None
    try:
        d.start()
        path = d.create_sandbox("skt5b-recv")
        s = d.connect(
            "skt5b-recv",
            path,
            port_bindings={f"{CONTAINER_PORT}/tcp": [{"HostPort": str(SKIFF_PORT)}]},
        )
        cip, gw = s["IPAddress"], s["Gateway"]
        receiver = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                Path(path).name,
                sys.executable,
                "-c",
                RECEIVER,
                str(CONTAINER_PORT),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        proxy = start_proxy(cip)
        if dk is not None:
            from tests.images import busybox

            dk.start()
            _, dk_recv = dk.run_receiver(busybox.build() / "docker-save.tar", DOCKERD_PORT)
        nbytes = args.mib << 20
        cases = {
            "direct (container address)": lambda: send((cip, CONTAINER_PORT), nbytes),
            "skiff 127.0.0.1:PORT (nft DNAT)": lambda: send(("127.0.0.1", SKIFF_PORT), nbytes),
            "skiff gateway:PORT (nft DNAT)": lambda: send((gw, SKIFF_PORT), nbytes),
            "docker-proxy 127.0.0.1:PORT": lambda: send(("127.0.0.1", PROXY_PORT), nbytes),
        }
        if dk is not None:
            cases["dockerd -p 127.0.0.1:PORT (its docker-proxy)"] = lambda: send(
                ("127.0.0.1", DOCKERD_PORT), nbytes
            )
        series = interleave(cases, runs=args.runs, warmup=1)
        rate = [Series(x.name, [nbytes / t / 1e9 for t in x.samples]) for x in series]
        lines = [
            f"## Throughput: {args.mib} MiB per sample, {args.runs} interleaved rounds",
            "",
            "| path | median GB/s | best GB/s | median ratio to direct | best ratio to direct |",
            "|---|---|---|---|---|",
        ]
        base, best = rate[0].median, max(rate[0].samples)
        for r in rate:
            lines.append(
                f"| {r.name} | {r.median:.2f} | {max(r.samples):.2f} | {r.median / base:.2f}x "
                f"| {max(r.samples) / best:.2f}x |"
            )
        lines += ["", "Time per sample:", "", table(series, "direct (container address)"), ""]
        proxy.terminate()
        proxy.wait()
        proxy = None
        lines += ["## Publish / unpublish 100 ports", "", "| operation | seconds |", "|---|---|"]
        for name, secs in publish_bench(d, rounds=3):
            lines.append(f"| {name} | {secs:.3f} |")
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            Path(args.out).write_text(text)
    finally:
        if dk_recv is not None:
            dk_recv.kill()
            dk_recv.wait()
        if dk is not None:
            dk.stop()
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        if receiver is not None:
            receiver.kill()
            receiver.wait()
        d.start()
        d.destroy_all()
        shutil.rmtree(state, ignore_errors=True)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(fwd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
