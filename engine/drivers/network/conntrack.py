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


def _entries(proto: int = socket.IPPROTO_UDP) -> list:
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    with Conntrack() as ct:
        return list(ct.dump_entries(tuple_orig=NFCTAttrTuple(proto=proto)))


def _tuple(msg, which: str) -> dict:
    t = msg.get_attr(which)
    ip = t.get_attr("CTA_TUPLE_IP")
    pr = t.get_attr("CTA_TUPLE_PROTO")
    return {
        "saddr": ip.get_attr("CTA_IP_V4_SRC"),
        "daddr": ip.get_attr("CTA_IP_V4_DST"),
        "proto": pr.get_attr("CTA_PROTO_NUM"),
        "sport": pr.get_attr("CTA_PROTO_SRC_PORT"),
        "dport": pr.get_attr("CTA_PROTO_DST_PORT"),
    }


def udp_entries() -> list[tuple[dict, dict]]:
    """(original, reply) tuples of every UDP conntrack entry (tests read them too)."""
    out = []
    for msg in _entries():
        try:
            out.append((_tuple(msg, "CTA_TUPLE_ORIG"), _tuple(msg, "CTA_TUPLE_REPLY")))
        except AttributeError:
            continue
    return out


def flush_udp(host_ports: Iterable[int], container_ip: str | None = None) -> int:
    """Delete UDP entries whose original destination port is one of host_ports, or (when given)
    whose reply comes from container_ip. Returns how many were deleted; never raises."""
    ports = set(host_ports)
    if not ports and not container_ip:
        return 0
    try:
        from pyroute2 import Conntrack
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        deleted = 0
        with Conntrack() as ct:
            for orig, reply in udp_entries():
                if orig["dport"] in ports or (container_ip and reply["saddr"] == container_ip):
                    try:
                        ct.entry(
                            "del",
                            tuple_orig=NFCTAttrTuple(
                                saddr=orig["saddr"],
                                daddr=orig["daddr"],
                                proto=socket.IPPROTO_UDP,
                                sport=orig["sport"],
                                dport=orig["dport"],
                            ),
                        )
                        deleted += 1
                    except Exception:  # noqa: BLE001 - the entry may have expired meanwhile
                        continue
        return deleted
    except Exception as e:  # noqa: BLE001 - cleanup must not break connect/disconnect
        log.warning("conntrack flush failed: %s", e)
        return 0
