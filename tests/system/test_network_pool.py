"""The network driver's sandbox pool and deferred teardown against the real kernel (root).

What must hold: a pooled sandbox gives a container the same network as a freshly plumbed one;
nothing the pool or a deferred teardown makes outlives the daemon, also when it is killed with
SIGKILL at any moment (the next start() removes every recorded object and frees addresses);
a teardown still pending when the same container starts again never removes the new objects.
Everything is named skt11*, on 10.211.4.0/24 (driver) and 10.211.6.0/24 (daemon).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.drivers.network import NetworkDriver
from engine.drivers.network.driver import mac_for

pytestmark = pytest.mark.root

PREFIX = "skt11"


def _links() -> list[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout
    return [x["ifname"] for x in json.loads(out or "[]") if x["ifname"].startswith(PREFIX)]


def _netns(prefix: str) -> list[str]:
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir() if p.name.startswith(prefix)) if d.is_dir() else []


def _wait(pred, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def _ns_exec(ns_path: str, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net={ns_path}", *argv], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture
def sysctl_forward(require_root) -> Iterator[None]:
    p = Path("/proc/sys/net/ipv4/ip_forward")
    saved = p.read_text()
    yield
    p.write_text(saved)


@pytest.fixture
def driver_env(sysctl_forward) -> Iterator[dict]:
    tag = uuid.uuid4().hex[:4]
    env = {
        "state": Path(f"/var/tmp/{PREFIX}-pool-{tag}"),
        "kw": dict(bridge=f"{PREFIX}pb{tag}", subnet="10.211.4.0/24", table=f"{PREFIX}p{tag}",
                   bridge_prefix=f"{PREFIX}b{tag}", veth_prefix=f"{PREFIX}v{tag}",
                   netns_prefix=f"{PREFIX}-{tag}-"),
        "drivers": [],
    }

    def new() -> NetworkDriver:
        d = NetworkDriver(env["state"], **env["kw"])
        env["drivers"].append(d)
        d.start()
        return d

    env["new"] = new
    env["ns_prefix"] = env["kw"]["netns_prefix"]
    try:
        yield env
    finally:
        try:
            last = NetworkDriver(env["state"], **env["kw"])
            last.start()
            last.destroy_all()
        finally:
            for d in env["drivers"]:
                d._closing = True  # threads of "crashed" instances stop at their next wakeup
                d.close()
            for name in _netns(env["ns_prefix"]):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            for name in _links():
                if name.startswith((f"{PREFIX}v{tag}", f"{PREFIX}b{tag}", env["kw"]["bridge"])):
                    subprocess.run(["ip", "link", "del", name], capture_output=True)
            subprocess.run(["nft", "delete", "table", "ip", env["kw"]["table"]],
                           capture_output=True)
            shutil.rmtree(env["state"], ignore_errors=True)


def test_pooled_sandbox_is_a_working_endpoint(driver_env: dict) -> None:
    d: NetworkDriver = driver_env["new"]()
    d.start_pool(2)
    assert _wait(lambda: d.pool_ready() == 2)
    # pooled netns have no name yet (an fd holds them): they die with the daemon
    assert [n for n in _netns(driver_env["ns_prefix"]) if "-pool-" in n] == []
    pool_veths = {r[0] for r in d.conn.execute("SELECT veth FROM pool")}
    assert pool_veths <= set(_bridge_ports(driver_env["kw"]["bridge"]))
    path = d.create_sandbox("c1")
    assert "-pool-" in Path(path).name and Path(path).exists()  # taken from the pool
    s = d.connect("c1", path, port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]},
                  exposed_ports=("80/tcp",))
    ip = s["IPAddress"]
    assert ip.startswith("10.211.4.") and s["MacAddress"] == mac_for(ip)
    addr = _ns_exec(path, "ip", "-o", "-4", "addr", "show", "eth0")
    assert f"{ip}/24" in addr
    assert "default via 10.211.4.1" in _ns_exec(path, "ip", "route")
    assert mac_for(ip) in _ns_exec(path, "ip", "link", "show", "eth0")
    assert _wait(lambda: d.pool_ready() == 2)  # refilled in the background
    # the veth is on the bridge, in hairpin mode like a plumbed one
    veth = d.conn.execute("SELECT veth FROM endpoints WHERE container_id='c1'").fetchone()[0]
    info = subprocess.run(["ip", "-d", "-j", "link", "show", veth], capture_output=True,
                          text=True, check=True).stdout
    link = json.loads(info)[0]
    assert link["master"] == driver_env["kw"]["bridge"]
    assert link["linkinfo"]["info_slave_data"]["hairpin"] is True
    # deferred teardown: the records go at once, the kernel objects just after
    d.delete_sandbox("c1", wait=False)
    assert d.conn.execute("SELECT 1 FROM endpoints WHERE container_id='c1'").fetchone() is None
    assert d.mappings() == []
    assert d.settle(15)
    assert not Path(path).exists()
    assert veth not in _links()
    assert d.ipam.allocations() == {}
    d.close()
    assert _netns(driver_env["ns_prefix"]) == []  # close() removes the pool
    assert [x for x in _links() if x.startswith(d.veth_prefix)] == []


def test_pooled_sandbox_on_another_network_gets_its_own_veth(driver_env: dict) -> None:
    d: NetworkDriver = driver_env["new"]()
    d.create_network(f"{PREFIX}net", subnet="10.211.5.0/24")
    d.start_pool(1)
    assert _wait(lambda: d.pool_ready() == 1)
    path = d.create_sandbox("c2")
    pooled_veth = d.conn.execute(
        "SELECT veth FROM sandboxes WHERE container_id='c2'").fetchone()[0]
    assert pooled_veth
    s = d.connect("c2", path, f"{PREFIX}net")
    assert s["Networks"][f"{PREFIX}net"]["IPAddress"].startswith("10.211.5.")
    assert pooled_veth not in _links()  # replaced, not left on the default bridge
    assert "10.211.5." in _ns_exec(path, "ip", "-o", "-4", "addr", "show", "eth0")
    d.delete_sandbox("c2")
    assert not Path(path).exists()
    # a caller that names the network up front gets a plain netns and leaves the pool alone
    assert _wait(lambda: d.pool_ready() == 1)
    path3 = d.create_sandbox("c3", network=f"{PREFIX}net")
    assert "-pool-" not in path3 and d.pool_ready() == 1
    d.connect("c3", path3, f"{PREFIX}net")
    d.delete_sandbox("c3")
    d.remove_network(f"{PREFIX}net")


def test_crash_leaves_nothing_after_the_next_start(driver_env: dict) -> None:
    """A driver that dies with a full pool and a teardown not yet done: start() of the next
    one on the same state removes them all and frees the address."""
    a: NetworkDriver = driver_env["new"]()
    a.start_pool(2)
    assert _wait(lambda: a.pool_ready() == 2)
    path = a.create_sandbox("c3")
    ip = a.connect("c3", path)["IPAddress"]
    veth = a.conn.execute("SELECT veth FROM endpoints WHERE container_id='c3'").fetchone()[0]
    a._kick_reaper = lambda: None  # type: ignore[method-assign]  # the reaper never runs
    a.delete_sandbox("c3", wait=False)
    assert Path(path).exists() and veth in _links()  # still there: pending
    assert ip in a.ipam.allocations().values()  # still held: nobody else may get it
    assert _wait(lambda: a.pool_ready() == 2)
    with a.lock:  # the "crash": its threads stop, nothing is cleaned up
        a._closing = True
        a._pool_cond.notify_all()
    assert a._pool_thread is not None
    a._pool_thread.join(10)
    assert _netns(driver_env["ns_prefix"]) == [Path(path).name]  # c3's, doomed
    pool_veths = {r[0] for r in a.conn.execute("SELECT veth FROM pool")}
    assert len(pool_veths) == 2 and pool_veths <= set(_links())

    b: NetworkDriver = driver_env["new"]()  # the next daemon start
    assert not Path(path).exists()
    assert veth not in _links()
    assert _netns(driver_env["ns_prefix"]) == []
    assert b.ipam.allocations() == {}
    assert b.conn.execute("SELECT COUNT(*) FROM doomed").fetchone()[0] == 0
    assert b.conn.execute("SELECT COUNT(*) FROM pool").fetchone()[0] == 0
    assert [x for x in _links() if x.startswith(b.veth_prefix)] == []


def test_pending_teardown_never_removes_a_restarted_container(driver_env: dict) -> None:
    """Same container id, same veth and netns names: the second start must win."""
    d: NetworkDriver = driver_env["new"]()
    kick = d._kick_reaper
    d._kick_reaper = lambda: None  # type: ignore[method-assign]
    path = d.create_sandbox("c4")
    d.connect("c4", path)
    d.delete_sandbox("c4", wait=False)
    path2 = d.create_sandbox("c4")  # same name as the doomed netns: finished first
    assert path2 == path
    s = d.connect("c4", path2)
    d._kick_reaper = kick  # type: ignore[method-assign]
    d._kick_reaper()
    assert d.settle(15)
    assert Path(path2).exists()
    assert s["IPAddress"] in _ns_exec(path2, "ip", "-o", "-4", "addr", "show", "eth0")
    veth = d.conn.execute("SELECT veth FROM endpoints WHERE container_id='c4'").fetchone()[0]
    assert veth in _links()
    d.delete_sandbox("c4")
    assert veth not in _links() and not Path(path2).exists()


# ---------------------------------------------------------------------------- the daemon


@pytest.fixture
def skiffd(require_root, busybox_image) -> Iterator:
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI")
    from .daemon import Skiffd

    d = Skiffd(f"{PREFIX}pl", subnet="10.211.6.0/24", bridge=f"{PREFIX}plbr0")
    try:
        d.start()
        d.load_busybox(busybox_image)
        yield d
    finally:
        d.cleanup()
        for name in _links():
            if name.startswith(f"{PREFIX}pl"):
                subprocess.run(["ip", "link", "del", name], capture_output=True)


def _bridge_ports(bridge: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True,
                         text=True).stdout
    return sorted(x["ifname"] for x in json.loads(out or "[]"))


def _pool_netns(root: Path) -> list[str]:
    with sqlite3.connect(root / "network" / "network.db") as db:
        return [r[0] for r in db.execute("SELECT netns FROM pool")]


def test_daemon_kill9_then_restart_and_stop_leave_nothing(skiffd) -> None:
    r = skiffd.docker("run", "-d", "--name", "keep", "busybox", "sleep", "300", check=True)
    cid = r.stdout.strip()
    for _ in range(3):
        assert skiffd.docker("run", "--rm", "busybox", "true").returncode == 0
    assert _wait(lambda: len(_pool_netns(skiffd.root)) >= 4)
    with sqlite3.connect(skiffd.root / "network" / "network.db") as db:
        pool_veths = {r[0] for r in db.execute("SELECT veth FROM pool")}
    assert pool_veths <= set(_bridge_ports(skiffd.bridge))

    skiffd.kill()  # SIGKILL: the pool dies with the daemon (only an fd held each netns)
    assert _wait(lambda: not pool_veths & set(_bridge_ports(skiffd.bridge)))
    skiffd.start()
    assert not pool_veths & set(_links() + _bridge_ports(skiffd.bridge))
    insp = json.loads(skiffd.docker("inspect", cid, check=True).stdout)[0]
    ip = insp["NetworkSettings"]["IPAddress"]
    assert insp["State"]["Running"] and ip.startswith("10.211.6.")
    r = skiffd.docker("exec", cid, "ip", "-o", "-4", "addr", "show", "eth0")
    assert ip in r.stdout
    assert skiffd.docker("run", "--rm", "busybox", "true").returncode == 0
    assert _wait(lambda: len(_pool_netns(skiffd.root)) >= 4)

    skiffd.stop()  # SIGTERM: the running container keeps its endpoint, the pool goes
    assert _pool_netns(skiffd.root) == []
    ports = _bridge_ports(skiffd.bridge)
    assert len(ports) == 1, ports  # only the running container's veth
    skiffd.start()
    assert skiffd.docker("rm", "-f", "keep").returncode == 0
    skiffd.stop()
    assert _bridge_ports(skiffd.bridge) == []
    with sqlite3.connect(skiffd.root / "network" / "network.db") as db:
        assert db.execute("SELECT COUNT(*) FROM ipam").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM doomed").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM sandboxes").fetchone()[0] == 0


def test_run_rm_releases_everything_just_after(skiffd) -> None:
    for _ in range(3):
        r = skiffd.docker("run", "--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0")
        assert r.returncode == 0 and "10.211.6." in r.stdout, r.stderr

    def quiet() -> bool:
        with sqlite3.connect(skiffd.root / "network" / "network.db") as db:
            return (db.execute("SELECT COUNT(*) FROM doomed").fetchone()[0] == 0
                    and db.execute("SELECT COUNT(*) FROM ipam").fetchone()[0] == 0
                    and db.execute("SELECT COUNT(*) FROM endpoints").fetchone()[0] == 0)

    assert _wait(quiet)
    pooled = set(_pool_netns(skiffd.root))
    with sqlite3.connect(skiffd.root / "network" / "network.db") as db:
        pool_veths = {r[0] for r in db.execute("SELECT veth FROM pool")}
    assert set(_bridge_ports(skiffd.bridge)) == pool_veths
    assert len(pooled) == len(pool_veths)
