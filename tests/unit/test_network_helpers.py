"""Pure helpers of the network driver: network modes, ephemeral ranges, MACs, validation."""

from __future__ import annotations

import pytest

from engine.drivers.network import driver as drv
from engine.drivers.network import parse_network_mode
from engine.errors import InvalidParameter


@pytest.mark.parametrize(
    "mode, expected",
    [
        (None, ("bridge", "bridge")),
        ("", ("bridge", "bridge")),
        ("default", ("bridge", "bridge")),
        ("bridge", ("bridge", "bridge")),
        ("none", ("none", "")),
        ("host", ("host", "")),
        ("container:abc", ("container", "abc")),
        ("mynet", ("bridge", "mynet")),
    ],
)
def test_parse_network_mode(mode, expected):
    assert parse_network_mode(mode) == expected


def test_parse_network_mode_container_needs_ref():
    with pytest.raises(InvalidParameter, match="container reference"):
        parse_network_mode("container:")


def test_ephemeral_ports_reads_range_and_reserved(monkeypatch):
    values = {
        "net.ipv4.ip_local_port_range": "40000\t40010",
        "net.ipv4.ip_local_reserved_ports": "40001,40003-40005",
    }
    monkeypatch.setattr(drv, "read_sysctl", values.get)
    rng, reserved = drv.ephemeral_ports()
    assert (rng.start, rng.stop) == (40000, 40011)
    assert reserved == {40001, 40003, 40004, 40005}


def test_ephemeral_ports_defaults_without_proc(monkeypatch):
    monkeypatch.setattr(drv, "read_sysctl", lambda name: None)
    rng, reserved = drv.ephemeral_ports()
    assert (rng.start, rng.stop - 1) == (32768, 60999) and reserved == set()


def test_mac_follows_docker_scheme():
    assert drv.mac_for("172.17.0.2") == "02:42:ac:11:00:02"


@pytest.mark.parametrize(
    "kw",
    [{"bridge": ""}, {"bridge": "x" * 16}, {"veth_prefix": "a/b"}, {"bridge_prefix": "x" * 11}],
)
def test_constructor_refuses_bad_names(tmp_path, kw):
    with pytest.raises(InvalidParameter):
        drv.NetworkDriver(tmp_path, **kw)


def test_gateway_validation():
    import ipaddress

    net = ipaddress.IPv4Network("10.205.0.0/24")
    assert drv.NetworkDriver._gateway(net, None) == "10.205.0.1"
    assert drv.NetworkDriver._gateway(net, "10.205.0.254") == "10.205.0.254"
    for bad in ("10.205.1.1", "10.205.0.0", "10.205.0.255", "nope"):
        with pytest.raises(InvalidParameter, match="gateway"):
            drv.NetworkDriver._gateway(net, bad)
