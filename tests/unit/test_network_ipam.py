"""IPAM: allocate/release, never twice, rotation, persistence across a reopen (crash)."""

from __future__ import annotations

import ipaddress

import pytest

from engine.drivers.network.etcfiles import render_hosts, render_resolv_conf
from engine.drivers.network.ipam import IPAM, open_db
from engine.errors import NotFound, Unavailable


def _net(conn, name="n1", subnet="10.205.0.0/29", gateway="10.205.0.1"):
    conn.execute(
        "INSERT INTO networks(name, id, bridge, subnet, gateway, created) VALUES (?,?,?,?,?,?)",
        (name, name + "id", name + "br", subnet, gateway, "now"),
    )


def test_allocate_skips_gateway_network_broadcast(tmp_path):
    conn = open_db(tmp_path)
    _net(conn)
    ipam = IPAM(conn)
    got = [ipam.allocate("n1", f"c{i}") for i in range(5)]
    assert got == [f"10.205.0.{i}" for i in range(2, 7)]
    with pytest.raises(Unavailable):
        ipam.allocate("n1", "c-extra")


def test_same_owner_gets_same_address(tmp_path):
    conn = open_db(tmp_path)
    _net(conn)
    ipam = IPAM(conn)
    assert ipam.allocate("n1", "a") == ipam.allocate("n1", "a")


def test_release_rotates_and_never_duplicates(tmp_path):
    conn = open_db(tmp_path)
    _net(conn, subnet="10.205.0.0/28")
    ipam = IPAM(conn)
    a = ipam.allocate("n1", "a")
    b = ipam.allocate("n1", "b")
    ipam.release("n1", "a")
    c = ipam.allocate("n1", "c")
    assert c not in (a, b)  # the just-released address is not reused at once
    live: dict[str, str] = {}
    for i in range(200):  # churn: the live set never holds one address twice
        owner = f"x{i}"
        live[owner] = ipam.allocate("n1", owner)
        assert len(set(live.values())) == len(live)
        if len(live) > 5:
            victim = sorted(live)[0]
            ipam.release("n1", victim)
            del live[victim]
    assert all(
        ipaddress.ip_address(ip) in ipaddress.ip_network("10.205.0.0/28") for ip in live.values()
    )


def test_persisted_across_reopen(tmp_path):
    conn = open_db(tmp_path)
    _net(conn)
    a = IPAM(conn).allocate("n1", "a")
    conn.close()  # as after a crash: a new connection on the same file
    conn2 = open_db(tmp_path)
    ipam2 = IPAM(conn2)
    assert ipam2.address_of("n1", "a") == a
    assert ipam2.allocate("n1", "b") not in (a, "10.205.0.1")
    assert ipam2.allocations("n1") == {"a": a, "b": ipam2.address_of("n1", "b")}


def test_networks_are_independent(tmp_path):
    conn = open_db(tmp_path)
    _net(conn)
    _net(conn, "n2", "10.205.1.0/29", "10.205.1.1")
    ipam = IPAM(conn)
    assert ipam.allocate("n1", "a") == "10.205.0.2"
    assert ipam.allocate("n2", "a") == "10.205.1.2"
    with pytest.raises(NotFound):
        ipam.allocate("nope", "a")


def test_resolv_conf_drops_loopback_and_falls_back():
    host = "search example.org\nnameserver 127.0.0.53\nnameserver 10.1.2.3\noptions edns0\n"
    assert render_resolv_conf(host) == "search example.org\nnameserver 10.1.2.3\noptions edns0\n"
    only_lo = "nameserver 127.0.0.53\nnameserver ::1\n"
    out = render_resolv_conf(only_lo)
    assert "127.0.0.53" not in out and "::1" not in out
    assert "nameserver 8.8.8.8" in out and "nameserver 8.8.4.4" in out


def test_hosts_rendering():
    out = render_hosts(
        ("10.0.0.2", ["web", "abc123"]), [("10.0.0.10", ["db"]), ("10.0.0.3", ["cache"])]
    )
    lines = out.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-3:] == ["10.0.0.2\tweb abc123", "10.0.0.3\tcache", "10.0.0.10\tdb"]
