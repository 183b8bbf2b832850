"""The OCI config model and its validator: value conversions and errors naming field + value."""

from __future__ import annotations

import copy

import pytest

from engine.libcontainer import spec as specmod
from engine.libcontainer.capabilities import to_mask
from engine.libcontainer.defaults import DOCKER_DEFAULT_CAPS, default_spec
from engine.libcontainer.errors import ConfigError


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def load(cfg, bundle):
    return specmod.load(cfg, str(bundle))


def test_default_spec_loads(bundle):
    s = load(default_spec(), bundle)
    assert s.root_path == str(bundle / "rootfs")
    assert s.root_readonly is True
    assert s.process.args == ["sh"]
    assert s.process.terminal is True
    assert s.process.no_new_privileges is True
    m = to_mask(DOCKER_DEFAULT_CAPS)
    assert s.process.capabilities.bounding == m == s.process.capabilities.effective
    assert s.process.rlimits[0].resource == 7 and s.process.rlimits[0].soft == 1024
    assert set(s.linux.namespaces) == {"pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert all(p is None for p in s.linux.namespaces.values())
    assert s.hostname == "skiff"
    assert "/proc/kcore" in s.linux.masked_paths


def test_new_ns_flags(bundle):
    s = load(default_spec(), bundle)
    assert s.linux.new_ns_flags() == 0x20000000 | 0x40000000 | 0x08000000 | 0x04000000 | \
        0x00020000 | 0x02000000


def test_mount_options_conversion(bundle):
    s = load(default_spec(), bundle)
    dev = next(m for m in s.mounts if m.destination == "/dev")
    assert dev.flags == 2 | (1 << 24)  # nosuid|strictatime
    assert dev.data == "mode=755,size=65536k"
    sysfs = next(m for m in s.mounts if m.destination == "/sys")
    assert sysfs.flags == 2 | 4 | 8 | 1


@pytest.mark.parametrize("opts, flags, clear, prop, data", [
    (["rbind", "ro"], 4096 | 16384 | 1, 0, [], ""),
    (["bind", "rw", "nosuid"], 4096 | 2, 1, [], ""),
    (["rprivate", "uid=5"], 0, 0, [(1 << 18) | 16384], "uid=5"),
    (["exec", "nodev"], 4, 8, [], ""),
    (["tmpcopyup", "mode=1777"], 0, 0, [], "mode=1777"),
])
def test_parse_mount_options(opts, flags, clear, prop, data):
    assert specmod.parse_mount_options(opts) == (flags, clear, prop, data)


def test_missing_capabilities_mean_docker_default(bundle):
    cfg = default_spec()
    del cfg["process"]["capabilities"]
    s = load(cfg, bundle)
    assert s.process.capabilities.effective == to_mask(DOCKER_DEFAULT_CAPS)
    assert s.process.capabilities.ambient == 0


def _bad(mutate, field, bundle):
    cfg = default_spec()
    mutate(cfg)
    with pytest.raises(ConfigError) as ei:
        load(cfg, bundle)
    assert ei.value.field == field, str(ei.value)
    return ei.value


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[6].type"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "linux.namespaces[6].type"),
    (lambda c: c["linux"]["namespaces"].append({"type": "net", "path": "/x"}),
     "linux.namespaces[6].type"),
    (lambda c: c["linux"]["namespaces"].__setitem__(4, {"type": "user"}), "linux.namespaces"),
    (lambda c: c["root"].__setitem__("path", "nope"), "root.path"),
    (lambda c: c["process"].__setitem__("args", []), "process.args"),
    (lambda c: c["process"].__setitem__("cwd", "relative"), "process.cwd"),
    (lambda c: c["process"]["env"].append("NOEQUALS"), "process.env[2]"),
    (lambda c: c["process"]["user"].__setitem__("uid", -1), "process.user.uid"),
    (lambda c: c["process"]["user"].__setitem__("uid", 2**32 - 1), "process.user.uid"),
    (lambda c: c["process"]["user"].__setitem__("gid", "0"), "process.user.gid"),
    (lambda c: c["process"]["capabilities"]["effective"].append("CAP_NOPE"),
     "process.capabilities.effective[14]"),
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}),
     "process.rlimits[1].type"),
    (lambda c: c["process"]["rlimits"].__setitem__(0, {"type": "RLIMIT_NOFILE", "soft": 10,
                                                        "hard": 5}), "process.rlimits[0].soft"),
    (lambda c: c["process"].__setitem__("oomScoreAdj", 1001), "process.oomScoreAdj"),
    (lambda c: c.__setitem__("hostname", "x" * 65), "hostname"),
    (lambda c: c["mounts"].append({"destination": "rel", "type": "tmpfs"}),
     "mounts[7].destination"),
    (lambda c: c["mounts"].append({"destination": "/x", "type": "bind",
                                   "source": "/nonexistent-skt1"}), "mounts[7].source"),
    (lambda c: c["mounts"].append({"destination": "/x"}), "mounts[7].type"),
    (lambda c: c["linux"].__setitem__("sysctl", {"kernel.panic": "1"}),
     "linux.sysctl.kernel.panic"),
    (lambda c: c["linux"].__setitem__("rootfsPropagation", "sideways"),
     "linux.rootfsPropagation"),
    (lambda c: c["linux"].__setitem__("cgroupsPath", "/a/../b"), "linux.cgroupsPath"),
    (lambda c: c["linux"].__setitem__("seccomp", {"defaultAction": "SCMP_ACT_MAYBE"}),
     "linux.seccomp.defaultAction"),
    (lambda c: c["linux"].__setitem__("seccomp", {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
     "linux.seccomp.syscalls[0].args[0].index"),
    (lambda c: c["linux"].__setitem__("devices", [{"path": "/dev/x", "type": "q"}]),
     "linux.devices[0].type"),
    (lambda c: c.__setitem__("ociVersion", "0.9"), "ociVersion"),
])
def test_invalid_configs_name_field_and_value(mutate, field, bundle):
    _bad(mutate, field, bundle)


