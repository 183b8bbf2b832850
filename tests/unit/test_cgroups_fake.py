"""The v1 and v2 managers' file writes, against fake cgroupfs trees under tmp_path.

A fake tree cannot model the kernel's behaviour (rounding, EBUSY); it checks which files the
managers write, in which order, with which strings. The real kernel is in tests/system and
tests/property.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.libcontainer.cgroups import (
    Resources,
    V1Manager,
    V2Manager,
    detect,
    fs,
    new_manager,
    normalize_path,
)
from engine.libcontainer.errors import ConfigError

V1_CTRLS = ("cpuset", "cpu", "cpuacct", "memory", "pids", "blkio", "devices", "freezer")


V2_FILES = {
    "memory": {"memory.max": "max", "memory.swap.max": "max", "memory.low": "0",
               "memory.high": "max", "memory.events": "oom_kill 0"},
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100", "cpu.max.burst": "0"},
    "pids": {"pids.max": "max"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.weight": "default 100"},
}
V1_DEFAULTS = {"cpuset.cpus": "", "cpuset.mems": "", "memory.limit_in_bytes": "9223372036854771712"}


def fake_mkdir(path: str | Path) -> None:
    """What the kernel does on mkdir in a cgroupfs: make the interface files."""
    path = Path(path)  # the v1 manager passes strings (no pathlib on the start path)
    if path.exists():
        return
    path.mkdir()
    parent = path.parent
    if (parent / "cgroup.subtree_control").exists() or (parent / "cgroup.controllers").exists():
        sc = parent / "cgroup.subtree_control"
        enabled = sc.read_text().split() if sc.exists() else []
        (path / "cgroup.controllers").write_text(" ".join(enabled) + "\n")
        (path / "cgroup.subtree_control").write_text("\n")
        (path / "cgroup.events").write_text("populated 0\nfrozen 0\n")
        for ctrl in enabled:
            for name, value in V2_FILES.get(ctrl, {}).items():
                (path / name).write_text(value + "\n")
        return
    for f in parent.iterdir():  # v1: the same files as the parent
        if f.is_file() and not f.name.startswith("cgroup.") and f.name != "tasks":
            (path / f.name).write_text(V1_DEFAULTS.get(f.name, f.read_text()))


def fake_write(path: str | Path, value: str) -> None:
    """Enough of cgroup.subtree_control's semantics: "+ctrl" adds, "-ctrl" removes."""
    path = Path(path)  # the v1 manager passes strings (no pathlib on the start path)
    if path.name == "cgroup.subtree_control":
        have = path.read_text().split() if path.exists() else []
        for tok in value.split():
            name = tok[1:]
            if tok[0] == "+" and name not in have:
                have.append(name)
            elif tok[0] == "-" and name in have:
                have.remove(name)
        path.write_text(" ".join(have) + "\n")
        return
    real_write(path, value)


real_write = fs.write


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "FAKE_ROOTS", [tmp_path])
    monkeypatch.setattr(fs, "mkdir", fake_mkdir)
    monkeypatch.setattr(fs, "write", fake_write)
    return tmp_path


