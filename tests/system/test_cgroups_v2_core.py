"""The v2 Manager's core against a real cgroup2 hierarchy.

On the hybrid dev machines the resource controllers are bound to v1, but the cgroup2 mount at
/sys/fs/cgroup/unified is real: cgroup.procs, cgroup.freeze, cgroup.events, cgroup.kill,
subtree_control delegation and the hugetlb controller (through `unified`) all behave as on the
VM. memory/cpu/pids/io on v2 are only exercised on a pure-v2 target (the VM) by the other
system and property suites. On a pure-v2 host this file tests /sys/fs/cgroup itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import Resources
from engine.libcontainer.errors import ConfigError
from tests.property.cgsupport import child_in, remove_prefix, scratch

pytestmark = pytest.mark.root


def _v2_root() -> Path | None:
    for mnt, fstype, _ in cgroups.fs.mountinfo():
        if fstype == "cgroup2":
            return Path(mnt)
    return None


@pytest.fixture(scope="module")
def root(require_root) -> Path:
    r = _v2_root()
    if r is None:
        pytest.skip("no cgroup2 mount on this host")
    sc = r / "cgroup.subtree_control"
    before = set(sc.read_text().split())
    yield r
    remove_prefix("v2", r)
    if r == cgroups.fs.CGROUP_ROOT:
        return  # pure v2: enabling controllers at the root is what every runtime does
    # Hybrid host: undo the delegation our managers added at the side mount (a host change).
    for ctrl in set(sc.read_text().split()) - before:
        try:
            cgroups.fs.write(sc, f"-{ctrl}")
        except cgroups.CgroupError:
            pass


def test_create_nested_delegates_controllers(root):
    offered = set((root / "cgroup.controllers").read_text().split())
    with scratch("nest", version="v2", root=root) as m:
        leaf_ctrls = set((m.dir / "cgroup.controllers").read_text().split())
        want = offered & set(cgroups.v2.WANTED)
        assert want <= leaf_ctrls, "every wanted controller the root offers reaches the leaf"
        assert m.dir.parent.name == "skt2"


def test_procs_freeze_thaw_kill(root):
    with scratch("fz", version="v2", root=root) as m:
        with child_in(m, "while True:\n    pass\n") as c:
            c.go()
            assert m.pids() == [c.pid]
            time.sleep(0.05)
            m.freeze()
            assert m.freezer_state() == "frozen"
            u1 = m.stats()["cpu"]["usage_ns"]
            time.sleep(0.2)
            assert m.stats()["cpu"]["usage_ns"] - u1 < 20_000_000
            m.thaw()
            assert m.freezer_state() == "thawed"
            m.kill_all()  # cgroup.kill
            rc, _, _ = c.wait(10)
            assert rc == -9
        # The killed task leaves the cgroup: removal works without waiting long.
        m.destroy()
        assert not m.exists()


def test_unified_raw_write_reads_back_hugetlb(root):
    hp = root / "cgroup.controllers"
    if "hugetlb" not in hp.read_text().split():
        pytest.skip("no hugetlb controller on this cgroup2")
    with scratch("hug", version="v2", root=root) as m:
        names = sorted(p.name for p in m.dir.glob("hugetlb.*.max") if ".rsvd." not in p.name)
        if not names:
            pytest.skip("no huge page sizes")
        name = names[0]  # e.g. hugetlb.1GB.max or hugetlb.2MB.max
        m.set(Resources.from_oci({"unified": {name: "max"}}))
        assert (m.dir / name).read_text().strip() == "max"
        with pytest.raises(ConfigError) as ei:
            m.set(Resources.from_oci({"unified": {name: "12x"}}))
        assert name in ei.value.field and "refused" in str(ei.value)
        with pytest.raises(ConfigError, match="no such"):
            m.set(Resources.from_oci({"unified": {"hugetlb.3KB.max": "1"}}))


def test_missing_controllers_are_config_errors(root):
    offered = set((root / "cgroup.controllers").read_text().split())
    if "memory" in offered:
        pytest.skip("this cgroup2 has the memory controller (pure v2)")
    m = cgroups.new_manager("/skt2/nomem", Resources(memory_limit=1 << 30), version="v2",
                            root=root)
    with pytest.raises(ConfigError, match="memory controller"):
        m.create()
    assert not m.exists()


def test_hugepage_limits_round_down_to_huge_pages(root):
    if "hugetlb" not in (root / "cgroup.controllers").read_text().split():
        pytest.skip("no hugetlb controller on this cgroup2")
    r = Resources.from_oci({"hugepageLimits": [{"pageSize": "2MB", "limit": (5 << 20) + 1}]})
    with scratch("hugelim", r, version="v2", root=root) as m:
        # page_counter_memparse, then rounded down to whole huge pages (2 MiB).
        assert (m.dir / "hugetlb.2MB.max").read_text().strip() == str(4 << 20)
    bad = Resources.from_oci({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]})
    m = cgroups.new_manager("/skt2/hugebad", bad, version="v2", root=root)
    with pytest.raises(ConfigError, match="huge pages of that size"):
        m.create()
    assert not m.exists()