def test_error_message_names_value(bundle):
    e = _bad(lambda c: c["linux"]["namespaces"].append({"type": "bogus"}),
             "linux.namespaces[6].type", bundle)
    assert "'bogus'" in str(e) and "linux.namespaces[6].type" in str(e)


def _userns(cfg, uid, gid):
    cfg["linux"]["namespaces"].append({"type": "user"})
    if uid is not None:
        cfg["linux"]["uidMappings"] = uid
    if gid is not None:
        cfg["linux"]["gidMappings"] = gid


def test_user_namespace_mappings(bundle):
    cfg = default_spec()
    _userns(cfg, [{"containerID": 0, "hostID": 100000, "size": 65536}],
            [{"containerID": 0, "hostID": 100000, "size": 65536}])
    s = load(cfg, bundle)
    assert s.linux.uid_mappings[0].host_id == 100000
    assert s.linux.namespaces["user"] is None


@pytest.mark.parametrize("uid, field", [
    (None, "linux.uidMappings"),
    ([{"containerID": 0, "hostID": 1, "size": 0}], "linux.uidMappings[0].size"),
    ([{"containerID": 0, "hostID": -1, "size": 1}], "linux.uidMappings[0].hostID"),
    ([{"containerID": 0, "hostID": 2**32 - 2, "size": 2}], "linux.uidMappings[0].size"),
    ([{"containerID": 0, "hostID": 0, "size": 10}, {"containerID": 5, "hostID": 100, "size": 1}],
     "linux.uidMappings[1].containerID"),
    ([{"containerID": i, "hostID": i, "size": 1} for i in range(341)], "linux.uidMappings"),
])
def test_bad_uid_maps(uid, field, bundle):
    def mutate(cfg):
        _userns(cfg, uid, [{"containerID": 0, "hostID": 0, "size": 1}])

    _bad(mutate, field, bundle)


def test_mappings_without_userns(bundle):
    _bad(lambda c: c["linux"].__setitem__(
        "uidMappings", [{"containerID": 0, "hostID": 0, "size": 1}]), "linux.uidMappings", bundle)


def test_resources_go_through_cgroups_model(bundle):
    cfg = default_spec()
    cfg["linux"]["resources"]["memory"] = {"limit": -5}
    with pytest.raises(ConfigError) as ei:
        load(cfg, bundle)
    assert "linux.resources.memory.limit" in ei.value.field


def test_cpu_quota_below_kernel_minimum(bundle):
    cfg = default_spec()
    cfg["linux"]["resources"]["cpu"] = {"quota": 500, "period": 100000}
    with pytest.raises(ConfigError) as ei:
        load(cfg, bundle)
    assert "cpu" in ei.value.field


def test_net_sysctl_needs_netns(bundle):
    cfg = default_spec()
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                  if n["type"] != "network"]
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    _bad(lambda c: c.update(copy.deepcopy(cfg)), "linux.sysctl.net.ipv4.ip_forward", bundle)


def test_load_process_alone():
    p = specmod.load_process({"args": ["ls"], "env": ["PATH=/bin"], "cwd": "/tmp",
                              "user": {"uid": 5, "gid": 6, "additionalGids": [7]}})
    assert p.user.additional_gids == [7]
    assert p.getenv("PATH") == "/bin"
    assert p.getenv("HOME") is None