@pytest.fixture
def v1root(fake: Path) -> Path:
    root = fake / "v1"
    for c in V1_CTRLS:
        (root / c).mkdir(parents=True)
    (root / "cpuset" / "cpuset.cpus").write_text("0-3\n")
    (root / "cpuset" / "cpuset.effective_cpus").write_text("0-3\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    (root / "cpuset" / "cpuset.effective_mems").write_text("0\n")
    (root / "memory" / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "cpu" / "cpu.cfs_burst_us").write_text("0\n")
    return root


@pytest.fixture
def v2root(fake: Path) -> Path:
    root = fake / "v2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (root / "cgroup.subtree_control").write_text("memory pids\n")
    (root / "cpuset.cpus.effective").write_text("0-1\n")
    (root / "cpuset.mems.effective").write_text("0\n")
    return root


def read(p: Path) -> str:
    return p.read_text().strip()


# ---------------------------------------------------------------- detection and paths

HYBRID = """\
25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
"""
PURE_V2 = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_detect():
    assert detect(HYBRID) == "v1"
    assert detect(PURE_V2) == "v2"
    assert detect("") == "v1"
    assert fs.mountinfo(HYBRID)[2] == ("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct")


@pytest.mark.parametrize("p,want", [("/a/b", "/a/b"), ("a//b/", "/a/b"), ("skt2", "/skt2")])
def test_normalize_path(p, want):
    assert normalize_path(p) == want


@pytest.mark.parametrize("p", ["", "/", "/a/../b", "system.slice:skiff:x"])
def test_normalize_path_bad(p):
    with pytest.raises(ConfigError):
        normalize_path(p)


# ---------------------------------------------------------------- v1


def test_v1_create_writes(v1root):
    r = Resources.from_oci(
        {
            "memory": {"limit": 10000001, "swap": 20000000, "reservation": 5 << 20},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "1-2"},
            "pids": {"limit": 10},
            "devices": [{"allow": False, "access": "rwm"}],
        }
    )
    m = new_manager("/skt2/c1", r, version="v1", root=v1root)
    assert isinstance(m, V1Manager)
    m.create()
    d = {c: v1root / c / "skt2" / "c1" for c in V1_CTRLS}
    assert all(p.is_dir() for p in d.values())
    assert read(d["memory"] / "memory.limit_in_bytes") == "10000001"
    assert read(d["memory"] / "memory.memsw.limit_in_bytes") == "20000000"
    assert read(d["memory"] / "memory.soft_limit_in_bytes") == str(5 << 20)
    assert read(d["cpu"] / "cpu.shares") == "512"
    assert read(d["cpu"] / "cpu.cfs_quota_us") == "50000"
    assert read(d["cpu"] / "cpu.cfs_period_us") == "100000"
    assert read(d["pids"] / "pids.max") == "10"
    assert read(d["cpuset"] / "cpuset.cpus") == "1-2"
    # The intermediate level got the parent's cpus/mems copied (else no task could enter).
    assert read(v1root / "cpuset" / "skt2" / "cpuset.cpus") == "0-3"
    assert read(v1root / "cpuset" / "skt2" / "cpuset.mems") == "0"
    assert read(d["cpuset"] / "cpuset.mems") == "0"
    # Device rules: the last write wins in a fake file; the kernel applies each in order.
    assert read(d["devices"] / "devices.allow") == "c 5:2 rwm"
    assert read(d["devices"] / "devices.deny") == "a"
    assert m.exists()
    m.destroy()
    assert not m.exists()
    m.destroy()  # idempotent


def test_v1_memsw_order(v1root, monkeypatch):
    writes: list[tuple[str, str]] = []
    def spy(path, value):
        writes.append((Path(path).name, value))
        fake_write(path, value)

    monkeypatch.setattr(fs, "write", spy)
    m = new_manager("/skt2/ord", Resources(), version="v1", root=v1root)
    m.create()
    mem = v1root / "memory" / "skt2" / "ord"
    (mem / "memory.limit_in_bytes").write_text(str(100 << 20))
    writes.clear()
    m.set(Resources(memory_limit=200 << 20, memory_swap=400 << 20))  # raise: memsw first
    assert [w[0] for w in writes] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    writes.clear()
    m.set(Resources(memory_limit=50 << 20, memory_swap=100 << 20))  # lower: memory first
    assert [w[0] for w in writes] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    writes.clear()
    m.set(Resources(memory_limit=-1))  # unlimited memory: unlimited memsw too, memsw first
    assert writes == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]
    m.destroy()


def test_v1_cpuset_not_in_parent(v1root):
    m = new_manager("/skt2/cs", Resources.from_oci({"cpu": {"cpus": "0-7"}}), version="v1",
                    root=v1root)
    with pytest.raises(ConfigError) as ei:
        m.create()
    assert ei.value.field == "linux.resources.cpu.cpus" and "4-7" in str(ei.value)
    assert not m.exists()  # validated before anything was created


def test_v1_unified_refused(v1root):
    m = new_manager("/skt2/u", Resources.from_oci({"unified": {"memory.high": "1"}}),
                    version="v1", root=v1root)
    with pytest.raises(ConfigError, match="cgroup v2"):
        m.create()
    assert not m.exists()


