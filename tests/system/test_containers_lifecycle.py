"""ContainerManager against the real kernel: real libcontainer, real graph, real monitors.

Every test works under its own roots (/var/lib/skt7-*, /run/skt7-*) and cgroup parent
(skt7-<rand>); the finalizer removes every container, the graph, and checks that no cgroup,
mount or monitor process is left.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.containers.manager import ContainerManager
from engine.errors import Conflict, InvalidParameter, SkiffError

pytestmark = pytest.mark.root

MIB = 1024 * 1024
CG = Path("/sys/fs/cgroup")


class Events(list):
    def __call__(self, typ: str, action: str, actor: str, attrs: dict) -> None:
        self.append((typ, action, actor, attrs))

    def actions(self, cid: str) -> list[str]:
        return [a for _, a, i, _ in self if i == cid]


@pytest.fixture(scope="module")
def graph_root(busybox_image: Path) -> Iterator[Path]:
    """One graph with busybox:latest loaded, shared by the module's tests."""
    from engine.graph import Graph

    root = Path(f"/var/lib/skt7-graph-{secrets.token_hex(3)}")
    g = Graph(root)
    with open(busybox_image / "docker-save.tar", "rb") as f:
        g.load(f)
    g.close() if hasattr(g, "close") else None
    yield root
    _umount_under(root)
    shutil.rmtree(root, ignore_errors=True)


def _mounts_under(path: Path) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp.startswith(str(path)):
                out.append(mp)
    return out


def _umount_under(path: Path) -> None:
    for mp in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False)


def _cgroup_dirs(parent: str) -> list[Path]:
    """The parent's directory in every v1 hierarchy, or in the v2 unified tree."""
    dirs = [p for p in CG.glob(f"*/{parent}") if p.is_dir()]
    if (CG / parent).is_dir():
        dirs.append(CG / parent)
    return dirs


class Env:
    def __init__(self, graph_root: Path) -> None:
        from engine.graph import Graph

        tag = secrets.token_hex(3)
        self.root = Path(f"/var/lib/skt7-c-{tag}")
        self.run = Path(f"/run/skt7-c-{tag}")
        self.cgparent = f"skt7-{tag}"
        self.graph = Graph(graph_root)
        self.events = Events()
        self.managers: list[ContainerManager] = []
        self.m = self.manager()

    def manager(self) -> ContainerManager:
        m = ContainerManager(self.root, self.run, self.graph, None, self.events,
                             cgroup_parent=self.cgparent)
        self.managers.append(m)
        return m

    def run_(self, cmd: list[str], name: str | None = None, hc: dict | None = None,
             **cfg) -> str:
        cid, _ = self.m.create(name, {"Image": "busybox", "Cmd": cmd, **cfg}, hc or {}, {})
        return cid

    def output(self, cmd: list[str], hc: dict | None = None, **cfg) -> tuple[int, bytes, bytes]:
        cid = self.run_(cmd, hc=hc, **cfg)
        w = self.m.wait_prepare(cid, "next-exit")
        self.m.start(cid)
        code = w(30)["StatusCode"]
        frames = unframe(b"".join(self.m.logs(cid)))
        self.m.remove(cid)
        return code, frames[1], frames[2]

    def cleanup(self) -> None:
        m = self.managers[-1]
        for c in list(m.containers.values()):
            try:
                m.remove(c.id, force=True, volumes=True)
            except SkiffError:
                pass
        for mm in self.managers:
            try:
                mm.close()
            except Exception:  # noqa: BLE001
                pass
        leftovers = _mounts_under(self.root) + [
            str(p) for d in _cgroup_dirs(self.cgparent) for p in d.rglob("*")
            if p.is_dir() and len(p.name) == 64]  # a container's cgroup
        _umount_under(self.root)
        for d in _cgroup_dirs(self.cgparent):
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()),
                              key=lambda p: len(p.parts), reverse=True):
                try:
                    sub.rmdir()
                except OSError:
                    pass
            try:
                d.rmdir()
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)
        self.graph.close() if hasattr(self.graph, "close") else None
        assert not leftovers, f"left behind: {leftovers}"


@pytest.fixture
def env(graph_root: Path) -> Iterator[Env]:
    e = Env(graph_root)
    try:
        yield e
    finally:
        e.cleanup()


def unframe(data: bytes) -> dict[int, bytes]:
    parts: dict[int, list[bytes]] = {1: [], 2: []}
    i = 0
    while i < len(data):
        stream, size = struct.unpack_from(">BxxxI", data, i)
        parts.setdefault(stream, []).append(data[i + 8 : i + 8 + size])
        i += 8 + size
    return {k: b"".join(v) for k, v in parts.items()}


def recv_all(s: socket.socket, timeout: float = 20) -> bytes:
    s.settimeout(timeout)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


