"""Verify step of `tox -e system`: testinfra checks that provisioning did what it says.

Run by the harness as `pytest vm/verify --hosts=ssh://<machine> --ssh-config=FILE --sudo`
(molecule's verifier shape). These are checks of the target, not of the engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGES = [
    line.split("#", 1)[0].strip()
    for line in (Path(__file__).resolve().parents[2] / "provision" / "packages.txt")
    .read_text()
    .splitlines()
    if line.split("#", 1)[0].strip()
]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_installed(host, name: str) -> None:
    assert host.package(name).is_installed


def test_venv_has_engine(host) -> None:
    r = host.run("/opt/skiff-venv/bin/python -c 'import engine, pytest, hypothesis, testinfra'")
    assert r.rc == 0, r.stderr
    assert host.file("/opt/skiff-venv/bin/skiffd").is_file


@pytest.mark.parametrize(
    "key,value",
    [("net.ipv4.ip_forward", 1), ("net.bridge.bridge-nf-call-iptables", 1)],
)
def test_sysctl(host, key: str, value: int) -> None:
    assert host.sysctl(key) == value


@pytest.mark.parametrize("module", ["overlay", "br_netfilter", "veth", "nf_tables"])
def test_module_loaded(host, module: str) -> None:
    assert host.file(f"/sys/module/{module}").is_directory


def test_registry_listening_and_seeded(host) -> None:
    assert host.socket("tcp://127.0.0.1:5000").is_listening
    r = host.run("skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/busybox:latest")
    assert r.rc == 0, r.stderr


def test_skiffd_unit(host) -> None:
    svc = host.service("skiffd")
    assert svc.is_enabled
    # active, or activating between restarts while the daemon is still being written
    state = host.run("systemctl show -p ActiveState --value skiffd").stdout.strip()
    assert state in ("active", "activating"), state


def test_cgroup_layout_matches_kernel_choice(host) -> None:
    """v2 machine: pure cgroup2 at /sys/fs/cgroup; v1 machine: controllers on v1."""
    fstype = host.run("stat -f -c %T /sys/fs/cgroup").stdout.strip()
    cmdline = host.file("/proc/cmdline").content_string
    if "systemd.unified_cgroup_hierarchy=0" in cmdline:
        assert fstype == "tmpfs"
        assert host.file("/sys/fs/cgroup/memory").is_directory
    else:
        assert fstype == "cgroup2fs"
