"""Port mappings as a Hypothesis state machine against the real kernel (issue 7, second half).

Containers are driver sandboxes running a tiny responder that answers TCP connects with its id
and UDP datagrams with "id:data". Rules add containers with random `-p` sets (host IPs, fixed
ports from a small pool so that conflicts are frequent, ranges, empty host ports, tcp/udp,
duplicates, a non-local host IP), remove them, and open/close plain host listeners. The model
predicts refusals (docker's wording, nothing changed) with the driver's documented allocation
policy (fixed ports first, then ranges/ephemeral in request order, first free). Invariants after
every step: every mapping answers from the host, from an "outside" netns and from another
container with the right id; the nftables DNAT rules, IPAM and the model agree; no conntrack
entry points at an address that no live container holds. Teardown leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from engine.drivers.network.portspec import normalize_bindings
from engine.errors import Conflict, InvalidParameter
from tests.system.test_network_support import (
    OUTSIDE_HOST_IP,
    OUTSIDE_NS,
    Responder,
    leftovers,
    new_driver,
    nft_table,
    query,
    remove_state,
    setup_outside,
    state_dir,
    teardown_outside,
)

pytestmark = pytest.mark.root

SUBNET = "10.205.16.0/24"
GATEWAY = "10.205.16.1"
POOL = list(range(18600, 18608))
TCP_PORTS = (80, 81)
UDP_PORTS = (53, 54)
NON_LOCAL = "10.99.99.99"
TABLE = "skt5prop"

BATCH = r"""
import json, socket, sys
out = []
for mode, host, port in json.loads(sys.argv[1]):
    try:
        if mode == "tcp":
            s = socket.create_connection((host, port), timeout=2)
            out.append(s.recv(200).decode().strip()); s.close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            s.sendto(b"ping", (host, port)); out.append(s.recvfrom(2048)[0].decode().strip())
            s.close()
    except OSError as e:
        out.append("ERR " + type(e).__name__)
