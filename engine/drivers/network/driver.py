"""The bridge network driver: bridges, sandboxes, veths, IPAM, NAT and published ports.

Everything the driver does is recorded in SQLite first (inside one transaction per operation)
and the kernel is then made to match: links through pyroute2, the firewall through one atomic
nftables batch that rebuilds the driver's own table from the recorded state. A failure rolls
the transaction back and undoes the kernel work; a crash leaves at worst kernel objects that
start() removes (veths on our bridges that no endpoint owns, sandboxes nobody recorded), and
the table is rebuilt from the database, so nothing stale and nothing missing survives.

Two things keep a container start and removal short (docs/bench-daemon.md):
- a pool of sandboxes made ahead of time (start_pool): a netns with lo up and a veth whose host
  end is already on the default bridge; create_sandbox() takes one and connect() only gives its
  eth0 the address, MAC and route. Pool rows are written before their kernel objects exist;
  start() and close() remove every pooled object, so none outlives the daemon.
- teardown off the critical path (wait=False): the records go in one transaction together with
  a "doomed" row naming the kernel objects (veth, netns) and the address, which stays allocated
  to a placeholder owner; a reaper thread removes the objects, flushes conntrack, then frees
  the address. start() finishes whatever a crash left in that table.
Namespaces are entered by a short-lived thread (nsutil), never by forking the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import Conflict, Forbidden, InvalidParameter, NotFound, SystemError_

from . import conntrack, etcfiles, nftables, nsutil
from .ipam import IPAM, open_db
from .portspec import BindingRequest, normalize_bindings

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
DEFAULT_CANDIDATES = [f"172.{n}.0.0/16" for n in range(17, 32)] + [
    f"192.168.{n}.0/20" for n in range(0, 256, 16)
]
MAIN_TABLE = 254
POOL_NETWORK = "bridge"  # pooled sandboxes are plumbed to the default network's bridge
POOL_REFILL_DELAY = 0.15  # s after the last claim: refills never compete with a start (burst)
REAP_DELAY = 0.1  # s after the last deferred teardown: removals run once the exits are answered


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value)


def ephemeral_ports() -> tuple[range, set[int]]:
    """ip_local_port_range and ip_local_reserved_ports, as docker's allocator reads them."""
    lo, hi = 32768, 60999
    text = read_sysctl("net.ipv4.ip_local_port_range")
    if text:
        a, b = text.split()
        lo, hi = int(a), int(b)
    reserved: set[int] = set()
    for part in (read_sysctl("net.ipv4.ip_local_reserved_ports") or "").split(","):
        part = part.strip()
        if not part:
            continue
        a, _, b = part.partition("-")
        reserved.update(range(int(a), int(b or a) + 1))
    return range(lo, hi + 1), reserved