def test_v1_blkio_weight_missing(v1root):
    m = new_manager("/skt2/b", Resources.from_oci({"blockIO": {"weight": 100}}), version="v1",
                    root=v1root)
    with pytest.raises(ConfigError, match="blkio"):
        m.create()
    assert not m.exists()
    # A kernel with a weight-capable scheduler has the file in every non-root cgroup.
    (v1root / "blkio" / "blkio.weight").write_text("500")
    (v1root / "blkio" / "skt2" / "blkio.weight").write_text("500")
    m.create()
    assert read(v1root / "blkio" / "skt2" / "b" / "blkio.weight") == "100"
    m.destroy()


def test_v1_partial_create_cleans_up(v1root, monkeypatch):
    def failing(path, value):
        if Path(path).name == "pids.max":
            raise fs.CgroupError("boom", path=path, value=value, err=22)
        fake_write(path, value)

    monkeypatch.setattr(fs, "write", failing)
    m = new_manager("/skt2/p", Resources(pids_limit=5, memory_limit=1 << 20), version="v1",
                    root=v1root)
    with pytest.raises(fs.CgroupError):
        m.create()
    assert not m.exists()


def test_v1_freeze_oom_stats(v1root):
    m = new_manager("/skt2/f", Resources(), version="v1", root=v1root)
    m.create()
    d = v1root / "memory" / "skt2" / "f"
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert m.oom_kill_count() == 3
    (v1root / "cpu" / "skt2" / "f" / "cpu.stat").write_text(
        "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n"
    )
    (v1root / "pids" / "skt2" / "f" / "pids.current").write_text("2\n")
    (v1root / "pids" / "skt2" / "f" / "pids.max").write_text("max\n")
    s = m.stats()
    assert s["cpu"]["nr_throttled"] == 4 and s["cpu"]["throttled_ns"] == 5000
    assert s["pids"] == {"current": 2, "limit": -1}
    assert s["memory"]["oom_kill"] == 3
    m.freeze()  # the fake file reads back what was written
    assert m.freezer_state() == "frozen"
    m.thaw()
    (v1root / "pids" / "skt2" / "f" / "cgroup.procs").write_text("12\n34\n")
    assert m.pids() == [12, 34]
    m.destroy()


# ---------------------------------------------------------------- v2


def test_v2_create_writes(v2root):
    r = Resources.from_oci(
        {
            "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 16 << 20},
            "cpu": {"shares": 1024, "quota": 50000, "cpus": "1", "mems": "0"},
            "pids": {"limit": -1},
            "unified": {"memory.high": "50M"},
        }
    )
    m = new_manager("/skt2/a/b", r, version="v2", root=v2root)
    assert isinstance(m, V2Manager)
    leaf = v2root / "skt2" / "a" / "b"
    m.create()
    assert set(read(leaf / "cgroup.controllers").split()) == {
        "memory", "pids", "cpuset", "cpu", "io", "hugetlb"}
    # Controllers enabled along the path: root, skt2, skt2/a (not the leaf).
    for level in (v2root, v2root / "skt2", v2root / "skt2" / "a"):
        assert (level / "cgroup.subtree_control").exists()
    assert read(leaf / "memory.max") == str(64 << 20)
    assert read(leaf / "memory.swap.max") == str(32 << 20)  # swap only, not memory+swap
    assert read(leaf / "memory.low") == str(16 << 20)
    assert read(leaf / "cpu.weight") == "100"
    assert read(leaf / "cpu.max") == "50000 100000"  # default period
    assert read(leaf / "pids.max") == "max"
    assert read(leaf / "cpuset.cpus") == "1"
    assert read(leaf / "memory.high") == "50M"
    m.destroy()
    assert not m.exists()
    m.destroy()


def test_v2_subtree_control_writes(v2root, monkeypatch):
    writes: list[tuple[str, str]] = []
    def spy(path, value):
        writes.append((str(path.relative_to(v2root)), value))
        fake_write(path, value)

    monkeypatch.setattr(fs, "write", spy)
    m = new_manager("/skt2/x", Resources(), version="v2", root=v2root)
    m._create_dirs()
    root_writes = [v for p, v in writes if p == "cgroup.subtree_control"]
    # memory and pids already enabled at the root: only the missing ones are written.
    assert root_writes == ["+cpuset", "+cpu", "+io", "+hugetlb"]


def test_v2_unlimited_and_period_only(v2root):
    m = new_manager("/skt2/u", Resources(), version="v2", root=v2root)
    m.create()
    leaf = v2root / "skt2" / "u"
    (leaf / "cpu.max").write_text("20000 100000\n")
    m.set(Resources(memory_limit=-1, cpu_period=50000))
    assert read(leaf / "memory.max") == "max"
    assert read(leaf / "cpu.max") == "20000 50000"  # quota kept
    m.destroy()


