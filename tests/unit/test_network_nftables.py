"""The driver's nftables batches against golden files, one per configuration (like moby's).

Regenerate after an intended change with `SKIFF_UPDATE_GOLDEN=1 pytest tests/unit/test_network_nftables.py`
and review the diff: the golden files are the firewall's specification.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.drivers.network.nftables import NetSpec, PortMap, build_batch, delete_batch

GOLDEN = Path(__file__).parent / "golden" / "network"

DEFAULT = NetSpec("skiff0", "172.17.0.0/16")
USER = NetSpec("br-0123456789ab", "172.18.0.0/16")
INTERNAL = NetSpec("br-internal0000", "172.19.0.0/16", internal=True)

CONFIGS = {
    "default_bridge_no_ports": ([DEFAULT], []),
    "published_tcp_udp": (
        [DEFAULT],
        [
            PortMap("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "c1" * 32),
            PortMap("udp", "0.0.0.0", 5353, "172.17.0.2", 53, "c1" * 32),
            PortMap("tcp", "127.0.0.1", 9090, "172.17.0.3", 90, "c2" * 32),
        ],
    ),
    "two_networks_isolated": (
        [DEFAULT, USER],
        [PortMap("tcp", "0.0.0.0", 8080, "172.18.0.2", 80, "c3" * 32)],
    ),
    "internal_network": ([DEFAULT, USER, INTERNAL], []),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batch_matches_golden(name):
    nets, ports = CONFIGS[name]
    doc = build_batch("skiff", nets, ports)
    path = GOLDEN / f"{name}.json"
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if os.environ.get("SKIFF_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with SKIFF_UPDATE_GOLDEN=1"
    assert json.loads(path.read_text()) == doc


def test_batch_is_deterministic_regardless_of_input_order():
    nets, ports = CONFIGS["published_tcp_udp"]
    a = build_batch("skiff", nets, ports)
    b = build_batch("skiff", list(reversed(nets)), list(reversed(ports)))
    assert a == b


def test_batch_replaces_only_its_own_table():
    nets, ports = CONFIGS["two_networks_isolated"]
    doc = build_batch("skt", nets, ports)["nftables"]
    assert doc[1:4] == [
        {"add": {"table": {"family": "ip", "name": "skt"}}},
        {"delete": {"table": {"family": "ip", "name": "skt"}}},
        {"add": {"table": {"family": "ip", "name": "skt"}}},
    ]
    for cmd in doc[1:]:
        (obj,) = cmd.values()
        (kind, body) = next(iter(obj.items()))
        assert body.get("table", body.get("name")) == "skt", (kind, body)
    assert delete_batch("skt")["nftables"][-1] == {
        "delete": {"table": {"family": "ip", "name": "skt"}}
    }


def test_one_dnat_rule_per_mapping_and_isolation_pairs():
    nets, ports = CONFIGS["two_networks_isolated"]
    rules = [
        c["add"]["rule"]
        for c in build_batch("s", nets, ports)["nftables"]
        if "rule" in c.get("add", {})
    ]
    dnat = [r for r in rules if r["chain"] == "ports"]
    assert len(dnat) == 1 and dnat[0]["expr"][-1] == {"dnat": {"addr": "172.18.0.2", "port": 80}}
    drops = [r for r in rules if r["chain"] == "forward" and r["expr"][-1] == {"drop": None}]
    assert len(drops) == 2
