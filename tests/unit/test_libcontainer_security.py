"""Capability names/bitmasks, Docker's seccomp profile translation, rootfs path resolution."""

from __future__ import annotations

import os

import pytest

from engine.libcontainer import capabilities as caps
from engine.libcontainer import seccomp
from engine.libcontainer.container import pid_start_time, validate_id
from engine.libcontainer.defaults import DOCKER_DEFAULT_CAPS
from engine.libcontainer.errors import ConfigError
from engine.libcontainer.process import lookpath
from engine.libcontainer.rootfs import secure_join

DOCKER_DEFAULT_MASK = 0xA80425FB  # CapEff of a `docker run busybox` process


def test_capability_numbers():
    assert caps.cap_number("CAP_CHOWN") == 0
    assert caps.cap_number("sys_admin") == 21
    assert caps.cap_number("CAP_CHECKPOINT_RESTORE") == 40
    with pytest.raises(KeyError):
        caps.cap_number("CAP_FLY")


def test_docker_default_mask():
    assert caps.to_mask(DOCKER_DEFAULT_CAPS) == DOCKER_DEFAULT_MASK
    assert sorted(caps.from_mask(DOCKER_DEFAULT_MASK)) == sorted(DOCKER_DEFAULT_CAPS)


def test_mask_roundtrip_all():
    m = (1 << len(caps.CAP_NAMES)) - 1
    assert caps.to_mask(caps.from_mask(m)) == m


def _names(profile, action="SCMP_ACT_ALLOW"):
    out = set()
    for s in profile["syscalls"]:
        if s["action"] == action and not s.get("args"):
            out |= set(s["names"])
    return out


def test_docker_profile_default_caps():
    p = seccomp.docker_default(DOCKER_DEFAULT_CAPS, goarch="amd64", kernel=(6, 1))
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = _names(p)
    assert {"read", "write", "execve", "arch_prctl", "ptrace"} <= allowed
    # CAP_SYS_ADMIN-only calls are not allowed by default
    assert not {"mount", "unshare", "setns", "bpf", "reboot"} & allowed
    assert "chroot" in allowed  # CAP_SYS_CHROOT is a Docker default
    # clone is allowed only without namespace flags; clone3 returns ENOSYS
    clone = [s for s in p["syscalls"] if s["names"] == ["clone"]]
    assert clone and clone[0]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    clone3 = [s for s in p["syscalls"] if s["names"] == ["clone3"]]
    assert clone3[0]["action"] == "SCMP_ACT_ERRNO" and clone3[0]["errnoRet"] == 38


def test_docker_profile_follows_caps():
    p = seccomp.docker_default(DOCKER_DEFAULT_CAPS + ["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"],
                               goarch="amd64", kernel=(6, 1))
    allowed = _names(p)
    assert {"mount", "unshare", "setns", "chroot"} <= allowed
    assert not [s for s in p["syscalls"] if s["names"] == ["clone3"]]


def test_docker_profile_min_kernel_and_arch():
    old = _names(seccomp.docker_default([], goarch="amd64", kernel=(4, 4)))
    assert "ptrace" not in old  # minKernel 4.8
    arm = seccomp.docker_default([], goarch="arm64", kernel=(6, 1))
    assert "arch_prctl" not in _names(arm)
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_compile_bpf_and_cache(tmp_path):
    pytest.importorskip("pyseccomp")
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["keyctl", "nosuch_syscall"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}]}
    bpf = seccomp.bpf_for(prof, cache_dir=str(tmp_path))
    assert bpf and len(bpf) % 8 == 0
    assert [p.suffix for p in tmp_path.iterdir()] == [".bpf"]
    assert seccomp.bpf_for(prof, cache_dir=str(tmp_path)) == bpf
    assert seccomp.profile_key(prof) != seccomp.profile_key({**prof, "defaultAction":
                                                             "SCMP_ACT_LOG"})


def test_secure_join(tmp_path):
    root = tmp_path
    (root / "etc").mkdir()
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "rel")
    os.symlink("loop", root / "loop")
    assert secure_join(str(root), "/abs/passwd") == str(root / "etc/passwd")
    assert secure_join(str(root), "/rel/x") == str(root / "etc/x")
    assert secure_join(str(root), "/../../etc") == str(root / "etc")
    assert secure_join(str(root), "/new/../dir") == str(root / "dir")
    with pytest.raises(OSError):
        secure_join(str(root), "/loop/x")


def test_lookpath(tmp_path):
    exe = tmp_path / "prog"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert lookpath("prog", f"/nonexistent:{tmp_path}") == str(exe)
    with pytest.raises(Exception) as ei:
        lookpath("nope", str(tmp_path))
    assert str(ei.value) == 'exec: "nope": executable file not found in $PATH'
    assert lookpath(str(exe), None) == str(exe)


@pytest.mark.parametrize("cid", ["", "a/b", "..", "x y"])
def test_bad_ids(cid):
    with pytest.raises(ConfigError):
        validate_id(cid)


def test_pid_start_time():
    assert pid_start_time(os.getpid()) > 0
    assert pid_start_time(2**22 + 5) is None


class _FakeChannel:
    def __init__(self, msgs):
        self.msgs = list(msgs)

    def recv(self):
        return (self.msgs.pop(0), None) if self.msgs else (None, None)

    def send(self, **msg):
        pass


@pytest.mark.parametrize("order", [["pid", "ready"], ["ready", "pid"]])
def test_handshake_waits_for_pid_and_ready(order):
    from engine.libcontainer.container import Container

    c = Container("/nonexistent", "x", {})
    c._pids = []
    msgs = [{"t": "pid", "pid": 4242} if t == "pid" else {"t": "ready"} for t in order]
    assert c._handshake(_FakeChannel(msgs), None, 2**22 + 7, None, None) == 4242


def test_handshake_reports_init_errors():
    from engine.libcontainer.container import Container
    from engine.libcontainer.errors import SystemError_

    c = Container("/nonexistent", "x", {})
    c._pids = []
    with pytest.raises(SystemError_, match="boom"):
        c._handshake(_FakeChannel([{"t": "error", "msg": "boom"}]), None, 1, None, None)
    with pytest.raises(SystemError_, match="exited before"):
        c._handshake(_FakeChannel([]), None, 1, None, None)


def test_stopped_container_never_signals_pid_zero():
    from engine.libcontainer.container import Container
    from engine.libcontainer.errors import StateError

    c = Container("/nonexistent", "x", {"init_pid": 0, "init_start": None})
    assert c.status == "stopped"
    with pytest.raises(StateError):
        c.kill(9)
