"""Resources.from_oci: validation with the kernel's bounds, messages naming field and value."""

from __future__ import annotations

import pytest

from engine.libcontainer.cgroups import DeviceRule, Resources, model
from engine.libcontainer.errors import ConfigError


def bad(d: dict, field: str) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        Resources.from_oci(d)
    assert ei.value.field == field, str(ei.value)
    assert field in str(ei.value)
    return ei.value


def test_none_and_empty():
    assert Resources.from_oci(None).is_empty()
    assert Resources.from_oci({}).is_empty()


def test_full_example():
    r = Resources.from_oci(
        {
            "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "1,0", "mems": "0"},
            "pids": {"limit": 100},
            "blockIO": {"weight": 500},
            "devices": [{"allow": False, "access": "rwm"},
                        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
            "unified": {"memory.high": "100M"},
        }
    )
    assert r.memory_limit == 64 << 20 and r.memory_swap == 128 << 20
    assert r.cpuset_cpus == "0-1"  # canonical form
    assert r.devices == (DeviceRule(False, "a", None, None, "rwm"),
                         DeviceRule(True, "c", 1, 3, "rw"))
    assert r.devices[1].v1_line() == "c 1:3 rw"
    assert r.unified == {"memory.high": "100M"}


def test_memory_message_names_field_and_value():
    e = bad({"memory": {"limit": 100}}, "linux.resources.memory.limit")
    assert "100" in str(e) and "page" in str(e)


@pytest.mark.parametrize("v", [1, 4095])
def test_memory_below_a_page(v):
    bad({"memory": {"limit": v}}, "linux.resources.memory.limit")


@pytest.mark.parametrize("v", [-2, -(2**63)])
def test_memory_negative(v):
    bad({"memory": {"limit": v}}, "linux.resources.memory.limit")


def test_memory_unset_and_unlimited():
    assert Resources.from_oci({"memory": {"limit": 0}}).memory_limit is None  # runc: unset
    assert Resources.from_oci({"memory": {"limit": -1}}).memory_limit == -1
    assert Resources.from_oci({"memory": {"limit": 4096}}).memory_limit == 4096
    assert Resources.from_oci({"memory": {"limit": 2**63 - 1}}).memory_limit == 2**63 - 1


def test_memory_types():
    bad({"memory": {"limit": "6m"}}, "linux.resources.memory.limit")
    bad({"memory": {"limit": True}}, "linux.resources.memory.limit")
    bad({"memory": {"limit": 2**63}}, "linux.resources.memory.limit")
    bad({"memory": []}, "linux.resources.memory")


def test_swap_rules():
    bad({"memory": {"swap": 1 << 30}}, "linux.resources.memory.swap")
    bad({"memory": {"limit": 1 << 30, "swap": 1 << 20}}, "linux.resources.memory.swap")
    r = Resources.from_oci({"memory": {"limit": 1 << 30, "swap": -1}})
    assert r.memory_swap == -1
    r = Resources.from_oci({"memory": {"limit": 1 << 30, "swap": 1 << 30}})
    assert r.memory_swap == 1 << 30


def test_kernel_memory_refused():
    bad({"memory": {"kernel": 1 << 20}}, "linux.resources.memory.kernel")


@pytest.mark.parametrize("v", [1, 999, -2])
def test_quota_bounds(v):
    bad({"cpu": {"quota": v}}, "linux.resources.cpu.quota")


def test_quota_upper_bound():
    bad({"cpu": {"quota": model.CFS_QUOTA_MAX_US + 1}}, "linux.resources.cpu.quota")
    assert Resources.from_oci({"cpu": {"quota": model.CFS_QUOTA_MAX_US}}).cpu_quota


@pytest.mark.parametrize("v", [1, 999, 1_000_001, -1])
def test_period_bounds(v):
    bad({"cpu": {"period": v}}, "linux.resources.cpu.period")


@pytest.mark.parametrize("v", [1000, 1_000_000])
def test_period_edges_ok(v):
    assert Resources.from_oci({"cpu": {"period": v}}).cpu_period == v


@pytest.mark.parametrize("v", [1, 262145, -5])
def test_shares_bounds(v):
    e = bad({"cpu": {"shares": v}}, "linux.resources.cpu.shares")
    assert str(v) in str(e)


@pytest.mark.parametrize("v", ["a", "0-", "3-1", "0-1:1/2", "0,,1", 5])
def test_cpuset_malformed(v):
    bad({"cpu": {"cpus": v}}, "linux.resources.cpu.cpus")


def test_mems_malformed():
    bad({"cpu": {"mems": "x"}}, "linux.resources.cpu.mems")


@pytest.mark.parametrize("v", [model.PIDS_MAX, model.PIDS_MAX + 5, -2])
def test_pids_bounds(v):
    bad({"pids": {"limit": v}}, "linux.resources.pids.limit")


def test_pids_values():
    assert Resources.from_oci({"pids": {"limit": 0}}).pids_limit is None
    assert Resources.from_oci({"pids": {"limit": -1}}).pids_limit == -1
    assert Resources.from_oci({"pids": {"limit": model.PIDS_MAX - 1}}).pids_limit == 4194304


@pytest.mark.parametrize("v", [1, 9, 1001, 10000])
def test_blkio_weight_bounds(v):
    bad({"blockIO": {"weight": v}}, "linux.resources.blockIO.weight")


@pytest.mark.parametrize(
    "rule,field",
    [
        ({"access": "rwm"}, "linux.resources.devices[0].allow"),
        ({"allow": True, "type": "x"}, "linux.resources.devices[0].type"),
        ({"allow": True, "type": "c", "access": "rx"}, "linux.resources.devices[0].access"),
        ({"allow": True, "type": "c", "access": "rr"}, "linux.resources.devices[0].access"),
        ({"allow": True, "type": "c", "major": "1"}, "linux.resources.devices[0].major"),
    ],
)
def test_device_rules(rule, field):
    bad({"devices": [rule]}, field)


def test_device_wildcards():
    r = Resources.from_oci({"devices": [{"allow": True, "type": "c", "major": 136, "minor": -1}]})
    assert r.devices[0].v1_line() == "c 136:* rwm"


@pytest.mark.parametrize("k", ["../x", "memory", "cgroup.procs", "memory.max/x"])
def test_unified_keys(k):
    with pytest.raises(ConfigError) as ei:
        Resources.from_oci({"unified": {k: "1"}})
    assert "unified" in ei.value.field


def test_merged_keeps_unset_fields():
    a = Resources(memory_limit=1 << 30, pids_limit=5)
    b = Resources(pids_limit=10)
    m = a.merged(b)
    assert m.memory_limit == 1 << 30 and m.pids_limit == 10


def test_disable_oom_killer():
    assert Resources.from_oci({"memory": {"disableOOMKiller": True}}).memory_disable_oom_killer
    assert Resources.from_oci({"memory": {"disableOOMKiller": False}}).is_empty()
    bad({"memory": {"disableOOMKiller": 1}}, "linux.resources.memory.disableOOMKiller")


def test_hugepages_and_unsupported():
    r = Resources.from_oci({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    assert r.hugepage_limits == (("2MB", 4 << 20),)
    bad({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
        "linux.resources.hugepageLimits[0].pageSize")
    bad({"hugepageLimits": [{"pageSize": "2MB", "limit": -1}]},
        "linux.resources.hugepageLimits[0].limit")
    bad({"network": {"classID": 5}}, "linux.resources.network")
    bad({"rdma": {"mlx5_0": {"hcaHandles": 3}}}, "linux.resources.rdma")
    r = Resources.from_oci({"blockIO": {"throttleReadBpsDevice": [
        {"major": 8, "minor": 0, "rate": 1 << 20}], "throttleWriteIOPSDevice": [
        {"major": 8, "minor": 0, "rate": 0}]}})
    assert r.blkio_throttle == (("rbps", 8, 0, 1 << 20), ("wiops", 8, 0, 0))
    bad({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]}},
        "linux.resources.blockIO.throttleReadBpsDevice[0].rate")
    bad({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 10}]}},
        "linux.resources.blockIO.weightDevice")
    assert Resources.from_oci({"blockIO": {"weight": 100, "leafWeight": 0}}).blkio_weight == 100


def test_cpu_burst():
    assert Resources.from_oci({"cpu": {"quota": 50000, "burst": 50000}}).cpu_burst == 50000
    bad({"cpu": {"quota": 50000, "burst": 50001}}, "linux.resources.cpu.burst")
    bad({"cpu": {"burst": -1}}, "linux.resources.cpu.burst")
    bad({"cpu": {"burst": model.CFS_QUOTA_MAX_US + 1}}, "linux.resources.cpu.burst")


def test_emulate_devices():
    from engine.libcontainer.cgroups.resources import emulate_devices

    deny_all = DeviceRule(False, "a")
    null = DeviceRule(True, "c", 1, 3, "rwm")
    assert emulate_devices(()) == (True, [])
    assert emulate_devices((deny_all, null)) == (False, ["c 1:3 rwm"])
    assert emulate_devices((deny_all, null, DeviceRule(False, "c", 1, 3, "rwm"))) == (False, [])
    assert emulate_devices((null, deny_all)) == (False, [])  # deny "a" clears
    # access letters are normalised to the kernel's order
    r = Resources.from_oci({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 3,
                                         "access": "mwr"}]})
    assert r.devices[0].v1_line() == "c 1:3 rwm"
