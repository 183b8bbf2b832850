"""The driver's nftables table, as one JSON batch built from state (golden-file testable).

The whole table is replaced in a single JSON transaction ("add table; delete table; add table;
..."), run through libnftables in-process or `nft -j -f -` as a fallback, so the kernel never sees a half-written ruleset and a rebuild after a crash
is the same code path as every change. Only the table named by the driver is ever touched.

Layout (family ip):
  prerouting  nat/dstnat   fib daddr type local -> jump ports     (outside + containers)
  output      nat/dstnat   fib daddr type local -> jump ports     (the host itself, 127.0.0.1)
  ports       one DNAT rule per published port
  postrouting nat/srcnat   egress masquerade per subnet; 127.0.0.0/8 -> bridge masquerade
                           (route_localnet path); hairpin: DNATed traffic from a subnet back
                           onto its bridge is masqueraded so replies return through the host
                           (needed without br_netfilter; with it, bridged DNAT also needs
                           hairpin mode on the bridge ports, which the driver sets)
  forward     filter       DNATed flows accepted first (published ports are reachable from
                           every network); then isolation between bridges, internal networks
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from engine.errors import SystemError_

FAMILY = "ip"


@dataclass(frozen=True, order=True)
class NetSpec:
    bridge: str
    subnet: str
    internal: bool = False


@dataclass(frozen=True, order=True)
class PortMap:
    proto: str
    host_ip: str  # "0.0.0.0" = any local address
    host_port: int
    container_ip: str
    container_port: int
    container_id: str = ""


def _match(left: dict, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(proto: str, field: str) -> dict:
    return {"payload": {"protocol": proto, "field": field}}


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _set(items: list) -> dict | str:
    return items[0] if len(items) == 1 else {"set": items}


def build_batch(table: str, networks: Iterable[NetSpec], ports: Iterable[PortMap]) -> dict:
    """The complete nft JSON document that (re)creates the table; deterministic order."""
    nets = sorted(networks)
    maps = sorted(ports, key=lambda p: (p.proto, p.host_port, p.host_ip, p.container_ip))
    cmds: list[dict] = []
    t = {"family": FAMILY, "name": table}
    cmds.append({"add": {"table": dict(t)}})
    cmds.append({"delete": {"table": dict(t)}})
    cmds.append({"add": {"table": dict(t)}})

    def chain(name: str, **base) -> None:
        c = {"family": FAMILY, "table": table, "name": name}
        c.update(base)
        cmds.append({"add": {"chain": c}})

    def rule(chain_name: str, expr: list[dict], comment: str | None = None) -> None:
        r = {"family": FAMILY, "table": table, "chain": chain_name, "expr": expr}
        if comment:
            r["comment"] = comment
        cmds.append({"add": {"rule": r}})

    chain("prerouting", type="nat", hook="prerouting", prio=-100, policy="accept")
    chain("output", type="nat", hook="output", prio=-100, policy="accept")
    chain("postrouting", type="nat", hook="postrouting", prio=100, policy="accept")
    chain("forward", type="filter", hook="forward", prio=0, policy="accept")
    chain("ports")

    local = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
    rule("prerouting", [local, {"jump": {"target": "ports"}}])
    rule("output", [local, {"jump": {"target": "ports"}}])

    for p in maps:
        expr: list[dict] = []
        if p.host_ip != "0.0.0.0":
            expr.append(_match(_payload("ip", "daddr"), p.host_ip))
        expr.append(_match(_payload(p.proto, "dport"), p.host_port))
        expr.append({"dnat": {"addr": p.container_ip, "port": p.container_port}})
        rule("ports", expr, comment=p.container_id[:12] or None)

    bridges = [n.bridge for n in nets]
    for n in nets:
        prefix, _, plen = n.subnet.partition("/")
        subnet = {"prefix": {"addr": prefix, "len": int(plen)}}
        if not n.internal:
            rule(
                "postrouting",
                [
                    _match(_payload("ip", "saddr"), subnet),
                    _match(_meta("oifname"), n.bridge, "!="),
                    {"masquerade": None},
                ],
                comment=f"egress {n.bridge}",
            )
        rule(
            "postrouting",
            [
                _match(_meta("oifname"), n.bridge),
                _match(_payload("ip", "saddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
                {"masquerade": None},
            ],
            comment=f"localhost {n.bridge}",
        )
        rule(
            "postrouting",
            [
                _match(_meta("oifname"), n.bridge),
                _match(_payload("ip", "saddr"), subnet),
                _match({"ct": {"key": "status"}}, "dnat", "in"),
                {"masquerade": None},
            ],
            comment=f"hairpin {n.bridge}",
        )

    dnat_ok = _match({"ct": {"key": "status"}}, "dnat", "in")
    rule("forward", [dnat_ok, {"accept": None}])
    for n in nets:
        others = [b for b in bridges if b != n.bridge]
        if others:
            rule(
                "forward",
                [
                    _match(_meta("iifname"), n.bridge),
                    _match(_meta("oifname"), _set(others)),
                    {"drop": None},
                ],
                comment=f"isolate {n.bridge}",
            )
        if n.internal:
            rule(
                "forward",
                [
                    _match(_meta("iifname"), n.bridge),
                    _match(_meta("oifname"), n.bridge, "!="),
                    {"drop": None},
                ],
                comment=f"internal {n.bridge}",
            )
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}] + cmds}


def delete_batch(table: str) -> dict:
    t = {"family": FAMILY, "name": table}
    return {"nftables": [{"add": {"table": dict(t)}}, {"delete": {"table": dict(t)}}]}


def nft_binary() -> str:
    path = shutil.which("nft") or "/usr/sbin/nft"
    return path


class _LibNftables:
    """libnftables (the library behind `nft`) through ctypes: one in-process JSON transaction
    instead of a process per change. The same thing Debian's python3-nftables wraps, without
    needing the system site-packages in a venv."""

    NFT_CTX_OUTPUT_JSON = 1 << 4

    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib
        self.lock = threading.Lock()

    def run(self, text: str) -> tuple[int, str]:
        with self.lock:
            ctx = self.lib.nft_ctx_new(0)
            if not ctx:
                return -1, "nft_ctx_new failed"
            try:
                self.lib.nft_ctx_buffer_output(ctx)
                self.lib.nft_ctx_buffer_error(ctx)
                self.lib.nft_ctx_output_set_flags(ctx, self.NFT_CTX_OUTPUT_JSON)  # JSON in too
                rc = self.lib.nft_run_cmd_from_buffer(ctx, text.encode())
                err = (self.lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
                return rc, err.strip()
            finally:
                self.lib.nft_ctx_free(ctx)


_LIB: _LibNftables | None = None
_LIB_TRIED = False


def _lib() -> _LibNftables | None:
    global _LIB, _LIB_TRIED
    if not _LIB_TRIED and not os.environ.get("SKIFF_NFT_SUBPROCESS"):
        _LIB_TRIED = True
        try:
            _LIB = _LibNftables()
        except (OSError, AttributeError):
            _LIB = None
    return _LIB


def apply(doc: dict) -> None:
    """Run one atomic nft transaction; nothing changes if any command in it fails."""
    text = json.dumps(doc)
    lib = _lib()
    if lib is not None:
        rc, err = lib.run(text)
        if rc != 0:
            raise SystemError_(f"nft rejected the batch: {err}")
        return
    proc = subprocess.run(
        [nft_binary(), "-j", "-f", "-"], input=text.encode(), capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise SystemError_(
            f"nft rejected the batch: {proc.stderr.decode(errors='replace').strip()}"
        )


def list_table(table: str) -> list[dict] | None:
    """The table's objects as nft JSON (None if the table does not exist)."""
    proc = subprocess.run(
        [nft_binary(), "-j", "list", "table", FAMILY, table], capture_output=True, check=False
    )
    if proc.returncode != 0:
        return None
    return [o for o in json.loads(proc.stdout)["nftables"] if "metainfo" not in o]


def table_exists(table: str) -> bool:
    return list_table(table) is not None
