"""Containers on the bridge through the real NetworkDriver (own bridge, nft table, prefixes).

The endpoint is connected while the monitor creates the container; these tests check that the
process still sees its network from its first instruction, and that a failing connect (a port
conflict) rolls everything back.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.containers.manager import ContainerManager
from engine.errors import Conflict

from .test_containers_lifecycle import (  # noqa: F401 - fixtures
    Env,
    _cgroup_dirs,
    _mounts_under,
    graph_root,
    unframe,
)

pytestmark = pytest.mark.root

SYSCTLS = ("/proc/sys/net/ipv4/ip_forward",
           "/proc/sys/net/bridge/bridge-nf-call-iptables")


@pytest.fixture
def netenv(graph_root: Path) -> Iterator[Env]:  # noqa: F811 - the imported fixture
    from engine.drivers.network import NetworkDriver

    saved = {p: Path(p).read_text() for p in SYSCTLS if Path(p).exists()}
    tag = secrets.token_hex(2)
    e = Env(graph_root)
    net = NetworkDriver(e.root / "network", bridge=f"skt7br{tag}", subnet="10.77.9.0/24",
                        table=f"skt7t{tag}", bridge_prefix="skt7b", veth_prefix="skt7v",
                        netns_prefix=f"skt7-{tag}-")
    try:
        net.start()
        e.m.close()
        e.managers.clear()
        e.m = ContainerManager(e.root, e.run, e.graph, net, e.events, cgroup_parent=e.cgparent)
        e.managers.append(e.m)
        e.net = net  # type: ignore[attr-defined]
        yield e
    finally:
        try:
            e.cleanup()
        finally:
            net.destroy_all()
            for p, v in saved.items():
                try:
                    Path(p).write_text(v)
                except OSError:
                    pass
            shutil.rmtree(e.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bridge_network_ready_at_first_instruction(netenv: Env) -> None:
    code, out, err = netenv.output(
        ["sh", "-c", "ip -4 -o addr show eth0; grep -c $(hostname) /etc/hosts; "
         "ip route | grep default"])
    assert code == 0, err
    text = out.decode()
    assert "10.77.9." in text and "default via 10.77.9.1" in text
    assert text.split("\n")[1] == "1"  # its own name and address are in /etc/hosts
    assert netenv.net.mappings() == []  # type: ignore[attr-defined]


def test_port_conflict_rolls_back(netenv: Env) -> None:
    port = _free_port()
    hc = {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}}
    first = netenv.run_(["sleep", "60"], hc=hc, ExposedPorts={"80/tcp": {}})
    netenv.m.start(first)
    ports = netenv.m.inspect(first)["NetworkSettings"]["Ports"]
    assert ports["80/tcp"][0]["HostPort"] == str(port)
    second = netenv.run_(["sleep", "60"], hc=hc, ExposedPorts={"80/tcp": {}})
    with pytest.raises(Conflict, match="port is already allocated"):
        netenv.m.start(second)
    time.sleep(0.2)
    st = netenv.m.inspect(second)
    assert st["State"]["Status"] == "created" and st["NetworkSettings"]["IPAddress"] == ""
    assert not any(d.joinpath(second).exists() for d in _cgroup_dirs(netenv.cgparent))
    assert not (Path(netenv.m.runtime_root) / second).exists()
    assert netenv.net.sandbox_path(second) is None  # type: ignore[attr-defined]
    netenv.m.remove(first, force=True)
    # the port is free again: the second one starts now
    netenv.m.start(second)
    assert netenv.m.inspect(second)["State"]["Running"]
    netenv.m.remove(second, force=True)
    assert not _mounts_under(netenv.root)
