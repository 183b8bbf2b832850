"""Helpers for the network system and property tests (no tests here).

Everything is named with the skt5 prefix; traffic only goes to 127.0.0.0/8, to namespaces the
tests make, and to the test subnets 10.205.0.0/16 and 10.206.0.0/16.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from engine.drivers.network import NetworkDriver

PREFIX = "skt5"
OUTSIDE_NS = "skt5-out"
OUTSIDE_HOST_IP = "10.206.0.1"
OUTSIDE_NS_IP = "10.206.0.2"

RESPONDER = r"""
import socket, sys, threading
ident = sys.argv[1].encode()
tcp = [int(p) for p in sys.argv[2].split(",") if p]
udp = [int(p) for p in sys.argv[3].split(",") if p]
def serve_tcp(s):
    while True:
        c, _ = s.accept()
        try:
            c.sendall(ident + b"\n")
        finally:
            c.close()
def serve_udp(s):
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(ident + b":" + data, peer)
for p in tcp:  # bound and listening before "ready"
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p)); s.listen(64)
    threading.Thread(target=serve_tcp, args=(s,), daemon=True).start()
for p in udp:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", p))
    threading.Thread(target=serve_udp, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = r"""
import socket, sys
mode, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
sport = int(sys.argv[5]) if len(sys.argv) > 5 else 0
try:
    if mode == "tcp":
        s = socket.create_connection((host, port), timeout=timeout)
        print(s.recv(200).decode().strip())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
        if sport:
            s.bind(("0.0.0.0", sport))
        s.sendto(b"ping", (host, port))
        print(s.recvfrom(2048)[0].decode().strip())
except OSError as e:
    print("ERR " + type(e).__name__)
"""


def new_driver(state_dir: Path, **kw) -> NetworkDriver:
    args = dict(
        bridge="skt5br0",
        subnet="10.205.0.0/24",
        table="skt5t",
        bridge_prefix="skt5br",
        veth_prefix="skt5v",
        netns_prefix="skt5-c",
    )
    args.update(kw)
    return NetworkDriver(state_dir, **args)


def state_dir() -> Path:
    p = Path(f"/var/tmp/skt5-{uuid.uuid4().hex[:8]}")
    p.mkdir(parents=True)
    return p


def ns_cmd(ns: str | None, argv: list[str]) -> list[str]:
    return (["ip", "netns", "exec", ns] if ns else []) + argv


def query(
    mode: str, host: str, port: int, ns: str | None = None, timeout: float = 2.0, sport: int = 0
) -> str:
    """Connect (tcp) or send one datagram (udp); the responder's answer or 'ERR ...'."""
    if ns is None and not sport:
        try:
            if mode == "tcp":
                with socket.create_connection((host, port), timeout=timeout) as s:
                    return s.recv(200).decode().strip()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.sendto(b"ping", (host, port))
                return s.recvfrom(2048)[0].decode().strip()
        except OSError as e:
            return "ERR " + type(e).__name__
    argv = [sys.executable, "-I", "-S", "-c", CLIENT, mode, host, str(port), str(timeout)]
    if sport:
        argv.append(str(sport))
    out = subprocess.run(ns_cmd(ns, argv), capture_output=True, text=True, timeout=timeout + 10)
    return out.stdout.strip() or ("ERR " + out.stderr.strip()[-200:])


class Responder:
    """A process in a netns answering TCP connects with its id and UDP datagrams with id:data."""

    def __init__(self, ns: str, ident: str, tcp=(), udp=()) -> None:
        self.proc = subprocess.Popen(
            ns_cmd(
                ns,
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    RESPONDER,
                    ident,
                    ",".join(map(str, tcp)),
                    ",".join(map(str, udp)),
                ],
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class Httpd:
    """busybox httpd (static) in a netns serving a directory; stopped by pid."""

    def __init__(self, busybox: Path, ns: str, www: Path, body: str, port: int = 80) -> None:
        www.mkdir(parents=True, exist_ok=True)
        (www / "index.html").write_text(body)
        self.proc = subprocess.Popen(
            ns_cmd(ns, [str(busybox), "httpd", "-f", "-p", str(port), "-h", str(www)])
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait until it listens
            r = subprocess.run(
                ns_cmd(ns, ["ss", "-Hltn", f"sport = :{port}"]), capture_output=True, text=True
            )
            if r.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError("httpd did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def http_get(
    url: str, ns: str | None = None, timeout: float = 3.0, hosts: Path | None = None
) -> str:
    """GET through python in the given netns (busybox wget crashes under `ip netns exec` here);
    with hosts, /etc/hosts is bind-mounted from that file in a private mount namespace."""
    code = (
        "import sys, urllib.request\n"
        "try: print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode(), end='')\n"
        "except Exception as e: print('ERR', type(e).__name__)"
    )
    argv = [sys.executable, "-c", code, url, str(timeout)]
    if hosts is not None:
        script = f'mount --bind {hosts} /etc/hosts && exec "$@"'
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]
    out = subprocess.run(ns_cmd(ns, argv), capture_output=True, text=True, timeout=timeout + 10)
    return out.stdout


def setup_outside() -> None:
    """A client netns joined to the host by a veth on 10.206.0.0/30 (never the real uplink)."""
    teardown_outside()
    cmds = [
        ["ip", "netns", "add", OUTSIDE_NS],
        [
            "ip",
            "link",
            "add",
            "skt5o0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            OUTSIDE_NS,
        ],
        ["ip", "addr", "add", f"{OUTSIDE_HOST_IP}/30", "dev", "skt5o0"],
        ["ip", "link", "set", "skt5o0", "up"],
        ["ip", "-n", OUTSIDE_NS, "addr", "add", f"{OUTSIDE_NS_IP}/30", "dev", "eth0"],
        ["ip", "-n", OUTSIDE_NS, "link", "set", "eth0", "up"],
        ["ip", "-n", OUTSIDE_NS, "link", "set", "lo", "up"],
        ["ip", "-n", OUTSIDE_NS, "route", "add", "default", "via", OUTSIDE_HOST_IP],
    ]
    for c in cmds:
        subprocess.run(c, check=True)


def teardown_outside() -> None:
    subprocess.run(["ip", "link", "del", "skt5o0"], capture_output=True)
    subprocess.run(["ip", "netns", "del", OUTSIDE_NS], capture_output=True)


def nft_table(table: str) -> list[dict] | None:
    r = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return [o for o in json.loads(r.stdout)["nftables"] if "metainfo" not in o]


def dnat_rules(table: str) -> list[tuple[str, int, str, int]]:
    """(proto, host port, container ip, container port) of every DNAT rule in the table."""
    out = []
    for o in nft_table(table) or []:
        r = o.get("rule")
        if not r or r["chain"] != "ports":
            continue
        proto, port, dnat = "", 0, {}
        for e in r["expr"]:
            m = e.get("match")
            if m and "payload" in m["left"] and m["left"]["payload"]["field"] == "dport":
                proto, port = m["left"]["payload"]["protocol"], m["right"]
            if "dnat" in e:
                dnat = e["dnat"]
        out.append((proto, port, dnat.get("addr"), dnat.get("port")))
    return sorted(out)


def leftovers(table: str = "skt5t") -> list[str]:
    """Kernel objects with our prefix that still exist (links, netns, nft tables)."""
    found = []
    links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout
    for link in json.loads(links or "[]"):
        if link["ifname"].startswith(PREFIX):
            found.append("link " + link["ifname"])
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        found += ["netns " + p.name for p in netns_dir.iterdir() if p.name.startswith(PREFIX)]
    tables = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True).stdout
    for o in json.loads(tables or '{"nftables": []}')["nftables"]:
        t = o.get("table")
        if t and t["name"].startswith(PREFIX):
            found.append(f"nft table {t['family']} {t['name']}")
    return found


def conntrack_mentions(port: int | None = None, ip: str | None = None) -> list[str]:
    r = subprocess.run(["conntrack", "-L"], capture_output=True, text=True)
    lines = r.stdout.splitlines()
    if port is not None:
        lines = [ln for ln in lines if f"port={port} " in ln]
    if ip is not None:
        lines = [ln for ln in lines if f"={ip} " in ln]
    return lines


def remove_state(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
