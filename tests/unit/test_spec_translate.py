"""docker Config/HostConfig -> OCI spec, with dockerd's validation rules and messages."""

from __future__ import annotations

import pytest

from engine.containers import spec as s
from engine.errors import InvalidParameter

MIB = 1024 * 1024


def inputs(**kw) -> s.SpecInputs:
    base = dict(cid="a" * 64, rootfs="/r", hostname="aaaaaaaaaaaa", user=(0, 0, []), mounts=[],
                etc_files={}, netns=None, cgroups_path="/skt7/" + "a" * 64)
    base.update(kw)
    return s.SpecInputs(**base)


def build(config: dict, hc: dict | None = None, image: dict | None = None, **kw) -> dict:
    hc = dict(hc or {})
    merged = s.merge_config(config, image)
    s.validate_host_config(hc, merged)
    return s.build_spec(merged, hc, inputs(**kw))


# -- merge with the image ----------------------------------------------------------------------

def test_image_cmd_entrypoint_env_workdir_merge() -> None:
    img = {"config": {"Entrypoint": ["/ep"], "Cmd": ["a"], "Env": ["A=1", "B=2"],
                      "WorkingDir": "/w", "User": "nobody", "ExposedPorts": {"80/tcp": {}}}}
    c = s.merge_config({"Image": "x", "Env": ["B=3", "C=4"]}, img)
    assert c["Entrypoint"] == ["/ep"] and c["Cmd"] == ["a"]
    assert c["Env"] == ["A=1", "B=3", "C=4"]
    assert c["WorkingDir"] == "/w" and c["User"] == "nobody"
    assert c["ExposedPorts"] == {"80/tcp": {}}


def test_request_cmd_replaces_image_cmd_keeps_entrypoint() -> None:
    c = s.merge_config({"Cmd": ["b"]}, {"config": {"Entrypoint": ["/ep"], "Cmd": ["a"]}})
    assert c["Entrypoint"] == ["/ep"] and c["Cmd"] == ["b"]


def test_request_entrypoint_drops_image_cmd() -> None:
    c = s.merge_config({"Entrypoint": ["/x"]}, {"config": {"Entrypoint": ["/ep"], "Cmd": ["a"]}})
    assert c["Entrypoint"] == ["/x"] and c["Cmd"] == []


def test_empty_entrypoint_resets() -> None:
    c = s.merge_config({"Entrypoint": [""], "Cmd": ["sh"]}, {"config": {"Entrypoint": ["/ep"]}})
    assert c["Entrypoint"] == [] and c["Cmd"] == ["sh"]


def test_no_command() -> None:
    with pytest.raises(InvalidParameter, match="No command specified"):
        s.merge_config({}, {"config": {}})


def test_relative_workdir_refused() -> None:
    with pytest.raises(InvalidParameter, match="needs to be an absolute path"):
        s.merge_config({"Cmd": ["sh"], "WorkingDir": "rel"}, None)


def test_image_config_may_be_inner_config() -> None:
    c = s.merge_config({}, {"Cmd": ["top"]})
    assert c["Cmd"] == ["top"]


# -- resources ---------------------------------------------------------------------------------

def test_memory_minimum() -> None:
    with pytest.raises(InvalidParameter, match="Minimum memory limit allowed is 6MB"):
        s.validate_host_config({"Memory": 6 * MIB - 1})
    s.validate_host_config({"Memory": 6 * MIB})


def test_swap_rules() -> None:
    with pytest.raises(InvalidParameter, match="memoryswap limit should be larger"):
        s.validate_host_config({"Memory": 64 * MIB, "MemorySwap": 32 * MIB})
    with pytest.raises(InvalidParameter, match="always set the Memory limit"):
        s.validate_host_config({"MemorySwap": 64 * MIB})
    hc = {"Memory": 64 * MIB}
    s.validate_host_config(hc)
    assert hc["MemorySwap"] == 128 * MIB  # dockerd's default: twice the memory
    r = s.resources(hc)
    assert r["memory"] == {"limit": 64 * MIB, "swap": 128 * MIB}
    hc = {"Memory": 64 * MIB, "MemorySwap": -1}
    s.validate_host_config(hc)
    assert s.resources(hc)["memory"]["swap"] == -1