def mac_for(ip: str) -> str:
    """docker's scheme: 02:42 followed by the IPv4 address bytes (stable across restarts)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


class NetworkDriver:
    """See CONTRACTS.md "network [H5]". Thread-safe (one lock); one instance per state dir."""

    def __init__(
        self,
        state_dir: Path,
        *,
        bridge: str = "skiff0",
        subnet: str | None = None,
        table: str = "skiff",
        bridge_prefix: str = "br-",
        veth_prefix: str = "veth",
        netns_prefix: str = "skiff-",
        mtu: int = 1500,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.bridge = bridge
        self.requested_subnet = subnet
        self.table = table
        self.bridge_prefix = bridge_prefix
        self.veth_prefix = veth_prefix
        self.netns_prefix = netns_prefix
        self.mtu = mtu
        for name, value in (
            ("bridge", bridge),
            ("bridge_prefix", bridge_prefix),
            ("veth_prefix", veth_prefix),
        ):
            if not value or len(value) > (15 if name == "bridge" else 10) or "/" in value:
                raise InvalidParameter(f"invalid {name}: {value!r}")
        self.lock = threading.RLock()
        self.conn: sqlite3.Connection = open_db(self.state_dir)
        self.ipam = IPAM(self.conn, self.lock)
        self._ipr: Any = None
        self._held: dict[tuple[str, str, int], socket.socket] = {}
        self._cursor: dict[str, int] = {}
        self.provisioned: list[str] = []
        self.started = False
        self._closing = False
        self._pool_size = 0
        self._pool_cond = threading.Condition(self.lock)
        self._pool_thread: threading.Thread | None = None
        self._pool_ipr: Any = None
        self._pool_fds: dict[str, int] = {}  # pooled netns name -> the fd that holds it
        self._last_claim = 0.0
        self._last_doom = 0.0
        self._reaper: threading.Thread | None = None
        self._reap_cond = threading.Condition(self.lock)
        self._reaping = False
        self._busy: set[str] = set()  # names of objects a reaper is removing right now
        self._busy_ids: set[int] = set()
        self._reap_ipr: Any = None
        self._reap_ipr_lock = threading.Lock()  # a leaf lock: never held while taking another

    # ------------------------------------------------------------------ plumbing helpers
    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        """Release sockets and netlink handles; endpoints stay (the daemon may restart), the
        pool's sandboxes and pending teardowns are removed now."""
        self._stop_background()
        with self.lock:
            with contextlib.suppress(Exception):
                self._drain_pool()
                self._reap_all()
            for s in self._held.values():
                s.close()
            self._held.clear()
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    def _stop_background(self) -> None:
        """Stop the pool filler and the reaper (their threads finish what they hold)."""
        with self.lock:
            self._closing = True
            self._pool_size = 0
            self._pool_cond.notify_all()
            self._reap_cond.notify_all()
            threads = [t for t in (self._pool_thread, self._reaper) if t is not None]
        for t in threads:
            if t is not threading.current_thread():
                t.join(30)
        with self.lock:
            self._pool_thread = self._reaper = None
            if self._pool_ipr is not None:
                with contextlib.suppress(Exception):
                    self._pool_ipr.close()
                self._pool_ipr = None
        with self._reap_ipr_lock:
            if self._reap_ipr is not None:
                with contextlib.suppress(Exception):
                    self._reap_ipr.close()
                self._reap_ipr = None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _link_index(self, name: str) -> int | None:
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def _veth_name(self, container_id: str) -> str:
        digest = hashlib.sha256(container_id.encode()).hexdigest()
        return self.veth_prefix + digest[: 15 - len(self.veth_prefix)]

    def _netns_name(self, container_id: str) -> str:
        return self.netns_prefix + container_id[:64]

    # ------------------------------------------------------------------ networks
    def _host_routes(self, exclude_bridges: set[str]) -> list[ipaddress.IPv4Network]:
        excl = {i for b in exclude_bridges if (i := self._link_index(b)) is not None}
        out = []
        for r in self.ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            if r.get("table", MAIN_TABLE) != MAIN_TABLE or r.get("dst_len", 0) == 0:
                continue
            if r.get("oif") in excl:
                continue
            dst = r.get("dst")
            if dst:
                out.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
        return out

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return list(self.conn.execute(sql, args))

    def _our_bridges(self) -> set[str]:
        return {r["bridge"] for r in self._rows("SELECT bridge FROM networks")}

    def _check_subnet(
        self, subnet: str, *, field: str, exclude_network: str | None = None
    ) -> ipaddress.IPv4Network:
        try:
            net = ipaddress.ip_network(subnet, strict=True)
        except ValueError as e:
            raise InvalidParameter(f"invalid {field}: {subnet!r}: {e}") from None
        if net.version != 4:
            raise InvalidParameter(f"invalid {field}: {subnet!r}: only IPv4 subnets are supported")
        if net.prefixlen > 30:
            raise InvalidParameter(f"invalid {field}: {subnet!r}: prefix longer than /30")
        for r in self._rows("SELECT name, subnet FROM networks"):
            if r["name"] == exclude_network:
                continue
            if net.overlaps(ipaddress.IPv4Network(r["subnet"])):
                raise InvalidParameter(
                    f"invalid {field}: {subnet!r}: overlaps network {r['name']} ({r['subnet']})"
                )
        for route in self._host_routes(self._our_bridges()):
            if net.overlaps(route):
                raise InvalidParameter(
                    f"invalid {field}: {subnet!r}: overlaps the host route {route}"
                )
        return net

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        for cand in DEFAULT_CANDIDATES:
            try:
                return self._check_subnet(cand, field="subnet")
            except InvalidParameter:
                continue
        raise InvalidParameter("invalid subnet: no free private subnet left; pass --bridge-subnet")

    def _ensure_bridge(self, name: str, subnet: str, gateway: str) -> None:
        net = ipaddress.IPv4Network(subnet)
        idx = self._link_index(name)
        if idx is None:
            self.ipr.link("add", ifname=name, kind="bridge", mtu=self.mtu)
            idx = self._link_index(name)
            self.provisioned.append(f"created bridge {name}")
        have = {
            (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
            for a in self.ipr.get_addr(index=idx, family=socket.AF_INET)
        }
        if (gateway, net.prefixlen) not in have:
            self.ipr.addr("add", index=idx, address=gateway, prefixlen=net.prefixlen)
        self.ipr.link("set", index=idx, state="up")
        # 127.0.0.1 -> container DNAT leaves through the bridge with a loopback source
        write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")

    def _network(self, name_or_id: str) -> sqlite3.Row:
        if name_or_id in ("", "default"):
            name_or_id = "bridge"
        row = self.conn.execute(
            "SELECT * FROM networks WHERE name=? OR id=?", (name_or_id, name_or_id)
        ).fetchone()
        if row is None and len(name_or_id) >= 3:
            rows = self._rows("SELECT * FROM networks WHERE id LIKE ?", (name_or_id + "%",))
            if len(rows) == 1:
                row = rows[0]
        if row is None:
            raise NotFound(f"network {name_or_id} not found")
        return row

    def create_network(
        self,
        name: str,
        subnet: str | None = None,
        *,
        gateway: str | None = None,
        internal: bool = False,
        labels: dict | None = None,
        options: dict | None = None,
        driver: str = "bridge",
    ) -> dict:
        """`docker network create`; returns {"Id", "Warning"} like POST /networks/create."""
        with self.lock:
            if not name or not isinstance(name, str) or "/" in name or name.strip() != name:
                raise InvalidParameter(f"invalid network name: {name!r}")
            if driver not in ("bridge", "", None):
                raise InvalidParameter(f"invalid driver: {driver!r}: only bridge is supported")
            if (
                name in ("none", "host")
                or self.conn.execute("SELECT 1 FROM networks WHERE name=?", (name,)).fetchone()
            ):
                raise Conflict(f"network with name {name} already exists")
            net = self._check_subnet(subnet, field="subnet") if subnet else self._pick_subnet()
            gw = self._gateway(net, gateway)
            nid = secrets.token_hex(32)
            bridge = (options or {}).get("com.docker.network.bridge.name") or (
                self.bridge_prefix + nid[: 15 - len(self.bridge_prefix)]
            )
            if len(bridge) > 15 or bridge in self._our_bridges():
                raise InvalidParameter(f"invalid bridge name: {bridge!r}")
            with self._tx():
                self.conn.execute(
                    "INSERT INTO networks(name, id, bridge, subnet, gateway, created, labels, "
                    "options, internal) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        name,
                        nid,
                        bridge,
                        str(net),
                        gw,
                        _now(),
                        json.dumps(labels or {}),
                        json.dumps(options or {}),
                        int(bool(internal)),
                    ),
                )
                try:
                    self._ensure_bridge(bridge, str(net), gw)
                    self._apply_nft()
                except BaseException:
                    self._del_link(bridge)
                    raise
            return {"Id": nid, "Warning": ""}

    @staticmethod
    def _gateway(net: ipaddress.IPv4Network, gateway: str | None) -> str:
        if not gateway:
            return str(net.network_address + 1)
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise InvalidParameter(f"invalid gateway: {gateway!r}: not an IPv4 address") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidParameter(f"invalid gateway: {gateway!r}: not a host address of {net}")
        return str(gw)

    def remove_network(self, name: str) -> None:
        with self.lock:
            if name in ("host", "none"):
                raise Forbidden(f"{name} is a pre-defined network and cannot be removed")
            row = self._network(name)
            if row["name"] == "bridge":
                raise Forbidden("bridge is a pre-defined network and cannot be removed")
            if self.conn.execute(
                "SELECT 1 FROM endpoints WHERE network=?", (row["name"],)
            ).fetchone():
                raise Conflict(
                    f"error while removing network: network {row['name']} id {row['id']} "
                    "has active endpoints"
                )
            with self._tx():
                self.conn.execute("DELETE FROM networks WHERE name=?", (row["name"],))
                self.conn.execute("DELETE FROM ipam_cursor WHERE network=?", (row["name"],))
                self._apply_nft()
            self._del_link(row["bridge"])

    def _network_json(self, row: sqlite3.Row) -> dict:
        containers = {}
        prefix = ipaddress.IPv4Network(row["subnet"]).prefixlen
        for ep in self._rows("SELECT * FROM endpoints WHERE network=?", (row["name"],)):
            containers[ep["container_id"]] = {
                "Name": (json.loads(ep["aliases"]) or [ep["hostname"] or ep["container_id"][:12]])[
                    0
                ],
                "EndpointID": ep["endpoint_id"],
                "MacAddress": ep["mac"],
                "IPv4Address": f"{ep['ip']}/{prefix}",
                "IPv6Address": "",
            }
        options = json.loads(row["options"])
        options.setdefault("com.docker.network.bridge.name", row["bridge"])
        return {
            "Name": row["name"],
            "Id": row["id"],
            "Created": row["created"],
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": False,
            "IPAM": {
                "Driver": "default",
                "Options": None,
                "Config": [{"Subnet": row["subnet"], "Gateway": row["gateway"]}],
            },
            "Internal": bool(row["internal"]),
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": options,
            "Labels": json.loads(row["labels"]),
        }

    def _pseudo_networks(self) -> list[dict]:
        """docker always lists `host` and `none`; they have no bridge and no endpoints here
        (the container manager handles those modes), but stable ids across restarts."""
        out = []
        for name, driver in (("host", "host"), ("none", "null")):
            key = f"pseudo_network_{name}"
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            if row is None:
                nid = secrets.token_hex(32)
                self.conn.execute("INSERT INTO meta(key, value) VALUES (?,?)", (key, nid))
            else:
                nid = row["value"]
            out.append(
                {
                    "Name": name,
                    "Id": nid,
                    "Created": "0001-01-01T00:00:00Z",
                    "Scope": "local",
                    "Driver": driver,
                    "EnableIPv6": False,
                    "IPAM": {"Driver": "default", "Options": None, "Config": []},
                    "Internal": False,
                    "Attachable": False,
                    "Ingress": False,
                    "ConfigFrom": {"Network": ""},
                    "ConfigOnly": False,
                    "Containers": {},
                    "Options": {},
                    "Labels": {},
                }
            )
        return out

    def list_networks(self) -> list[dict]:
        with self.lock:
            nets = [
                self._network_json(r) for r in self._rows("SELECT * FROM networks ORDER BY name")
            ]
            return nets + self._pseudo_networks()

    def inspect_network(self, name: str) -> dict:
        with self.lock:
            for pseudo in self._pseudo_networks():
                if name == pseudo["Name"] or (len(name) >= 3 and pseudo["Id"].startswith(name)):
                    return pseudo
            return self._network_json(self._network(name))

    # ------------------------------------------------------------------ start / info
    def start(self) -> None:
        """Ensure bridges and sysctls, reconcile with the kernel, rebuild the nft table."""
        with self.lock:
            self._ensure_default_network()
            for r in self._rows("SELECT * FROM networks"):
                self._ensure_bridge(r["bridge"], r["subnet"], r["gateway"])
            if read_sysctl("net.ipv4.ip_forward") != "1":
                if (
                    self.conn.execute("SELECT 1 FROM meta WHERE key='ip_forward_before'").fetchone()
                    is None
                ):
                    self.conn.execute(
                        "INSERT INTO meta(key, value) VALUES ('ip_forward_before', ?)",
                        (read_sysctl("net.ipv4.ip_forward") or "0",),
                    )
                write_sysctl("net.ipv4.ip_forward", "1")
                self.provisioned.append("net.ipv4.ip_forward=1")
            self._closing = False
            self._reap_all()  # teardowns a crash interrupted
            self._drain_pool()  # pooled sandboxes of an earlier run (a crash, or no close())
            self._reconcile()
            self._apply_nft()
            for p in self._rows("SELECT * FROM ports"):
                key = (p["proto"], p["host_ip"], p["host_port"])
                if key not in self._held:
                    try:
                        self._held[key] = self._bind(*key)
                    except OSError:
                        log.warning("could not re-reserve %s %s:%s", *key)
            self.started = True

    def _ensure_default_network(self) -> None:
        if self.requested_subnet:
            # like dockerd's --bip, host bits are allowed in the flag: 10.205.0.1/24 is the /24
            try:
                net = ipaddress.ip_network(self.requested_subnet, strict=False)
            except ValueError as e:
                raise InvalidParameter(
                    f"invalid bridge-subnet: {self.requested_subnet!r}: {e}"
                ) from None
            self.requested_subnet = str(net)
        row = self.conn.execute("SELECT * FROM networks WHERE name='bridge'").fetchone()
        if row is not None and row["bridge"] != self.bridge:
            if self.conn.execute("SELECT 1 FROM endpoints WHERE network='bridge'").fetchone():
                raise InvalidParameter(
                    f"invalid bridge: {self.bridge!r}: the default network uses {row['bridge']} "
                    "and has endpoints"
                )
            self._del_link(row["bridge"])
            self.conn.execute("DELETE FROM networks WHERE name='bridge'")
            row = None
        if (
            row is not None
            and self.requested_subnet
            and row["subnet"] != str(ipaddress.ip_network(self.requested_subnet, strict=False))
        ):
            if self.conn.execute("SELECT 1 FROM endpoints WHERE network='bridge'").fetchone():
                raise InvalidParameter(
                    f"invalid bridge-subnet: {self.requested_subnet!r}: the default network "
                    f"still has endpoints on {row['subnet']}"
                )
            self._del_link(row["bridge"])
            self.conn.execute("DELETE FROM networks WHERE name='bridge'")
            row = None
        if row is None:
            if self.requested_subnet:
                net = self._check_subnet(
                    self.requested_subnet, field="bridge-subnet", exclude_network="bridge"
                )
            else:
                net = self._pick_subnet()
            self.conn.execute(
                "INSERT INTO networks(name, id, bridge, subnet, gateway, created, options) "
                "VALUES ('bridge',?,?,?,?,?,?)",
                (
                    secrets.token_hex(32),
                    self.bridge,
                    str(net),
                    str(net.network_address + 1),
                    _now(),
                    json.dumps(
                        {
                            "com.docker.network.bridge.default_bridge": "true",
                            "com.docker.network.bridge.name": self.bridge,
                        }
                    ),
                ),
            )

    def _reconcile(self) -> None:
        # sandboxes whose netns vanished are forgotten. A sandbox is recorded before its netns
        # is made, so there is no netns of ours without a row; netns that merely share the
        # prefix belong to another driver instance (another state dir) and are left alone.
        for r in self._rows("SELECT * FROM sandboxes"):
            if not Path(r["path"]).exists():
                self.conn.execute(
                    "DELETE FROM sandboxes WHERE container_id=?", (r["container_id"],)
                )
        # endpoints: drop those whose sandbox is gone, re-plumb those whose veth is gone
        for ep in self._rows("SELECT * FROM endpoints"):
            if not Path(ep["netns_path"]).exists():
                self._forget_endpoint(ep["container_id"])
                continue
            idx = self._link_index(ep["veth"])
            if idx is None:
                net = self._network(ep["network"])
                try:
                    self._plumb(ep["veth"], ep["netns_path"], ep["ip"], ep["mac"], net)
                except Exception as e:  # noqa: BLE001 - a broken sandbox must not stop start()
                    log.warning("cannot re-plumb %s: %s", ep["container_id"], e)
                    self._forget_endpoint(ep["container_id"])
        # veths on our bridges that no endpoint owns are leftovers of a crash mid-connect
        owned = {r["veth"] for r in self._rows("SELECT veth FROM endpoints")}
        bridges = {i: b for b in self._our_bridges() if (i := self._link_index(b)) is not None}
        for link in self.ipr.get_links():
            if (
                link.get_attr("IFLA_MASTER") in bridges
                and link.get_attr("IFLA_IFNAME") not in owned
            ):
                self._del_link(link.get_attr("IFLA_IFNAME"))

    def _forget_endpoint(self, container_id: str) -> None:
        ep = self.conn.execute(
            "SELECT * FROM endpoints WHERE container_id=?", (container_id,)
        ).fetchone()
        if ep is None:
            return
        for p in self._rows("SELECT * FROM ports WHERE container_id=?", (container_id,)):
            s = self._held.pop((p["proto"], p["host_ip"], p["host_port"]), None)
            if s:
                s.close()
        self.conn.execute("DELETE FROM ports WHERE container_id=?", (container_id,))
        self.conn.execute("DELETE FROM endpoints WHERE container_id=?", (container_id,))
        self.ipam.release(ep["network"], container_id)

    def info(self) -> dict:
        with self.lock:
            row = self.conn.execute("SELECT * FROM networks WHERE name='bridge'").fetchone()
            return {
                "ip_forward": read_sysctl("net.ipv4.ip_forward") == "1",
                "br_netfilter": Path("/proc/sys/net/bridge").is_dir(),
                "bridge_nf_call_iptables": read_sysctl("net.bridge.bridge-nf-call-iptables") == "1",
                "bridge": self.bridge,
                "subnet": row["subnet"] if row else None,
                "gateway": row["gateway"] if row else None,
                "table": f"{nftables.FAMILY} {self.table}",
                "networks": len(self._rows("SELECT name FROM networks")),
                "published_ports": len(self._rows("SELECT proto FROM ports")),
                "provisioned": list(self.provisioned),
                "userland_proxy": False,
                # published ports and container addresses are IPv4 only; the host has IPv6
                # only if it has a global IPv6 address (then this is the gap to close)
                "ipv6": False,
                "host_has_ipv6": self._host_has_ipv6(),
            }

    def _host_has_ipv6(self) -> bool:
        for a in self.ipr.get_addr(family=socket.AF_INET6):
            addr = ipaddress.IPv6Address(a.get_attr("IFA_ADDRESS"))
            if not (addr.is_loopback or addr.is_link_local):
                return True
        return False

    # ------------------------------------------------------------------ nftables
    def nft_state(self) -> tuple[list[nftables.NetSpec], list[nftables.PortMap]]:
        nets = [
            nftables.NetSpec(r["bridge"], r["subnet"], bool(r["internal"]))
            for r in self._rows("SELECT * FROM networks")
        ]
        ports = [
            nftables.PortMap(
                p["proto"],
                p["host_ip"],
                p["host_port"],
                p["ip"],
                p["container_port"],
                p["container_id"],
            )
            for p in self._rows(
                "SELECT ports.*, endpoints.ip FROM ports JOIN endpoints USING (container_id)"
            )
        ]
        return nets, ports

    def _apply_nft(self) -> None:
        nets, ports = self.nft_state()
        nftables.apply(nftables.build_batch(self.table, nets, ports))

    # ------------------------------------------------------------------ sandboxes
    def create_sandbox(self, container_id: str, *, network: str | None = None) -> str:
        """A named netns for the container with lo up; returns its path (idempotent). Taken
        from the pool when it has one ready and `network` (the one the caller will connect to,
        if it knows) is the default one: then it already has a veth on the default bridge,
        which connect() uses (another network replaces it)."""
        with self.lock:
            row = self.conn.execute(
                "SELECT path FROM sandboxes WHERE container_id=?", (container_id,)
            ).fetchone()
            if row is not None and Path(row["path"]).exists():
                return str(row["path"])
            pooled = (
                self._claim_pooled(container_id)
                if network in (None, "", "default", POOL_NETWORK)
                else None
            )
            if pooled is not None:
                return pooled
            name = self._netns_name(container_id)
            path = str(NETNS_DIR / name)
            self._reap_names(netns=name)  # a teardown of this container's last run, pending
            self.conn.execute(
                "INSERT OR REPLACE INTO sandboxes(container_id, netns, path, veth) "
                "VALUES (?,?,?,'')",
                (container_id, name, path),
            )
            try:
                if Path(path).exists():
                    nsutil.run_in(path, nsutil.loopback_up)
                else:
                    nsutil.create(name, nsutil.loopback_up)
            except BaseException:
                nsutil.remove(name)
                self.conn.execute("DELETE FROM sandboxes WHERE container_id=?", (container_id,))
                raise
            return path

    def sandbox_path(self, container_id: str) -> str | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT path FROM sandboxes WHERE container_id=?", (container_id,)
            ).fetchone()
            return str(row["path"]) if row else None

    def delete_sandbox(self, container_id: str, *, wait: bool = True) -> None:
        """Remove the container's endpoint and netns (idempotent). With wait=False the records
        go now and the kernel objects a moment later (the reaper; start() after a crash)."""
        network = None
        with self.lock:
            ep = self.conn.execute(
                "SELECT * FROM endpoints WHERE container_id=?", (container_id,)
            ).fetchone()
            sb = self.conn.execute(
                "SELECT * FROM sandboxes WHERE container_id=?", (container_id,)
            ).fetchone()
            doomed = None
            with self._tx():
                if ep is not None:
                    doomed = self._doom_endpoint(ep, netns=sb["netns"] if sb else "")
                    network = ep["network"]
                elif sb is not None and (sb["veth"] or sb["netns"]):
                    doomed = self._doom(veth=sb["veth"], netns=sb["netns"])
                self.conn.execute("DELETE FROM sandboxes WHERE container_id=?", (container_id,))
                self.conn.execute("DELETE FROM etcfiles WHERE container_id=?", (container_id,))
            if doomed is not None:
                self._after_doom(doomed, wait)
        if network is not None:
            self._refresh_hosts(network)

    def _remove_netns(self, name: str) -> None:
        with contextlib.suppress(OSError):
            nsutil.remove(name)

    # ------------------------------------------------------------------ the sandbox pool
    def start_pool(self, size: int) -> None:
        """Keep `size` sandboxes for the default network ready (0 stops refilling). A
        background thread refills; close() and the next start() remove what is left."""
        with self.lock:
            if self._closing:
                return
            self._pool_size = max(0, int(size))
            if self._pool_size and self._pool_thread is None:
                self._pool_thread = threading.Thread(
                    target=self._pool_loop, name="netns-pool", daemon=True
                )
                self._pool_thread.start()
            self._pool_cond.notify_all()

    def pool_ready(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM pool WHERE ready=1").fetchone()[0])

    def _claim_pooled(self, container_id: str) -> str | None:
        while self._pool_size > 0:
            r = self.conn.execute(
                "SELECT * FROM pool WHERE ready=1 AND network=? ORDER BY rowid LIMIT 1",
                (POOL_NETWORK,),
            ).fetchone()
            if r is None:
                return None
            fd = self._pool_fds.pop(r["netns"], None)
            with self._tx():
                self.conn.execute("DELETE FROM pool WHERE netns=?", (r["netns"],))
                if fd is not None:
                    self.conn.execute(
                        "INSERT OR REPLACE INTO sandboxes(container_id, netns, path, veth) "
                        "VALUES (?,?,?,?)",
                        (container_id, r["netns"], r["path"], r["veth"]),
                    )
                    doomed = None
                else:  # not made by this process (a leftover row): discard it, take the next
                    doomed = self._doom(veth=r["veth"], netns=r["netns"])
            self._last_claim = time.monotonic()
            self._pool_cond.notify_all()
            if doomed is not None:
                self._after_doom(doomed, wait=False)
                continue
            assert fd is not None
            try:
                # named only now: until here the netns lived on this fd alone, so a daemon that
                # dies takes its pool (netns and veth pair) with it
                return nsutil.pin(fd, r["netns"])
            except OSError as e:
                log.warning("pooled sandbox %s: %s", r["netns"], e)
                with self._tx():
                    self.conn.execute("DELETE FROM sandboxes WHERE container_id=?",
                                      (container_id,))
                    doomed = self._doom(veth=r["veth"])
                self._after_doom(doomed, wait=False)
            finally:
                os.close(fd)
        return None

    def _pool_loop(self) -> None:
        failures = 0
        while True:
            with self.lock:
                while not self._closing and (
                    self.conn.execute("SELECT COUNT(*) FROM pool").fetchone()[0]
                    >= self._pool_size
                ):
                    self._pool_cond.wait()
                if self._closing:
                    return
                quiet = self._last_claim + POOL_REFILL_DELAY - time.monotonic()
                if quiet > 0:
                    self._pool_cond.wait(quiet)
                    continue
            try:
                self._pool_fill_one()
                failures = 0
            except Exception as e:  # noqa: BLE001 - a start without the pool still works
                failures += 1
                log.warning("sandbox pool: %s", e)
                with self.lock:
                    self._pool_cond.wait(min(30.0, 0.5 * 2**failures))

    def _pool_fill_one(self) -> None:
        """One pooled sandbox: record it, make the netns and the veth, then mark it ready."""
        from pyroute2 import IPRoute

        token = secrets.token_hex(8)
        name = f"{self.netns_prefix}pool-{token}"
        veth = self.veth_prefix + "p" + token[: 14 - len(self.veth_prefix)]
        with self.lock:
            if self._closing:
                return
            net = self._network(POOL_NETWORK)
            br_idx = self._link_index(net["bridge"])
            if br_idx is None:
                raise SystemError_(f"bridge {net['bridge']} is missing")
            mtu = self.ipr.get_links(br_idx)[0].get_attr("IFLA_MTU") or self.mtu
            path = str(NETNS_DIR / name)
            self.conn.execute(
                "INSERT INTO pool(netns, path, veth, network, ready) VALUES (?,?,?,?,0)",
                (name, path, veth, POOL_NETWORK),
            )
            if self._pool_ipr is None:
                self._pool_ipr = IPRoute()
            ipr = self._pool_ipr
        fd = -1
        try:  # the kernel work runs without the lock: connects go on meanwhile
            fd = nsutil.create_held(nsutil.loopback_up)
            with self.lock:
                self._pool_fds[name] = fd
            ipr.link(
                "add",
                ifname=veth,
                kind="veth",
                mtu=mtu,
                peer={"ifname": "eth0", "net_ns_fd": fd, "mtu": mtu},
            )
            idx = ipr.link_lookup(ifname=veth)[0]
            ipr.link("set", index=idx, master=br_idx, state="up")
            ipr.brport("set", index=idx, mode=1)  # IFLA_BRPORT_MODE: hairpin
        except BaseException:
            with self.lock:
                with self._tx():
                    self.conn.execute("DELETE FROM pool WHERE netns=?", (name,))
                    doomed = self._doom(veth=veth, netns=name)
                self._after_doom(doomed, wait=True)
                if self._pool_fds.pop(name, None) is not None:
                    os.close(fd)
            raise
        with self.lock:
            self.conn.execute("UPDATE pool SET ready=1 WHERE netns=?", (name,))

    def _drain_pool(self) -> None:
        """Remove every pooled sandbox (ready or half-made) now."""
        with self.lock:
            rows = self._rows("SELECT * FROM pool")
            if not rows:
                self._close_pool_fds()
                return
            ids = []
            with self._tx():
                for r in rows:
                    self.conn.execute("DELETE FROM pool WHERE netns=?", (r["netns"],))
                    ids.append(self._doom(veth=r["veth"], netns=r["netns"]))
            self._reap_ids(ids)
            self._close_pool_fds()

    def _close_pool_fds(self) -> None:
        with self.lock:
            fds, self._pool_fds = list(self._pool_fds.values()), {}
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    # ------------------------------------------------------------------ deferred teardown
    def _doom(self, *, veth: str = "", netns: str = "", network: str = "", owner: str = "",
              ip: str = "", ports: list | None = None) -> int:
        """Record kernel objects to remove (call inside a transaction); returns the row id."""
        cur = self.conn.execute(
            "INSERT INTO doomed(veth, netns, network, owner, ip, ports) VALUES (?,?,?,?,?,?)",
            (veth, netns, network, owner, ip, json.dumps(ports or [])),
        )
        return int(cur.lastrowid or 0)

    def _doom_endpoint(self, ep: sqlite3.Row, netns: str = "") -> int:
        """Inside a transaction: drop the endpoint's records and its rules' inputs; its veth
        (and netns, if given) are doomed and its address is held by a placeholder owner until
        they are gone. Reservations of its host ports are released by the caller."""
        cid = ep["container_id"]
        ports = self._rows("SELECT * FROM ports WHERE container_id=?", (cid,))
        owner = f"~doomed-{secrets.token_hex(8)}"
        self.conn.execute("DELETE FROM ports WHERE container_id=?", (cid,))
        self.conn.execute("DELETE FROM endpoints WHERE container_id=?", (cid,))
        self.conn.execute(
            "UPDATE ipam SET owner=? WHERE network=? AND owner=?", (owner, ep["network"], cid)
        )
        self.conn.execute("UPDATE sandboxes SET veth='' WHERE container_id=?", (cid,))
        if ports:
            self._apply_nft()
        for p in ports:
            s = self._held.pop((p["proto"], p["host_ip"], p["host_port"]), None)
            if s:
                s.close()
        return self._doom(
            veth=ep["veth"], netns=netns, network=ep["network"], owner=owner, ip=ep["ip"],
            ports=[[p["proto"], p["host_port"]] for p in ports],
        )

    def _after_doom(self, row_id: int, wait: bool) -> None:
        if wait:
            self._reap_ids([row_id])
        else:
            self._kick_reaper()

    def _kick_reaper(self) -> None:
        with self.lock:
            if self._closing:
                self._reap_all()
                return
            self._last_doom = time.monotonic()
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap_loop, name="netns-reaper",
                                                daemon=True)
                self._reaper.start()
            self._reap_cond.notify_all()

    def _reap_loop(self) -> None:
        while True:
            with self.lock:
                while not self._closing and self.conn.execute(
                    "SELECT 1 FROM doomed LIMIT 1"
                ).fetchone() is None:
                    self._reap_cond.wait()
                if self._closing:
                    return
                quiet = self._last_doom + REAP_DELAY - time.monotonic()
                if quiet > 0:
                    self._reap_cond.wait(quiet)
                    continue
                ids = [r["id"] for r in self._rows("SELECT id FROM doomed ORDER BY id")]
                self._reaping = True
            try:
                for i in ids:
                    self._reap_ids([i])  # one at a time: connects get the lock in between
            except Exception as e:  # noqa: BLE001 - retried at the next kick or start()
                log.warning("teardown: %s", e)
                with self.lock:
                    self._reap_cond.wait(1.0)
            finally:
                with self.lock:
                    self._reaping = False
                    self._reap_cond.notify_all()

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until no teardown is pending (tests, benchmarks); True when none is."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self._reaping or self.conn.execute(
                "SELECT 1 FROM doomed LIMIT 1"
            ).fetchone() is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if self._reaper is None or self._closing:
                    self._reap_all()
                    continue
                self._reap_cond.wait(min(left, 0.1))
            return True

    def _reap_all(self) -> None:
        with self.lock:
            self._reap_ids([r["id"] for r in self._rows("SELECT id FROM doomed ORDER BY id")])

    def _reap_names(self, *, veth: str = "", netns: str = "") -> None:
        """Finish pending teardowns of objects named like one about to be made (call with the
        lock held, outside a transaction)."""
        with self.lock:
            while (veth and veth in self._busy) or (netns and netns in self._busy):
                self._reap_cond.wait()
            rows = self._rows(
                "SELECT id FROM doomed WHERE (veth<>'' AND veth=?) OR (netns<>'' AND netns=?)",
                (veth, netns),
            )
            if rows:
                self._reap_ids([r["id"] for r in rows])

    def _owned(self, veth: str, netns: str) -> tuple[bool, bool]:
        """Whether a live record (endpoint, sandbox, pool) names this veth / netns again."""
        v = bool(veth) and any(
            self.conn.execute(sql, (veth,)).fetchone()
            for sql in (
                "SELECT 1 FROM endpoints WHERE veth=?",
                "SELECT 1 FROM pool WHERE veth=?",
                "SELECT 1 FROM sandboxes WHERE veth=?",
            )
        )
        n = bool(netns) and any(
            self.conn.execute(sql, (netns,)).fetchone()
            for sql in (
                "SELECT 1 FROM sandboxes WHERE netns=?",
                "SELECT 1 FROM pool WHERE netns=?",
            )
        )
        return v, n

    def _reap_ids(self, ids: list[int]) -> None:
        """Remove the doomed objects: veth, netns, conntrack entries, then free the address.

        The kernel work runs without the driver lock (deleting a veth waits for an RCU grace
        period, ~20 ms): the names being removed are marked busy instead, and whoever is about
        to make an object of the same name waits for them (_reap_names)."""
        for i in ids:
            with self.lock:
                while i in self._busy_ids:  # another thread is on it
                    self._reap_cond.wait()
                r = self.conn.execute("SELECT * FROM doomed WHERE id=?", (i,)).fetchone()
                if r is None:
                    continue
                veth_owned, netns_owned = self._owned(r["veth"], r["netns"])
                names = {n for n in (r["veth"], r["netns"]) if n}
                self._busy_ids.add(i)
                self._busy.update(names)
            try:
                if r["veth"] and not veth_owned:
                    self._reap_link(r["veth"])
                if r["netns"] and not netns_owned:
                    self._remove_netns(r["netns"])
                if r["ip"]:
                    conntrack.flush(
                        [tuple(p) for p in json.loads(r["ports"])], container_ip=r["ip"]
                    )
                with self.lock:
                    with self._tx():
                        if r["owner"]:
                            self.ipam.release(r["network"], r["owner"])
                        self.conn.execute("DELETE FROM doomed WHERE id=?", (i,))
            finally:
                with self.lock:
                    self._busy_ids.discard(i)
                    self._busy.difference_update(names)
                    self._reap_cond.notify_all()

    def _reap_link(self, name: str) -> None:
        """Delete a link through the reapers' own netlink socket (never the driver lock)."""
        from pyroute2 import IPRoute

        with self._reap_ipr_lock:
            if self._reap_ipr is None:
                self._reap_ipr = IPRoute()
            found = self._reap_ipr.link_lookup(ifname=name)
            if found:
                with contextlib.suppress(Exception):
                    self._reap_ipr.link("del", index=found[0])

    def _del_link(self, name: str) -> None:
        idx = self._link_index(name)
        if idx is not None:
            with contextlib.suppress(Exception):
                self.ipr.link("del", index=idx)

    # ------------------------------------------------------------------ ports
    def _bind(self, proto: str, host_ip: str, port: int) -> socket.socket:
        """Reserve host_ip:port the way dockerd does (a bound socket); raises OSError."""
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        try:
            if proto == "tcp":
                # like Go's listeners: a TIME_WAIT leftover must not look like a conflict, while
                # a LISTEN socket on the port (any local address for 0.0.0.0) still is one
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host_ip, port))
        except BaseException:
            s.close()
            raise
        return s

    @staticmethod
    def _overlap(ip_a: str, ip_b: str) -> bool:
        return ip_a == ip_b or "0.0.0.0" in (ip_a, ip_b)

    def _allocated(
        self, proto: str, host_ip: str, port: int, pending: list[tuple[str, str, int]]
    ) -> bool:
        for p_proto, p_ip, p_port in pending:
            if p_proto == proto and p_port == port and self._overlap(p_ip, host_ip):
                return True
        for r in self._rows(
            "SELECT host_ip FROM ports WHERE proto=? AND host_port=?", (proto, port)
        ):
            if self._overlap(r["host_ip"], host_ip):
                return True
        return False

    def _check_local(self, host_ip: str) -> None:
        if host_ip == "0.0.0.0":
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((host_ip, 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidParameter(
                    f"invalid HostIp: {host_ip!r}: not an address of this host"
                ) from None
            raise
        finally:
            s.close()

    def _try_port(self, req: BindingRequest, port: int, pending, held) -> bool:
        if self._allocated(req.proto, req.host_ip, port, pending):
            return False
        try:
            s = self._bind(req.proto, req.host_ip, port)
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        held[(req.proto, req.host_ip, port)] = s
        pending.append((req.proto, req.host_ip, port))
        return True

    def _allocate_ports(
        self, reqs: list[BindingRequest]
    ) -> tuple[list[tuple[BindingRequest, int]], dict]:
        """Pick host ports for all requests, holding each with a bound socket; all or nothing."""
        pending: list[tuple[str, str, int]] = []
        held: dict[tuple[str, str, int], socket.socket] = {}
        out: list[tuple[BindingRequest, int]] = []
        try:
            for req in reqs:
                self._check_local(req.host_ip)
            # fixed ports first so that ranges/ephemeral ones never steal them
            order = sorted(
                range(len(reqs)),
                key=lambda i: reqs[i].host_range is None or len(reqs[i].host_range or ()) > 1,
            )
            chosen: dict[int, int] = {}
            for i in order:
                req = reqs[i]
                rng = req.host_range
                if rng is not None and len(rng) == 1:
                    if not self._try_port(req, rng.start, pending, held):
                        raise Conflict(
                            f"Bind for {req.host_ip}:{rng.start} failed: port is already allocated"
                        )
                    chosen[i] = rng.start
                    continue
                if rng is not None:
                    candidates: Any = list(rng)
                    reserved: set[int] = set()
                else:
                    eph, reserved = ephemeral_ports()
                    start = self._cursor.get(req.proto, eph.start)
                    if start not in eph:
                        start = eph.start
                    off = start - eph.start
                    candidates = (eph[(off + k) % len(eph)] for k in range(len(eph)))
                for port in candidates:
                    if port in reserved:
                        continue
                    if self._try_port(req, port, pending, held):
                        chosen[i] = port
                        if rng is None:
                            self._cursor[req.proto] = port + 1
                        break
                else:
                    what = str(rng) if rng is not None else "an ephemeral port"
                    raise Conflict(
                        f"Bind for {req.host_ip}:{what} failed: port is already allocated"
                    )
            out = [(reqs[i], chosen[i]) for i in range(len(reqs))]
        except BaseException:
            for s in held.values():
                s.close()
            raise
        return out, held

    # ------------------------------------------------------------------ connect
    def _plumb(self, veth: str, netns_path: str, ip: str, mac: str, net: sqlite3.Row) -> None:
        br_idx = self._link_index(net["bridge"])
        if br_idx is None:
            raise SystemError_(f"bridge {net['bridge']} is missing")
        mtu = self.ipr.get_links(br_idx)[0].get_attr("IFLA_MTU") or self.mtu
        prefix = ipaddress.IPv4Network(net["subnet"]).prefixlen
        fd = os.open(netns_path, os.O_RDONLY)
        try:
            self.ipr.link(
                "add",
                ifname=veth,
                kind="veth",
                mtu=mtu,
                peer={"ifname": "eth0", "net_ns_fd": fd, "address": mac},
            )
        finally:
            os.close(fd)
        try:
            idx = self._link_index(veth)
            self.ipr.link("set", index=idx, master=br_idx, state="up")
            self.ipr.brport("set", index=idx, mode=1)  # IFLA_BRPORT_MODE: hairpin
            self._configure_eth0(netns_path, ip, prefix, net["gateway"], mtu=mtu)
        except BaseException:
            self._del_link(veth)
            raise

    @staticmethod
    def _configure_eth0(netns_path: str, ip: str, prefix: int, gateway: str, *,
                        mtu: int | None = None, mac: str | None = None) -> None:
        """Inside the sandbox: lo and eth0 up, eth0's address (and MAC), the default route."""

        def body() -> None:
            from pyroute2 import IPRoute

            with IPRoute() as ns:
                lo = ns.link_lookup(ifname="lo")[0]
                ns.link("set", index=lo, state="up")
                found = ns.link_lookup(ifname="eth0")
                if not found:
                    raise SystemError_(f"no eth0 in {netns_path}")
                eth = found[0]
                if mtu is not None:
                    ns.link("set", index=eth, mtu=mtu)
                if mac is not None:
                    ns.link("set", index=eth, address=mac)
                ns.addr("add", index=eth, address=ip, prefixlen=prefix)
                ns.link("set", index=eth, state="up")
                ns.route("add", dst="0.0.0.0/0", gateway=gateway)

        nsutil.run_in(netns_path, body)

    def _use_pooled(self, veth: str, netns_path: str, ip: str, mac: str,
                    net: sqlite3.Row) -> bool:
        """Give a pooled sandbox's eth0 its address; False (and the pooled veth gone) when it
        cannot be used, so the caller plumbs a new one."""
        if net["name"] != POOL_NETWORK or self._link_index(veth) is None:
            self._del_link(veth)
            return False
        prefix = ipaddress.IPv4Network(net["subnet"]).prefixlen
        try:
            self._configure_eth0(netns_path, ip, prefix, net["gateway"], mac=mac)
        except Exception as e:  # noqa: BLE001 - fall back to a veth of its own
            log.warning("pooled sandbox %s unusable, plumbing a new veth: %s", netns_path, e)
            self._del_link(veth)
            return False
        return True

    def connect(
        self,
        container_id: str,
        netns_path: str,
        network: str = "bridge",
        *,
        port_bindings: dict | None = None,
        publish_all: bool = False,
        exposed_ports=(),
        hostname: str = "",
        aliases=(),
    ) -> dict:
        """Attach the container's netns to a network and publish its ports (all or nothing)."""
        reqs = normalize_bindings(port_bindings, exposed_ports, publish_all)
        with self.lock:
            if network in ("none", "host") or network.startswith("container:"):
                raise InvalidParameter(
                    f"invalid network: {network!r}: mode {network.split(':')[0]} is handled by "
                    "the caller (no driver endpoint)"
                )
            net = self._network(network)
            if self.conn.execute(
                "SELECT 1 FROM endpoints WHERE container_id=?", (container_id,)
            ).fetchone():
                raise Conflict(f"container {container_id} is already connected to a network")
            if not Path(netns_path).exists():
                raise InvalidParameter(f"invalid netns path: {netns_path!r}: does not exist")
            if net["internal"] and reqs:
                reqs = []  # docker: internal networks publish nothing
            mappings, held = self._allocate_ports(reqs)
            sb = self.conn.execute(
                "SELECT veth FROM sandboxes WHERE container_id=? AND path=?",
                (container_id, netns_path),
            ).fetchone()
            pooled = sb["veth"] if sb is not None else ""
            veth = self._veth_name(container_id)
            plumbed = False
            try:
                self._reap_names(veth=veth)  # a teardown of this container's last run, pending
                with self._tx():
                    ip = self.ipam.allocate(net["name"], container_id, in_tx=True)
                    mac = mac_for(ip)
                    if pooled:
                        self.conn.execute(
                            "UPDATE sandboxes SET veth='' WHERE container_id=?", (container_id,)
                        )
                        if self._use_pooled(pooled, netns_path, ip, mac, net):
                            veth = pooled
                            plumbed = True
                    if not plumbed:
                        self._del_link(veth)  # a leftover of an earlier crash with the same id
                        self._plumb(veth, netns_path, ip, mac, net)
                        plumbed = True
                    self.conn.execute(
                        "INSERT INTO endpoints(container_id, network, ip, mac, veth, netns_path, "
                        "hostname, aliases, endpoint_id) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            container_id,
                            net["name"],
                            ip,
                            mac,
                            veth,
                            netns_path,
                            hostname,
                            json.dumps(list(aliases)),
                            secrets.token_hex(32),
                        ),
                    )
                    for req, port in mappings:
                        self.conn.execute(
                            "INSERT INTO ports(container_id, proto, host_ip, host_port, "
                            "container_port) VALUES (?,?,?,?,?)",
                            (container_id, req.proto, req.host_ip, port, req.container_port),
                        )
                    if mappings:  # without ports the table's content does not change
                        self._apply_nft()
            except BaseException:
                for s in held.values():
                    s.close()
                if plumbed:
                    self._del_link(veth)
                raise
            self._held.update(held)
        udp = [(req.proto, port) for req, port in mappings if req.proto == "udp"]
        if udp:
            conntrack.flush(udp)
        self._refresh_hosts(net["name"])
        return self.settings(container_id, exposed_ports)

    def settings(self, container_id: str, exposed_ports=()) -> dict:
        """docker's NetworkSettings for the container (empty if it has no endpoint)."""
        with self.lock:
            ep = self.conn.execute(
                "SELECT * FROM endpoints WHERE container_id=?", (container_id,)
            ).fetchone()
            sb = self.sandbox_path(container_id)
            ports: dict[str, list[dict] | None] = {}
            keys = exposed_ports.keys() if isinstance(exposed_ports, dict) else exposed_ports
            for key in keys:
                k = key if "/" in key else f"{key}/tcp"
                ports.setdefault(k, None)
            for p in self._rows(
                "SELECT * FROM ports WHERE container_id=? ORDER BY proto, container_port, host_port",
                (container_id,),
            ):
                lst = ports.get(f"{p['container_port']}/{p['proto']}") or []
                lst.append({"HostIp": p["host_ip"], "HostPort": str(p["host_port"])})
                ports[f"{p['container_port']}/{p['proto']}"] = lst
            out: dict[str, Any] = {
                "Bridge": "",
                "SandboxID": hashlib.sha256(container_id.encode()).hexdigest() if sb else "",
                "SandboxKey": (ep["netns_path"] if ep else sb) or "",
                "HairpinMode": False,
                "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0,
                "Ports": ports,
                "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None,
                "EndpointID": "",
                "Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "IPAddress": "",
                "IPPrefixLen": 0,
                "IPv6Gateway": "",
                "MacAddress": "",
                "Networks": {},
            }
            if ep is None:
                return out
            net = self._network(ep["network"])
            prefix = ipaddress.IPv4Network(net["subnet"]).prefixlen
            aliases = json.loads(ep["aliases"])
            entry = {
                "IPAMConfig": None,
                "Links": None,
                "Aliases": aliases or None,
                "MacAddress": ep["mac"],
                "NetworkID": net["id"],
                "EndpointID": ep["endpoint_id"],
                "Gateway": net["gateway"],
                "IPAddress": ep["ip"],
                "IPPrefixLen": prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DriverOpts": None,
                "DNSNames": self._names(ep) if net["name"] != "bridge" else None,
            }
            out["Networks"][net["name"]] = entry
            # like docker, the top-level fields describe the default bridge endpoint; we fill
            # them for any single network so callers have one place to look
            out.update(
                {
                    "EndpointID": ep["endpoint_id"],
                    "Gateway": net["gateway"],
                    "IPAddress": ep["ip"],
                    "IPPrefixLen": prefix,
                    "MacAddress": ep["mac"],
                }
            )
            return out

    # ------------------------------------------------------------------ disconnect
    def disconnect(self, container_id: str, *, wait: bool = True) -> None:
        """Remove the endpoint, its rules, reservations, conntrack entries, veth and address.
        With wait=False the veth, conntrack entries and address go a moment later."""
        with self.lock:
            ep = self.conn.execute(
                "SELECT * FROM endpoints WHERE container_id=?", (container_id,)
            ).fetchone()
            if ep is None:
                return
            with self._tx():
                doomed = self._doom_endpoint(ep)
            self._after_doom(doomed, wait)
        self._refresh_hosts(ep["network"])

    # ------------------------------------------------------------------ /etc files
    def _names(self, ep: sqlite3.Row) -> list[str]:
        names: list[str] = []
        for n in [*json.loads(ep["aliases"]), ep["hostname"], ep["container_id"][:12]]:
            if n and n not in names:
                names.append(n)
        return names

    def _hosts_for(self, container_id: str, hostname: str) -> str:
        ep = self.conn.execute(
            "SELECT * FROM endpoints WHERE container_id=?", (container_id,)
        ).fetchone()
        if ep is None:
            return etcfiles.render_hosts(None, [])
        own_names = [hostname or ep["hostname"] or container_id[:12]]
        own_names += [n for n in self._names(ep) if n not in own_names]
        peers = []
        if ep["network"] != "bridge":
            for other in self._rows(
                "SELECT * FROM endpoints WHERE network=? AND container_id<>?",
                (ep["network"], container_id),
            ):
                peers.append((other["ip"], self._names(other)))
        return etcfiles.render_hosts((ep["ip"], own_names), peers)

    def write_etc_files(self, container_id: str, dir: Path, hostname: str) -> dict[str, str]:
        """Write hosts/resolv.conf/hostname into dir; returns {path in container: host path}."""
        with self.lock:
            d = Path(dir)
            d.mkdir(parents=True, exist_ok=True)
            self.conn.execute(
                "INSERT OR REPLACE INTO etcfiles(container_id, dir, hostname) VALUES (?,?,?)",
                (container_id, str(d), hostname),
            )
            try:
                host_resolv = Path("/etc/resolv.conf").read_text()
            except OSError:
                host_resolv = ""
            hosts = self._hosts_for(container_id, hostname)
            etcfiles.write_in_place(d / "hosts", hosts)
            self.conn.execute(
                "UPDATE etcfiles SET hosts=? WHERE container_id=?", (hosts, container_id)
            )
            etcfiles.write_in_place(d / "resolv.conf", etcfiles.render_resolv_conf(host_resolv))
            etcfiles.write_in_place(d / "hostname", (hostname or container_id[:12]) + "\n")
            return {
                "/etc/hosts": str(d / "hosts"),
                "/etc/resolv.conf": str(d / "resolv.conf"),
                "/etc/hostname": str(d / "hostname"),
            }

    def _refresh_hosts(self, network: str) -> None:
        """Rewrite the hosts file of every member of a network that has etc files."""
        if network == "bridge":
            return  # the default network lists no peers: its members' files never change
        with self.lock:
            for r in self._rows(
                "SELECT etcfiles.* FROM etcfiles JOIN endpoints USING (container_id) "
                "WHERE endpoints.network=?",
                (network,),
            ):
                path = Path(r["dir"]) / "hosts"
                if not path.parent.is_dir():
                    continue
                with contextlib.suppress(OSError):
                    # lines the caller appended after our block (ExtraHosts) are kept
                    current = path.read_text() if path.exists() else ""
                    old = r["hosts"]
                    tail = current[len(old) :] if old and current.startswith(old) else ""
                    new = self._hosts_for(r["container_id"], r["hostname"])
                    etcfiles.write_in_place(path, new + tail)
                    self.conn.execute(
                        "UPDATE etcfiles SET hosts=? WHERE container_id=?", (new, r["container_id"])
                    )

    # ------------------------------------------------------------------ teardown
    def destroy_all(self) -> None:
        """Remove every kernel object and record of this driver (tests, `skiffd --reset`)."""
        self._stop_background()
        with self.lock:
            self._drain_pool()
            self._reap_all()
            for r in self._rows("SELECT container_id FROM sandboxes"):
                self.delete_sandbox(r["container_id"])
            for r in self._rows("SELECT container_id FROM endpoints"):
                self.disconnect(r["container_id"])
            nftables.apply(nftables.delete_batch(self.table))
            for r in self._rows("SELECT bridge FROM networks"):
                self._del_link(r["bridge"])
            self.conn.execute("DELETE FROM networks")
            self.conn.execute("DELETE FROM ipam_cursor")
            self.close()

    def mappings(self) -> list[dict]:
        """All published ports (for tests/property models and `docker port`)."""
        with self.lock:
            return [
                dict(r)
                for r in self._rows(
                    "SELECT ports.*, endpoints.ip AS container_ip FROM ports "
                    "JOIN endpoints USING (container_id) ORDER BY proto, host_port, host_ip"
                )
            ]


def parse_network_mode(mode: str | None) -> tuple[str, str]:
    """HostConfig.NetworkMode -> (kind, arg): ("bridge", "bridge"), ("none", ""), ("host", ""),
    ("container", "<id>"), or ("bridge", "<user network>") for a named network."""
    m = (mode or "").strip()
    if m in ("", "default", "bridge"):
        return "bridge", "bridge"
    if m in ("none", "host"):
        return m, ""
    if m.startswith("container:"):
        ref = m.split(":", 1)[1]
        if not ref:
            raise InvalidParameter(f"invalid NetworkMode: {mode!r}: container reference missing")
        return "container", ref
    return "bridge", m
