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


PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


def _dump(ct, **filt) -> list[tuple[dict, dict]]:
    """Entries matching a partial original/reply tuple, filtered in the kernel (>= 5.8)."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    kw = {k: NFCTAttrTuple(**v) for k, v in filt.items()}
    return [(_as_dict(e.tuple_orig), _as_dict(e.tuple_reply)) for e in ct.dump_entries(**kw)]


def entries(proto: int | None = socket.IPPROTO_UDP) -> list[tuple[dict, dict]]:
    """(original, reply) tuples of the conntrack table (one protocol or all)."""
    from pyroute2 import Conntrack

    with Conntrack() as ct:
        return _dump(ct) if proto is None else _dump(ct, tuple_orig={"proto": proto})


def flush(ports: Iterable[tuple[str, int]] = (), container_ip: str | None = None) -> int:
    """Delete conntrack entries of published ports and of a container.

    ports: (proto, host port) pairs. Without container_ip (a mapping appears) every UDP entry
    towards such a port goes, as moby does: it was tracked before the DNAT existed. With
    container_ip (the container goes) the entries NATed to it go, whatever the protocol, and so
    does every entry from or to its address. Returns the count; never raises.
    """
    try:
        from pyroute2 import Conntrack
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        doomed: dict[tuple, dict] = {}
        with Conntrack() as ct:
            wanted: dict[int, set[int]] = {}
            for proto, port in ports:
                num = PROTO[proto]
                if container_ip is None and num != socket.IPPROTO_UDP:
                    continue
                wanted.setdefault(num, set()).add(port)
            for num, nums in wanted.items():
                # one kernel-filtered dump per port is cheapest for a few ports; for many, one
                # dump per protocol filtered here costs less than a hundred round trips
                filters = (
                    [{"proto": num, "dport": p} for p in sorted(nums)]
                    if len(nums) <= 8
                    else [{"proto": num}]
                )
                for filt in filters:
                    for orig, reply in _dump(ct, tuple_orig=filt):
                        if orig["dport"] not in nums:
                            continue
                        if container_ip is None or reply["saddr"] == container_ip:
                            doomed[tuple(orig.values())] = orig
            if container_ip:
                for key in ("saddr", "daddr"):
                    for orig, _reply in _dump(ct, tuple_orig={key: container_ip}):
                        doomed[tuple(orig.values())] = orig
            deleted = 0
            for orig in doomed.values():
                try:
                    ct.entry("del", tuple_orig=NFCTAttrTuple(**orig))
                    deleted += 1
                except Exception:  # noqa: BLE001 - the entry may have expired meanwhile
                    continue
        return deleted
    except Exception as e:  # noqa: BLE001 - cleanup must not break connect/disconnect
        log.warning("conntrack flush failed: %s", e)
        return 0