def test_reservation_rules() -> None:
    with pytest.raises(InvalidParameter, match="Minimum memory reservation allowed is 6MB"):
        s.validate_host_config({"MemoryReservation": MIB})
    with pytest.raises(InvalidParameter, match="can not be less than memory reservation"):
        s.validate_host_config({"Memory": 10 * MIB, "MemoryReservation": 20 * MIB})


def test_nano_cpus_to_quota_period() -> None:
    hc = {"NanoCpus": 1_500_000_000}
    s.validate_host_config(hc, ncpu=2)
    assert s.resources(hc)["cpu"] == {"period": 100000, "quota": 150000}


def test_nano_cpus_range_and_conflicts() -> None:
    with pytest.raises(InvalidParameter, match="Range of CPUs is from 0.01 to 2.00"):
        s.validate_host_config({"NanoCpus": 3 * 10**9}, ncpu=2)
    with pytest.raises(InvalidParameter, match="Nano CPUs and CPU Period"):
        s.validate_host_config({"NanoCpus": 10**9, "CpuPeriod": 100000}, ncpu=2)
    with pytest.raises(InvalidParameter, match="Nano CPUs and CPU Quota"):
        s.validate_host_config({"NanoCpus": 10**9, "CpuQuota": 100000}, ncpu=2)


def test_cfs_bounds() -> None:
    with pytest.raises(InvalidParameter, match="CPU cfs period"):
        s.validate_host_config({"CpuPeriod": 999})
    with pytest.raises(InvalidParameter, match="CPU cfs quota"):
        s.validate_host_config({"CpuQuota": 999})


def test_cpuset_and_shares_and_pids() -> None:
    hc = {"CpusetCpus": "0", "CpuShares": 512, "PidsLimit": 20}
    s.validate_host_config(hc)
    r = s.resources(hc)
    assert r["cpu"] == {"shares": 512, "cpus": "0"}
    assert r["pids"] == {"limit": 20}
    for unlimited in (0, -1):
        assert "pids" not in s.resources({"PidsLimit": unlimited})
    with pytest.raises(InvalidParameter, match="Requested CPUs are not available"):
        s.validate_host_config({"CpusetCpus": "0-4095"})
    with pytest.raises(InvalidParameter, match="Invalid value 1-a for cpuset cpus"):
        s.validate_host_config({"CpusetCpus": "1-a"})


def test_parse_cpuset() -> None:
    assert s.parse_cpuset("0-2,5") == {0, 1, 2, 5}
    for bad in ("2-1", "a", "1,,2"):
        with pytest.raises(ValueError):
            s.parse_cpuset(bad)


def test_wrong_types_refused() -> None:
    with pytest.raises(InvalidParameter):
        s.validate_host_config({"Memory": "64m"})
    with pytest.raises(InvalidParameter):
        s.validate_host_config({"Memory": True})


# -- restart policy ----------------------------------------------------------------------------

@pytest.mark.parametrize(("rp", "auto", "msg"), [
    ({"Name": "sometimes"}, False, "invalid restart policy 'sometimes'"),
    ({"Name": "always", "MaximumRetryCount": 3}, False, "can only be used with 'on-failure'"),
    ({"Name": "on-failure", "MaximumRetryCount": -1}, False, "cannot be negative"),
    ({"Name": "always"}, True, "can't create 'AutoRemove' container with restart policy"),
])
def test_restart_policy_validation(rp: dict, auto: bool, msg: str) -> None:
    with pytest.raises(InvalidParameter, match=msg):
        s.validate_host_config({"RestartPolicy": rp, "AutoRemove": auto})


def test_restart_policies_accepted() -> None:
    for rp in ({"Name": "no"}, {"Name": "on-failure", "MaximumRetryCount": 2},
               {"Name": "unless-stopped"}, {"Name": ""}):
        s.validate_host_config({"RestartPolicy": rp})


# -- the spec ----------------------------------------------------------------------------------