def test_v2_quota_only_keeps_the_period(v2root):
    """Found in the VM: period 1000, then quota -1 alone, must read `max 1000`."""
    m = new_manager("/skt2/q", Resources(), version="v2", root=v2root)
    m.create()
    leaf = v2root / "skt2" / "q"
    (leaf / "cpu.max").write_text("max 1000\n")
    m.set(Resources(cpu_quota=-1))
    assert read(leaf / "cpu.max") == "max 1000"
    m.set(Resources(cpu_quota=5000))
    assert read(leaf / "cpu.max") == "5000 1000"
    m.destroy()


def test_v2_missing_controller(v2root):
    (v2root / "cgroup.controllers").write_text("memory pids\n")
    m = new_manager("/skt2/m", Resources(cpu_shares=100), version="v2", root=v2root)
    with pytest.raises(ConfigError, match="cpu controller"):
        m.create()
    assert not m.exists()


def test_v2_devices_attach_an_ebpf_filter(v2root, monkeypatch):
    from engine.libcontainer.cgroups import DEFAULT_ALLOWED_DEVICES, devices_bpf

    calls = []
    monkeypatch.setattr(devices_bpf, "apply", lambda d, rules: calls.append((d, rules)))
    r = Resources.from_oci({"devices": [{"allow": False, "access": "rwm"}]})
    m = new_manager("/skt2/d", r, version="v2", root=v2root)
    m.create()
    assert calls == [(v2root / "skt2" / "d", r.devices + DEFAULT_ALLOWED_DEVICES)]
    assert not m.warnings
    m.update(Resources(pids_limit=5))  # no devices in the update: the filter stays
    assert len(calls) == 1
    m.destroy()


def test_v2_devices_bpf_failure_is_an_error_unless_nothing_is_restricted(v2root, monkeypatch):
    import errno

    from engine.libcontainer.cgroups import CgroupError, devices_bpf

    def refuse(d, rules):
        raise devices_bpf.BpfError(errno.EPERM, "BPF_PROG_LOAD: Operation not permitted")

    monkeypatch.setattr(devices_bpf, "apply", refuse)
    monkeypatch.setattr(devices_bpf, "in_user_namespace", lambda: False)
    r = Resources.from_oci({"devices": [{"allow": False, "access": "rwm"}]})
    m = new_manager("/skt2/d", r, version="v2", root=v2root)
    with pytest.raises(CgroupError, match="device filter.*BPF_PROG_LOAD") as ei:
        m.create()
    assert ei.value.errno == errno.EPERM and not m.exists()
    # --privileged (allow everything): a warning, as runc does
    priv = Resources.from_oci({"devices": [{"allow": True, "access": "rwm"}]})
    m = new_manager("/skt2/d", priv, version="v2", root=v2root)
    m.create()
    assert any("not enforced" in w for w in m.warnings)
    m.destroy()


def test_v2_device_numbers_are_checked_before_anything_exists(v2root):
    r = Resources.from_oci({"devices": [{"allow": True, "type": "c", "major": 2**32,
                                         "minor": 1, "access": "r"}]})
    m = new_manager("/skt2/d", r, version="v2", root=v2root)
    with pytest.raises(ConfigError, match=r"devices\[0\].major"):
        m.create()
    assert not m.exists()


