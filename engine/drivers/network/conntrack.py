"""Conntrack cleanup for UDP mappings, through pyroute2's ctnetlink support.

A UDP flow that was tracked before a mapping existed (or towards a removed container) keeps its
old NAT decision for as long as packets keep coming; moby deletes such entries when a mapping
appears or goes, and so do we.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

log = logging.getLogger(__name__)


def _as_dict(t) -> dict:
    return {
        "saddr": t.saddr,
        "daddr": t.daddr,
        "proto": t.proto,
        "sport": t.sport,
        "dport": t.dport,
    }


def entries(proto: int | None = socket.IPPROTO_UDP) -> list[tuple[dict, dict]]:
    """(original, reply) tuples of the conntrack table (one protocol or all)."""
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    with Conntrack() as ct:
        if proto is None:
            found = list(ct.dump_entries())
        else:
            found = list(ct.dump_entries(tuple_orig=NFCTAttrTuple(proto=proto)))
    return [
        (_as_dict(e.tuple_orig), _as_dict(e.tuple_reply))
        for e in found
        if proto is None or e.tuple_orig.proto == proto
    ]


def flush(udp_ports: Iterable[int] = (), container_ip: str | None = None) -> int:
    """Delete UDP entries towards one of udp_ports (host side), and, when container_ip is given,
    every entry (any protocol) from or to that address. Returns the count; never raises."""
    ports = set(udp_ports)
    if not ports and not container_ip:
        return 0
    try:
        from pyroute2 import Conntrack
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        deleted = 0
        with Conntrack() as ct:
            for orig, reply in entries(None if container_ip else socket.IPPROTO_UDP):
                hit = orig["proto"] == socket.IPPROTO_UDP and orig["dport"] in ports
                if container_ip and container_ip in (orig["saddr"], orig["daddr"], reply["saddr"]):
                    hit = True
                if not hit:
                    continue
                try:
                    ct.entry("del", tuple_orig=NFCTAttrTuple(**orig))
                    deleted += 1
                except Exception:  # noqa: BLE001 - the entry may have expired meanwhile
                    continue
        return deleted
    except Exception as e:  # noqa: BLE001 - cleanup must not break connect/disconnect
        log.warning("conntrack flush failed: %s", e)
        return 0