def test_defaults_like_docker() -> None:
    sp = build({"Cmd": ["sh"], "Env": ["A=1"]})
    p = sp["process"]
    assert p["args"] == ["sh"] and p["cwd"] == "/" and p["terminal"] is False
    assert p["env"][0].startswith("PATH=") and "A=1" in p["env"]
    assert "HOSTNAME=aaaaaaaaaaaa" in p["env"]
    assert p["capabilities"]["bounding"] == s.DOCKER_DEFAULT_CAPS
    assert p["noNewPrivileges"] is False
    assert sp["hostname"] == "aaaaaaaaaaaa"
    assert sp["root"] == {"path": "/r", "readonly": False}
    types = {n["type"] for n in sp["linux"]["namespaces"]}
    assert types == {"mount", "network", "pid", "ipc", "uts", "cgroup"}
    assert sp["linux"]["cgroupsPath"] == "/skt7/" + "a" * 64
    assert "/proc/kcore" in sp["linux"]["maskedPaths"]
    shm = next(m for m in sp["mounts"] if m["destination"] == "/dev/shm")
    assert f"size={64 * MIB}" in shm["options"]


def test_tty_env_user_workdir() -> None:
    sp = build({"Cmd": ["sh"], "Tty": True, "WorkingDir": "/tmp"}, user=(65534, 65534, [5]))
    p = sp["process"]
    assert p["terminal"] is True and "TERM=xterm" in p["env"] and p["cwd"] == "/tmp"
    assert p["user"] == {"uid": 65534, "gid": 65534, "additionalGids": [5]}


def test_caps_add_drop_all() -> None:
    sp = build({"Cmd": ["sh"]}, {"CapAdd": ["NET_ADMIN"], "CapDrop": ["chown", "CAP_KILL"]})
    caps = sp["process"]["capabilities"]["effective"]
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    sp = build({"Cmd": ["sh"]}, {"CapDrop": ["ALL"], "CapAdd": ["CHOWN"]})
    assert sp["process"]["capabilities"]["bounding"] == ["CAP_CHOWN"]
    sp = build({"Cmd": ["sh"]}, {"CapAdd": ["ALL"]})
    assert "CAP_SYS_ADMIN" in sp["process"]["capabilities"]["bounding"]
    with pytest.raises(InvalidParameter, match="unknown capability"):
        build({"Cmd": ["sh"]}, {"CapAdd": ["FLY"]})