def test_v2_freeze_kill_oom(v2root):
    m = new_manager("/skt2/k", Resources(), version="v2", root=v2root)
    m.create()
    leaf = v2root / "skt2" / "k"
    (leaf / "cgroup.events").write_text("populated 0\nfrozen 1\n")
    m.freeze()
    assert m.freezer_state() == "frozen"
    (leaf / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    m.thaw()
    (leaf / "cgroup.kill").write_text("")
    m.kill_all()
    assert read(leaf / "cgroup.kill") == "1"
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n")
    assert m.oom_kill_count() == 2
    (leaf / "cpu.stat").write_text("usage_usec 7\nnr_throttled 3\nthrottled_usec 9\n")
    s = m.stats()
    assert s["cpu"]["usage_ns"] == 7000 and s["cpu"]["throttled_ns"] == 9000
    m.destroy()


def test_v2_blkio_weight(v2root):
    m = new_manager("/skt2/io", Resources(), version="v2", root=v2root)
    m.create()
    leaf = v2root / "skt2" / "io"
    m.set(Resources(blkio_weight=1000))
    assert read(leaf / "io.weight") == "10000"
    (leaf / "io.bfq.weight").write_text("default 100\n")
    m.set(Resources(blkio_weight=500))
    assert read(leaf / "io.bfq.weight") == "500"
    m.destroy()


def test_throttle_writes(v1root, v2root, tmp_path, monkeypatch):
    from engine.libcontainer.cgroups import base

    sysblk = tmp_path / "sysblk"
    (sysblk / "254:0").mkdir(parents=True)
    (sysblk / "254:1").mkdir()
    (sysblk / "254:1" / "partition").write_text("1\n")
    monkeypatch.setattr(base, "SYS_DEV_BLOCK", sysblk)
    for dev, msg in (("8:0", "no such block device"), ("254:1", "partition")):
        major, minor = dev.split(":")
        bad = Resources.from_oci({"blockIO": {"throttleReadBpsDevice": [
            {"major": int(major), "minor": int(minor), "rate": 1}]}})
        m = new_manager("/skt2/tb", bad, version="v1", root=v1root)
        with pytest.raises(ConfigError, match=msg) as ei:
            m.create()
        assert ei.value.field == "linux.resources.blockIO.throttleReadBpsDevice"
        assert not m.exists()
    r = Resources.from_oci({"blockIO": {"throttleReadBpsDevice": [
        {"major": 254, "minor": 0, "rate": 1048576}], "throttleWriteIOPSDevice": [
        {"major": 254, "minor": 0, "rate": 0}]}})
    m1 = new_manager("/skt2/t1", r, version="v1", root=v1root)
    m1.create()
    d = v1root / "blkio" / "skt2" / "t1"
    assert read(d / "blkio.throttle.read_bps_device") == "254:0 1048576"
    assert read(d / "blkio.throttle.write_iops_device") == "254:0 0"
    m1.destroy()
    m2 = new_manager("/skt2/t2", r, version="v2", root=v2root)
    m2.create()
    assert read(v2root / "skt2" / "t2" / "io.max") == "254:0 wiops=max"  # the last write
    m2.destroy()


def test_v2_swap_written_before_memory(v2root, monkeypatch):
    writes: list[str] = []

    def spy(path, value):
        writes.append(path.name)
        fake_write(path, value)

    m = new_manager("/skt2/sw", Resources(), version="v2", root=v2root)
    m.create()
    monkeypatch.setattr(fs, "write", spy)
    m.set(Resources(memory_limit=4 << 20, memory_swap=4 << 20))
    assert writes == ["memory.swap.max", "memory.max"]
    m.destroy()


def test_v1_comounted_controllers_share_a_directory():
    from engine.libcontainer.cgroups.v1 import v1_mounts

    mounts = v1_mounts(mountinfo=HYBRID)
    assert mounts["cpu"] == mounts["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert mounts["memory"] == Path("/sys/fs/cgroup/memory")
    assert "hugetlb" not in mounts  # the cgroup2 side mount is not a v1 hierarchy
    m = V1Manager("/skt2/x")
    m.mounts = mounts
    m.paths = {c: p / "skt2" / "x" for c, p in mounts.items()}
    assert m.dirs() == [Path("/sys/fs/cgroup/memory/skt2/x"),
                        Path("/sys/fs/cgroup/cpu,cpuacct/skt2/x")]


def test_v1_cpuset_empty_intermediate_level(v1root):
    # someone made skt2 without filling its cpuset: it is filled on create, not refused
    (v1root / "cpuset" / "skt2").mkdir()
    (v1root / "cpuset" / "skt2" / "cpuset.cpus").write_text("")
    (v1root / "cpuset" / "skt2" / "cpuset.mems").write_text("")
    m = new_manager("/skt2/e", Resources.from_oci({"cpu": {"cpus": "1"}}), version="v1",
                    root=v1root)
    m.create()
    assert read(v1root / "cpuset" / "skt2" / "cpuset.cpus") == "0-3"
    assert read(v1root / "cpuset" / "skt2" / "e" / "cpuset.cpus") == "1"
    m.destroy()