# ---------------------------------------------------------------------------------------------


def test_run_logs_exit_code_and_cleanup(env: Env) -> None:
    cid = env.run_(["sh", "-c", "echo out; echo err >&2; hostname; exit 3"], "first")
    w = env.m.wait_prepare(cid, "next-exit")
    env.m.start(cid)
    assert w(30) == {"StatusCode": 3, "Error": None}
    out = unframe(b"".join(env.m.logs(cid)))
    assert out[1] == f"out\n{cid[:12]}\n".encode() and out[2] == b"err\n"
    info = env.m.inspect(cid)
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3
    assert info["Name"] == "/first"
    assert not (env.run / cid).exists()  # monitor gone, exec dir cleaned
    assert not list(Path(env.m.runtime_root).glob(cid))  # libcontainer state destroyed
    assert not any(d.joinpath(cid).exists() for d in _cgroup_dirs(env.cgparent))
    env.m.remove(cid)
    assert env.events.actions(cid) == ["create", "start", "die", "destroy"]
    assert not _mounts_under(env.root)


def test_attach_stdin_and_tty_resize(env: Env) -> None:
    cid = env.run_(["cat"], OpenStdin=True, StdinOnce=True, AttachStdin=True)
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=env.m.attach, args=(cid, theirs), kwargs={"stdin": True})
    t.start()
    time.sleep(0.1)
    env.m.start(cid)
    ours.sendall(b"one\ntwo\n")
    ours.shutdown(socket.SHUT_WR)
    assert unframe(recv_all(ours))[1] == b"one\ntwo\n"
    t.join(10)
    assert env.m.wait(cid, timeout=10)["StatusCode"] == 0

    cid = env.run_(["sh", "-c", "sleep 0.5; stty size; tty; exit 4"], Tty=True)
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=env.m.attach, args=(cid, theirs))
    t.start()
    time.sleep(0.1)
    env.m.start(cid)
    env.m.resize(cid, 40, 120)
    data = recv_all(ours)
    t.join(10)
    assert b"40 120" in data and b"/dev/pts/0" in data
    assert env.m.wait(cid, timeout=10)["StatusCode"] == 4


def test_exec_joins_the_container(env: Env) -> None:
    cid = env.run_(["sleep", "60"])
    env.m.start(cid)
    eid = env.m.exec_create(cid, {"Cmd": ["sh", "-c", "hostname; cat /proc/1/cmdline; exit 6"],
                                  "AttachStdout": True, "AttachStderr": True})
    ours, theirs = socket.socketpair()
    env.m.exec_start(eid, theirs)
    out = unframe(recv_all(ours))[1]
    assert out.startswith(cid[:12].encode() + b"\n") and b"sleep\x0060" in out
    assert env.m.exec_inspect(eid)["ExitCode"] == 6
    # with a tty and stdin
    eid = env.m.exec_create(cid, {"Cmd": ["sh"], "Tty": True, "AttachStdin": True,
                                  "AttachStdout": True})
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=env.m.exec_start, args=(eid, theirs))
    t.start()
    ours.sendall(b"echo tty-$((6*7)); exit 2\n")
    data = recv_all(ours)
    t.join(10)
    assert b"tty-42" in data
    assert env.m.exec_inspect(eid)["ExitCode"] == 2
    top = env.m.top(cid)
    assert any("sleep" in " ".join(p) for p in top["Processes"])
    env.m.stop(cid, timeout=5)
    assert env.m.inspect(cid)["State"]["ExitCode"] in (137, 143)


