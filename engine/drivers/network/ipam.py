"""Address management: one SQLite database under the driver's state dir.

Why SQLite and not a JSON file: allocation must survive a crash between "address chosen" and
"interface configured" without ever handing the same address to two live endpoints; a UNIQUE
constraint plus WAL gives that for free. Allocation rotates (next after the last one handed out)
so a just-released address is not reused at once, which keeps stale ARP/conntrack entries of a
removed container from hitting its successor.
"""

from __future__ import annotations

import ipaddress
import sqlite3
import threading
from pathlib import Path

from engine.errors import Conflict, NotFound, Unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    bridge TEXT NOT NULL UNIQUE,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    created TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    internal INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ipam (
    network TEXT NOT NULL,
    ip TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (network, ip),
    UNIQUE (network, owner)
);
CREATE TABLE IF NOT EXISTS ipam_cursor (
    network TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sandboxes (
    container_id TEXT PRIMARY KEY,
    netns TEXT NOT NULL,
    path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    container_id TEXT PRIMARY KEY,
    network TEXT NOT NULL,
    ip TEXT NOT NULL,
    mac TEXT NOT NULL,
    veth TEXT NOT NULL UNIQUE,
    netns_path TEXT NOT NULL,
    hostname TEXT NOT NULL DEFAULT '',
    aliases TEXT NOT NULL DEFAULT '[]',
    endpoint_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ports (
    container_id TEXT NOT NULL,
    proto TEXT NOT NULL,
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (proto, host_ip, host_port)
);
CREATE TABLE IF NOT EXISTS etcfiles (
    container_id TEXT PRIMARY KEY,
    dir TEXT NOT NULL,
    hostname TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- sandboxes made ahead of time (netns + veth on the default bridge, no address yet); a row is
-- written before its kernel objects exist, so a crash never leaks one (start() drains them)
CREATE TABLE IF NOT EXISTS pool (
    netns TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    veth TEXT NOT NULL UNIQUE,
    network TEXT NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0
);
-- kernel objects whose records are gone and that the reaper still has to remove; the address
-- stays allocated (to owner) until the veth is gone, so nobody else gets it meanwhile
CREATE TABLE IF NOT EXISTS doomed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    veth TEXT NOT NULL DEFAULT '',
    netns TEXT NOT NULL DEFAULT '',
    network TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    ports TEXT NOT NULL DEFAULT '[]'
);
"""


def open_db(state_dir: Path) -> sqlite3.Connection:
    state_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(state_dir / "network.db"), isolation_level=None, check_same_thread=False, timeout=30
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    cols = {r["name"] for r in conn.execute("PRAGMA table_info(etcfiles)")}
    if "hosts" not in cols:  # the hosts block last written (to keep lines appended after it)
        conn.execute("ALTER TABLE etcfiles ADD COLUMN hosts TEXT NOT NULL DEFAULT ''")
    cols = {r["name"] for r in conn.execute("PRAGMA table_info(sandboxes)")}
    if "veth" not in cols:  # the pooled veth a sandbox came with ('' when it has none)
        conn.execute("ALTER TABLE sandboxes ADD COLUMN veth TEXT NOT NULL DEFAULT ''")
    return conn


class IPAM:
    """Allocate/release IPv4 addresses per network; the gateway is the first host address."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock | None = None) -> None:
        self.conn = conn
        self.lock = lock or threading.RLock()

    def _subnet(self, network: str) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
        row = self.conn.execute(
            "SELECT subnet, gateway FROM networks WHERE name=?", (network,)
        ).fetchone()
        if row is None:
            raise NotFound(f"network {network} not found")
        return ipaddress.IPv4Network(row["subnet"]), ipaddress.IPv4Address(row["gateway"])

    def allocate(self, network: str, owner: str, *, in_tx: bool = False) -> str:
        """Return a free address for owner (the same one if owner already holds one)."""
        with self.lock:
            held = self.address_of(network, owner)
            if held:
                return held
            net, gw = self._subnet(network)
            first = int(net.network_address) + 1
            last = int(net.broadcast_address) - 1
            size = last - first + 1
            row = self.conn.execute(
                "SELECT last FROM ipam_cursor WHERE network=?", (network,)
            ).fetchone()
            cursor = row["last"] if row else first - 1
            used = {
                int(ipaddress.IPv4Address(r["ip"]))
                for r in self.conn.execute("SELECT ip FROM ipam WHERE network=?", (network,))
            }
            used.add(int(gw))
            for step in range(1, size + 1):
                cand = first + (cursor - first + step) % size
                if cand in used:
                    continue
                ip = str(ipaddress.IPv4Address(cand))
                if not in_tx:
                    self.conn.execute("BEGIN IMMEDIATE")
                try:
                    self.conn.execute(
                        "INSERT INTO ipam(network, ip, owner) VALUES (?,?,?)", (network, ip, owner)
                    )
                    self.conn.execute(
                        "INSERT INTO ipam_cursor(network, last) VALUES (?,?) "
                        "ON CONFLICT(network) DO UPDATE SET last=excluded.last",
                        (network, cand),
                    )
                except sqlite3.IntegrityError as e:
                    if not in_tx:
                        self.conn.execute("ROLLBACK")
                    raise Conflict(f"address {ip} already allocated on {network}") from e
                if not in_tx:
                    self.conn.execute("COMMIT")
                return ip
            raise Unavailable(f"no free address left in {net} (network {network})")

    def release(self, network: str, owner: str) -> None:
        with self.lock:
            self.conn.execute("DELETE FROM ipam WHERE network=? AND owner=?", (network, owner))

    def address_of(self, network: str, owner: str) -> str | None:
        row = self.conn.execute(
            "SELECT ip FROM ipam WHERE network=? AND owner=?", (network, owner)
        ).fetchone()
        return row["ip"] if row else None

    def allocations(self, network: str | None = None) -> dict[str, str]:
        """owner -> address (for one network or all)."""
        if network is None:
            rows = self.conn.execute("SELECT owner, ip FROM ipam")
        else:
            rows = self.conn.execute("SELECT owner, ip FROM ipam WHERE network=?", (network,))
        return {r["owner"]: r["ip"] for r in rows}