def test_security_opts() -> None:
    sp = build({"Cmd": ["sh"]}, {"SecurityOpt": ["no-new-privileges"]})
    assert sp["process"]["noNewPrivileges"] is True
    sp = build({"Cmd": ["sh"]}, {"SecurityOpt": ["seccomp=unconfined"]})
    assert "seccomp" not in sp["linux"]
    assert sp["annotations"]["org.skiff.seccomp"] == "unconfined"
    prof = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}'
    sp = build({"Cmd": ["sh"]}, {"SecurityOpt": [f"seccomp={prof}"]})
    assert sp["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    with pytest.raises(InvalidParameter, match="seccomp profile"):
        build({"Cmd": ["sh"]}, {"SecurityOpt": ["seccomp=/no/such.json"]})
    with pytest.raises(InvalidParameter, match="Invalid --security-opt"):
        build({"Cmd": ["sh"]}, {"SecurityOpt": ["bogus"]})


def test_default_seccomp_is_libcontainers() -> None:
    sp = build({"Cmd": ["sh"]})
    # no linux.seccomp and no "unconfined" annotation: libcontainer applies docker's default
    assert "seccomp" not in sp["linux"] and "annotations" not in sp


def test_read_only_and_etc_files() -> None:
    sp = build({"Cmd": ["sh"]}, {"ReadonlyRootfs": True},
               etc_files={"/etc/hosts": "/c/hosts", "/etc/hostname": "/c/hostname"})
    assert sp["root"]["readonly"] is True
    hosts = next(m for m in sp["mounts"] if m["destination"] == "/etc/hosts")
    assert hosts["source"] == "/c/hosts" and "ro" in hosts["options"]


def test_bind_and_volume_mounts() -> None:
    mounts = [s.MountPoint("bind", "/host/a", "/a", rw=False),
              s.MountPoint("volume", "/v/_data", "/data", name="v")]
    sp = build({"Cmd": ["sh"]}, mounts=mounts)
    a = next(m for m in sp["mounts"] if m["destination"] == "/a")
    assert a["type"] == "bind" and a["source"] == "/host/a" and "ro" in a["options"]
    d = next(m for m in sp["mounts"] if m["destination"] == "/data")
    assert "rw" in d["options"]


def test_parse_bind() -> None:
    assert s.parse_bind("/h:/c:ro") == ("/h", "/c", "ro")
    assert s.parse_bind("vol:/c") == ("vol", "/c", "")
    assert s.parse_bind("/c") == ("", "/c", "")
    with pytest.raises(InvalidParameter, match="mount path must be absolute"):
        s.parse_bind("/h:rel")
    with pytest.raises(InvalidParameter, match="invalid mode"):
        s.parse_bind("/h:/c:bogus")


def test_network_modes() -> None:
    sp = build({"Cmd": ["sh"]}, netns="host")
    assert "network" not in {n["type"] for n in sp["linux"]["namespaces"]}
    sp = build({"Cmd": ["sh"]}, netns="/run/netns/x")
    net = next(n for n in sp["linux"]["namespaces"] if n["type"] == "network")
    assert net["path"] == "/run/netns/x"


def test_init_and_tmpfs_and_ulimits() -> None:
    sp = build({"Cmd": ["sleep", "1"]}, {"Init": True, "Tmpfs": {"/run": "size=1m"},
               "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}]},
               init_binary="/b/skiff-init")
    assert sp["process"]["args"] == [s.INIT_PATH, "--", "sleep", "1"]
    assert any(m["destination"] == s.INIT_PATH for m in sp["mounts"])
    run = next(m for m in sp["mounts"] if m["destination"] == "/run")
    assert run["type"] == "tmpfs" and "size=1m" in run["options"]
    assert sp["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]


def test_privileged() -> None:
    sp = build({"Cmd": ["sh"]}, {"Privileged": True})
    assert "CAP_SYS_ADMIN" in sp["process"]["capabilities"]["bounding"]
    assert "maskedPaths" not in sp["linux"] and "seccomp" not in sp["linux"]
    assert sp["annotations"]["org.skiff.seccomp"] == "unconfined"


def test_signal_number() -> None:
    assert s.signal_number("SIGKILL") == 9
    assert s.signal_number("term") == 15
    assert s.signal_number("9") == 9
    assert s.signal_number(None) == 15
    with pytest.raises(InvalidParameter, match="Invalid signal"):
        s.signal_number("SIGNOPE")


def test_resolve_user() -> None:
    pw = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    gr = "root:x:0:\napp:x:1000:\nextra:x:2000:app\n"
    assert s.resolve_user("", pw, gr) == (0, 0, [])
    assert s.resolve_user("app", pw, gr) == (1000, 1000, [2000])
    assert s.resolve_user("1000:0", pw, gr) == (1000, 0, [])
    assert s.resolve_user("4242", pw, gr) == (4242, 0, [])
    assert s.resolve_user("app:extra", pw, gr) == (1000, 2000, [])
    with pytest.raises(InvalidParameter, match="unable to find user ghost"):
        s.resolve_user("ghost", pw, gr)


def test_cpu_shares_clamped_with_warning() -> None:
    hc = {"CpuShares": 1}
    warnings = s.validate_host_config(hc)
    assert hc["CpuShares"] == 2 and "minimum allowed of 2" in warnings[0]


def test_pids_unlimited_on_update() -> None:
    assert s.resources({"PidsLimit": 0}, update=True)["pids"] == {"limit": -1}
    assert "pids" not in s.resources({"PidsLimit": 0})


def test_devices() -> None:
    sp = build({"Cmd": ["sh"]}, {"Devices": [{"PathOnHost": "/dev/null",
                                              "PathInContainer": "/dev/mynull",
                                              "CgroupPermissions": "rw"}]})
    dev = sp["linux"]["devices"][0]
    assert (dev["path"], dev["type"], dev["major"], dev["minor"]) == ("/dev/mynull", "c", 1, 3)
    assert sp["linux"]["resources"]["devices"][-1] == {
        "allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    with pytest.raises(InvalidParameter, match="error gathering device information"):
        build({"Cmd": ["sh"]}, {"Devices": [{"PathOnHost": "/no/dev"}]})
    with pytest.raises(InvalidParameter, match="not a device node"):
        build({"Cmd": ["sh"]}, {"Devices": [{"PathOnHost": "/etc/hostname"}]})


def test_cgroup_parent_validated() -> None:
    with pytest.raises(InvalidParameter, match="invalid cgroup parent"):
        s.validate_host_config({"CgroupParent": "../escape"})
    s.validate_host_config({"CgroupParent": "skt7-custom/sub"})