def test_restart_policy_on_failure(env: Env) -> None:
    cid = env.run_(["sh", "-c", "exit 2"],
                   hc={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    env.m.start(cid)
    deadline = time.time() + 20
    while time.time() < deadline:
        d = env.m.inspect(cid)
        if d["RestartCount"] == 2 and d["State"]["Status"] == "exited":
            break
        time.sleep(0.1)
    d = env.m.inspect(cid)
    assert d["RestartCount"] == 2 and d["State"] == {**d["State"], "Status": "exited",
                                                     "ExitCode": 2}
    assert env.events.actions(cid).count("die") == 3


def test_resource_limits_in_cgroup(env: Env) -> None:
    hc = {"Memory": 64 * MIB, "NanoCpus": 500_000_000, "CpuShares": 512, "PidsLimit": 20,
          "CpusetCpus": "0"}
    cid = env.run_(["sleep", "60"], hc=hc)
    env.m.start(cid)
    path = env.m.cgroups_path(cid).lstrip("/")
    try:
        if (CG / "memory").is_dir():  # v1 / hybrid
            assert int((CG / "memory" / path / "memory.limit_in_bytes").read_text()) == 64 * MIB
            memsw = CG / "memory" / path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                assert int(memsw.read_text()) == 128 * MIB
            assert int((CG / "cpu" / path / "cpu.cfs_quota_us").read_text()) == 50000
            assert int((CG / "cpu" / path / "cpu.cfs_period_us").read_text()) == 100000
            assert int((CG / "cpu" / path / "cpu.shares").read_text()) == 512
            assert (CG / "pids" / path / "pids.max").read_text().strip() == "20"
            assert (CG / "cpuset" / path / "cpuset.cpus").read_text().strip() == "0"
        else:
            assert int((CG / path / "memory.max").read_text()) == 64 * MIB
            assert (CG / path / "cpu.max").read_text().split() == ["50000", "100000"]
            assert (CG / path / "pids.max").read_text().strip() == "20"
        env.m.update(cid, {"PidsLimit": 30, "Memory": 32 * MIB, "MemorySwap": 48 * MIB,
                           "CpuShares": 0, "Devices": [], "OomKillDisable": None})
        if (CG / "pids").is_dir():
            assert (CG / "pids" / path / "pids.max").read_text().strip() == "30"
            assert int((CG / "memory" / path / "memory.limit_in_bytes").read_text()) == 32 * MIB
        env.m.update(cid, {"PidsLimit": -1})
        if (CG / "pids").is_dir():
            assert (CG / "pids" / path / "pids.max").read_text().strip() == "max"
        with pytest.raises(InvalidParameter, match="smaller than already set memoryswap"):
            env.m.update(cid, {"Memory": 64 * MIB})
        st = env.m.stats(cid)
        assert st["pids_stats"]["current"] >= 1 and st["memory_stats"]["usage"] > 0
    finally:
        env.m.kill(cid)
        env.m.wait(cid, timeout=10)
    with pytest.raises(InvalidParameter, match="Minimum memory limit allowed is 6MB"):
        env.run_(["true"], hc={"Memory": 4 * MIB})


def test_volumes_and_binds(env: Env, tmp_path: Path) -> None:
    code, out, _ = env.output(["sh", "-c", "echo kept > /data/f"], hc={"Binds": ["skt7v:/data"]})
    assert code == 0
    code, out, _ = env.output(["cat", "/data/f"], hc={"Binds": ["skt7v:/data"]})
    assert (code, out) == (0, b"kept\n")
    (tmp_path / "in").write_text("from host\n")
    code, out, err = env.output(["sh", "-c", "cat /h/in; touch /h/x"],
                                hc={"Binds": [f"{tmp_path}:/h:ro"]})
    assert out == b"from host\n" and code != 0 and b"Read-only" in err
    # image content is copied into a new volume (docker's copy-up)
    code, out, _ = env.output(["ls", "/etc"], hc={"Binds": ["skt7etc:/etc"]})
    assert b"passwd" in out
    env.m.volumes.remove("skt7v")
    env.m.volumes.remove("skt7etc")


def test_manager_restart_reattaches(env: Env) -> None:
    live = env.run_(["sh", "-c", "sleep 4; echo bye; exit 5"], "live")
    ended = env.run_(["sh", "-c", "exit 9"], "ended")
    env.m.start(live)
    env.m.start(ended)
    pid = env.m.inspect(live)["State"]["Pid"]
    old = env.m
    # the daemon dies: stop watching without touching anything
    old._closing = True
    time.sleep(0.5)  # `ended` exits while nobody watches
    env.m = env.manager()
    env.m.restore()
    assert env.m.inspect("ended")["State"]["ExitCode"] == 9
    assert env.m.inspect("ended")["State"]["Status"] == "exited"
    st = env.m.inspect("live")["State"]
    assert st["Running"] and st["Pid"] == pid and _pid_alive(pid)
    assert env.m.wait("live", timeout=20)["StatusCode"] == 5
    assert unframe(b"".join(env.m.logs("live")))[1] == b"bye\n"
    old.store.close()


def test_failed_start_leaves_nothing(env: Env) -> None:
    cid = env.run_(["/no/such/binary"])
    with pytest.raises(SkiffError):
        env.m.start(cid)
    st = env.m.inspect(cid)["State"]
    assert st["Status"] == "created" and st["ExitCode"] == 127 and st["Error"]
    assert not any(d.joinpath(cid).exists() for d in _cgroup_dirs(env.cgparent))
    assert not (Path(env.m.runtime_root) / cid).exists()
    assert not _mounts_under(env.root)
    env.m.remove(cid)


def test_init_without_an_init_binary_is_refused_at_create(env: Env) -> None:
    env.m.init_path = str(env.root / "no-such-tini")
    with pytest.raises(SkiffError, match=r"HostConfig.Init: no init binary"):
        env.run_(["true"], hc={"Init": True})
    assert not env.m.containers  # nothing half-created
    env.m.init_path = None


def test_init_network_modes_security(env: Env) -> None:
    if env.m.init_binary() is None:
        pytest.skip("no tini-static (Debian's tini package) for --init")
    cid = env.run_(["sleep", "60"], hc={"Init": True})
    env.m.start(cid)
    eid = env.m.exec_create(cid, {"Cmd": ["cat", "/proc/1/cmdline"], "AttachStdout": True})
    ours, theirs = socket.socketpair()
    env.m.exec_start(eid, theirs)
    assert recv_all(ours)[8:].startswith(b"/sbin/docker-init\x00--\x00sleep")
    t0 = time.monotonic()
    env.m.stop(cid, timeout=10)  # the init forwards SIGTERM to sleep
    assert time.monotonic() - t0 < 5
    assert env.m.inspect(cid)["State"]["ExitCode"] == 143

    code, out, _ = env.output(["cat", "/proc/net/dev"], hc={"NetworkMode": "none"})
    ifaces = [line.split(":")[0].strip() for line in out.decode().splitlines()[2:]]
    assert ifaces == ["lo"]
    other = env.run_(["sleep", "60"])
    env.m.start(other)
    code, out, _ = env.output(["sh", "-c", "hostname; readlink /proc/self/ns/net"],
                              hc={"NetworkMode": f"container:{other}"})
    pid = env.m.inspect(other)["State"]["Pid"]
    assert out.decode().split() == [other[:12], os.readlink(f"/proc/{pid}/ns/net")]
    env.m.remove(other, force=True)
    code, out, _ = env.output(["hostname"], hc={"NetworkMode": "host"})
    assert out.decode().strip() == socket.gethostname()
    code, _, err = env.output(["touch", "/x"], hc={"ReadonlyRootfs": True})
    assert code != 0 and b"Read-only" in err
    code, _, _ = env.output(["chown", "1:1", "/tmp"], hc={"CapDrop": ["CHOWN"]})
    assert code != 0
    code, out, _ = env.output(["id", "-u"], User="nobody")
    assert out == b"65534\n"
    code, out, _ = env.output(["pwd"], WorkingDir="/made/for/me")
    assert out == b"/made/for/me\n"


@pytest.mark.slow
def test_oom_killed(env: Env) -> None:
    cid = env.run_(["tail", "/dev/zero"], hc={"Memory": 8 * MIB, "MemorySwap": 8 * MIB})
    env.m.start(cid)
    res = env.m.wait(cid, timeout=60)
    st = env.m.inspect(cid)["State"]
    assert res["StatusCode"] == 137 and st["OOMKilled"] is True
    assert "oom" in env.events.actions(cid)


def test_remove_running_needs_force(env: Env) -> None:
    cid = env.run_(["sleep", "60"], "busy")
    env.m.start(cid)
    mon = env.m.inspect(cid)["State"]["Pid"]
    with pytest.raises(Conflict, match="You cannot remove a running container"):
        env.m.remove(cid)
    env.m.remove(cid, force=True)
    time.sleep(0.2)
    assert not _pid_alive(mon)
    assert not _mounts_under(env.root)


def test_device_and_cgroup_parent(env: Env) -> None:
    code, out, err = env.output(
        ["sh", "-c", "echo x > /dev/mynull && ls -l /dev/mynull"],
        hc={"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                         "CgroupPermissions": "rwm"}]})
    assert code == 0, err
    assert out.startswith(b"c")
    parent = f"{env.cgparent}/custom"
    cid = env.run_(["sleep", "60"], hc={"CgroupParent": parent})
    env.m.start(cid)
    assert env.m.cgroups_path(cid) == f"/{parent}/{cid}"
    ctl = CG / "pids" if (CG / "pids").is_dir() else CG
    assert (ctl / parent / cid).is_dir()
    env.m.remove(cid, force=True)
    assert not (ctl / parent / cid).exists()


def test_large_stdin_through_cat(env: Env) -> None:
    cid = env.run_(["cat"], OpenStdin=True, StdinOnce=True)
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=env.m.attach, args=(cid, theirs), kwargs={"stdin": True})
    t.start()
    time.sleep(0.1)
    env.m.start(cid)
    # ~2 MiB of text (json-file keeps text; invalid UTF-8 becomes U+FFFD, as in docker)
    payload = b"".join(b"line %06d\n" % i for i in range(170000))

    def feed() -> None:
        ours.sendall(payload)
        ours.shutdown(socket.SHUT_WR)

    f = threading.Thread(target=feed)
    f.start()
    data = recv_all(ours, timeout=60)
    f.join(10)
    t.join(10)
    assert unframe(data)[1] == payload
    assert env.m.wait(cid, timeout=20)["StatusCode"] == 0
    # the json-file log holds the same bytes
    assert unframe(b"".join(env.m.logs(cid)))[1] == payload