print(json.dumps(out))
"""


def batch(ns: str, queries: list[tuple[str, str, int]]) -> list[str]:
    if not queries:
        return []
    r = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-I", "-S", "-c", BATCH, json.dumps(queries)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(r.stdout) if r.stdout.strip() else [f"ERR {r.stderr[-200:]}"] * len(queries)


host_ips = st.sampled_from(["", "", "127.0.0.1", GATEWAY])
host_ports = st.one_of(
    st.sampled_from([str(p) for p in POOL]),
    st.just(""),
    st.sampled_from(["18600-18603", "18604-18607", "18600-18607"]),
)


@st.composite
def bindings(draw) -> tuple[dict, bool, dict]:
    """(PortBindings, publish_all, ExposedPorts) of one container."""
    pb: dict[str, list[dict]] = {}
    for _ in range(draw(st.integers(0, 3))):
        proto = draw(st.sampled_from(["tcp", "udp"]))
        cport = draw(st.sampled_from(TCP_PORTS if proto == "tcp" else UDP_PORTS))
        hip = (
            draw(st.one_of(host_ips, st.just(NON_LOCAL)))
            if draw(st.integers(0, 19)) == 0
            else draw(host_ips)
        )
        entry = {"HostIp": hip, "HostPort": draw(host_ports)}
        lst = pb.setdefault(f"{cport}/{proto}", [])
        lst.append(entry)
        if draw(st.integers(0, 9)) == 0:
            lst.append(dict(entry))  # an exact duplicate, as a repeated -p
    publish_all = draw(st.integers(0, 5)) == 0
    exposed = {f"{p}/tcp": {} for p in TCP_PORTS} | {f"{UDP_PORTS[0]}/udp": {}}
    return pb, publish_all, (exposed if publish_all else {})


def overlap(a: str, b: str) -> bool:
    return a == b or "0.0.0.0" in (a, b)


class PortMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sd = state_dir()
        self.d = new_driver(
            self.sd,
            bridge="skt5pbr0",
            subnet=SUBNET,
            table=TABLE,
            bridge_prefix="skt5pbr",
            veth_prefix="skt5pv",
            netns_prefix="skt5-p",
        )
        self.d.start()
        self.n = 0
        # model: container id -> (ip, [(proto, host_ip, host_port, container_port)])
        self.live: dict[str, tuple[str, list[tuple[str, str, int, int]]]] = {}
        self.procs: dict[str, Responder] = {}
        self.listeners: dict[int, socket.socket] = {}
        self.prober = self.d.create_sandbox("prober")
        self.prober_ip = self.d.connect("prober", self.prober)["IPAddress"]

    # ------------------------------------------------------------------ the model's prediction
    def predict(self, pb, publish_all, exposed) -> tuple[str, str | None]:
        reqs = normalize_bindings(pb, exposed, publish_all)
        if any(r.host_ip == NON_LOCAL for r in reqs):
            return "invalid", None
        taken = [(proto, hip, hp) for _, maps in self.live.values() for proto, hip, hp, _ in maps]
        taken += [("tcp", "127.0.0.1", p) for p in self.listeners]

        def free(proto: str, hip: str, port: int) -> bool:
            return not any(p == proto and hp == port and overlap(h, hip) for p, h, hp in taken)

        order = sorted(
            range(len(reqs)),
            key=lambda i: reqs[i].host_range is None or len(reqs[i].host_range or ()) > 1,
        )
        for i in order:
            r = reqs[i]
            if r.host_range is None:
                continue  # ephemeral ports always exist here
            got = next((p for p in r.host_range if free(r.proto, r.host_ip, p)), None)
            if got is None:
                return (
                    "conflict",
                    f"Bind for {r.host_ip}:{r.host_range} failed: port is already allocated",
                )
            taken.append((r.proto, r.host_ip, got))
        return "ok", None

    def snapshot(self):
        return (
            nft_table(TABLE),
            self.d.ipam.allocations(),
            sorted(x for x in leftovers() if "skt5p" in x),
        )

    # ------------------------------------------------------------------ rules
    @precondition(lambda self: len(self.live) < 4)
    @rule(spec=bindings())
    def add_container(self, spec) -> None:
        pb, publish_all, exposed = spec
        cid = f"k{self.n}"
        self.n += 1
        path = self.d.create_sandbox(cid)
        expected, message = self.predict(pb, publish_all, exposed)
        before = self.snapshot()
        try:
            s = self.d.connect(
                cid, path, port_bindings=pb, publish_all=publish_all, exposed_ports=exposed
            )
        except Conflict as e:
            event("refused: conflict")
            assert expected == "conflict", (expected, str(e))
            assert str(e) == message
            self.d.delete_sandbox(cid)
            assert self.snapshot() == before
            return
        except InvalidParameter as e:
            event("refused: non-local host IP")
            assert expected == "invalid", (expected, str(e))
            assert NON_LOCAL in str(e)
            self.d.delete_sandbox(cid)
            assert self.snapshot() == before
            return
        assert expected == "ok", (expected, message, pb)
        event("published")
        maps = []
        reqs = normalize_bindings(pb, exposed, publish_all)
        for key, lst in s["Ports"].items():
            cport, proto = int(key.split("/")[0]), key.split("/")[1]
            for b in lst or []:
                maps.append((proto, b["HostIp"], int(b["HostPort"]), cport))
        assert len(maps) == len(reqs), (maps, reqs)
        for r in reqs:  # every request got a port that satisfies it
            assert any(
                m[0] == r.proto
                and m[1] == r.host_ip
                and m[3] == r.container_port
                and (r.host_range is None or m[2] in r.host_range)
                for m in maps
            ), (r, maps)
        self.live[cid] = (s["IPAddress"], maps)
        self.procs[cid] = Responder(os.path.basename(path), cid, tcp=TCP_PORTS, udp=UDP_PORTS)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def remove_container(self, data) -> None:
        cid = data.draw(st.sampled_from(sorted(self.live)))
        self.procs.pop(cid).stop()
        self.d.delete_sandbox(cid)
        ip, maps = self.live.pop(cid)
        for proto, hip, hp, _ in maps:  # the reservation is gone: the host can bind it
            if hp not in POOL:
                continue  # an ephemeral port may be taken by any client right away
            kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, kind) as sk:
                if proto == "tcp":
                    sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sk.bind((hip, hp))

    @precondition(lambda self: len(self.listeners) < 2)
    @rule(port=st.sampled_from(POOL))
    def host_listener(self, port) -> None:
        if port in self.listeners:
            return
        if any(
            p == "tcp" and hp == port and overlap(h, "127.0.0.1")
            for _, maps in self.live.values()
            for p, h, hp, _ in maps
        ):
            return  # the driver holds it; a listener would be refused by the kernel
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        self.listeners[port] = s

    @precondition(lambda self: self.listeners)
    @rule(data=st.data())
    def close_listener(self, data) -> None:
        port = data.draw(st.sampled_from(sorted(self.listeners)))
        self.listeners.pop(port).close()

    # ------------------------------------------------------------------ invariants
    @invariant()
    def kernel_matches_model(self) -> None:
        rules = []
        for o in nft_table(TABLE) or []:
            r = o.get("rule")
            if not r or r["chain"] != "ports":
                continue
            hip, proto, port, dnat = "0.0.0.0", "", 0, {}
            for e in r["expr"]:
                m = e.get("match")
                if m and m["left"].get("payload", {}).get("field") == "daddr":
                    hip = m["right"]
                elif m and m["left"].get("payload", {}).get("field") == "dport":
                    proto, port = m["left"]["payload"]["protocol"], m["right"]
                dnat = e.get("dnat", dnat)
            rules.append((proto, hip, port, dnat["addr"], dnat["port"]))
        model = sorted(
            (p, h, hp, ip, cp) for ip, maps in self.live.values() for p, h, hp, cp in maps
        )
        assert sorted(rules) == model
        ipam = self.d.ipam.allocations()
        assert ipam == {"prober": self.prober_ip} | {c: ip for c, (ip, _) in self.live.items()}

    @invariant()
    def every_mapping_answers(self) -> None:
        entries = [
            (cid, proto, hip, hp)
            for cid, (_ip, maps) in sorted(self.live.items())
            for proto, hip, hp, _cp in maps
        ]
        want = [cid if proto == "tcp" else f"{cid}:ping" for cid, proto, _, _ in entries]
        host_q = [
            (p, "127.0.0.1" if h in ("0.0.0.0", "127.0.0.1") else h, hp) for _, p, h, hp in entries
        ]
        got = [query(m, h, p) for m, h, p in host_q]
        assert got == want, list(zip(host_q, got, strict=False))
        far = [i for i, (_, _, h, _) in enumerate(entries) if h != "127.0.0.1"]
        want_far = [want[i] for i in far]
        out_q = [
            (
                entries[i][1],
                OUTSIDE_HOST_IP if entries[i][2] == "0.0.0.0" else entries[i][2],
                entries[i][3],
            )
            for i in far
        ]
        cont_q = [(entries[i][1], GATEWAY, entries[i][3]) for i in far]
        got = batch(OUTSIDE_NS, out_q)
        assert got == want_far, list(zip(out_q, got, strict=False))
        got = batch(os.path.basename(self.prober), cont_q)
        assert got == want_far, list(zip(cont_q, got, strict=False))

    @invariant()
    def no_conntrack_for_dead_addresses(self) -> None:
        live_ips = {ip for ip, _ in self.live.values()} | {self.prober_ip}
        r = subprocess.run(["conntrack", "-L"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            for word in line.split():
                if word.startswith(("src=10.205.16.", "dst=10.205.16.")):
                    addr = word.split("=")[1]
                    assert addr in live_ips or addr == GATEWAY, line

    def teardown(self) -> None:
        try:
            for p in self.procs.values():
                p.stop()
            for s in self.listeners.values():
                s.close()
            self.d.destroy_all()
        finally:
            remove_state(self.sd)
        assert [x for x in leftovers() if "skt5p" in x] == []


_profile = os.environ.get("SKIFF_HYPOTHESIS_PROFILE", "ci")
PortMachine.TestCase.settings = settings(
    settings.default,
    max_examples=50
    if _profile == "ci"
    else (10 if _profile in ("dev", "vm") else settings.default.max_examples),
    stateful_step_count=6,
)


@pytest.fixture(scope="module")
def outside_ns(require_root):
    fwd = open("/proc/sys/net/ipv4/ip_forward").read()
    setup_outside()
    yield
    teardown_outside()
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(fwd)


def test_port_mappings_state_machine(outside_ns) -> None:
    PortMachine.TestCase().runTest()
