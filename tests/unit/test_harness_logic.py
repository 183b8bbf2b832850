"""The VM harness's own logic (no VM, no libvirt): ports, ssh-config, accelerator, recap."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from vm import hostutil


def test_free_port_is_bindable_and_not_taken() -> None:
    p = hostutil.free_port()
    assert 1024 <= p <= 65535
    assert hostutil.port_is_free(p)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert not hostutil.port_is_free(busy)


def test_free_port_skips_ports_given_to_other_vms(monkeypatch: pytest.MonkeyPatch) -> None:
    seq = iter([40001, 40001, 40002])

    class FakeSock:
        def __init__(self, *a: object) -> None:
            self.port = next(seq)

        def __enter__(self) -> FakeSock:
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def bind(self, addr: tuple[str, int]) -> None:
            pass

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(hostutil.socket, "socket", FakeSock)
    assert hostutil.free_port(taken={40001}) == 40002


def test_assign_ports_keeps_a_port_for_the_vm_lifetime(tmp_path: Path) -> None:
    f = tmp_path / "state" / "ports.json"
    first = hostutil.assign_ports(f, ["v2", "v1"])
    assert set(first) == {"v2", "v1"} and first["v2"] != first["v1"]
    again = hostutil.assign_ports(f, ["v2", "v1"])
    assert again == first
    assert json.loads(f.read_text()) == first


def test_assign_ports_adds_only_missing_machines(tmp_path: Path) -> None:
    f = tmp_path / "ports.json"
    f.write_text(json.dumps({"v2": 2222}))
    ports = hostutil.assign_ports(f, ["v2", "v1"])
    assert ports["v2"] == 2222 and ports["v1"] != 2222


SSH_CONFIG = """Host v2
  HostName 127.0.0.1
  User vagrant
  Port 39273
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/private key"
  IdentitiesOnly yes
  LogLevel FATAL
  PubkeyAcceptedKeyTypes +ssh-rsa
  HostKeyAlgorithms +ssh-rsa

Host v1
  HostName=127.0.0.1
  Port 40000
  Port 40001
"""


def test_parse_ssh_config() -> None:
    hosts = hostutil.parse_ssh_config(SSH_CONFIG)
    assert set(hosts) == {"v2", "v1"}
    v2 = hosts["v2"]
    assert v2["hostname"] == "127.0.0.1"
    assert v2["port"] == "39273"
    assert v2["user"] == "vagrant"
    assert v2["identityfile"].endswith("keys/private key")  # quotes removed, spaces kept
    assert hosts["v1"]["hostname"] == "127.0.0.1"           # key=value form
    assert hosts["v1"]["port"] == "40000"                   # first value wins, as in ssh


def test_ansible_inventory_from_ssh_config() -> None:
    inv = hostutil.ansible_inventory("v2", hostutil.parse_ssh_config(SSH_CONFIG)["v2"])
    assert inv.startswith("[skiff]\nv2 ansible_host=127.0.0.1 ansible_port=39273")
    assert "ansible_user=vagrant" in inv


@pytest.mark.parametrize(
    "flags,override,usable,want",
    [
        ("fpu vme sse2 avx", None, True, "tcg"),      # this machine: no vmx/svm
        ("fpu vmx sse2", None, True, "kvm"),           # Intel VT-x laptop
        ("fpu svm sse2", None, True, "kvm"),           # AMD-V
        ("fpu vmx sse2", None, False, "tcg"),          # vmx but /dev/kvm not usable
        ("fpu sse2", "kvm", True, "kvm"),              # the override wins
        ("fpu vmx", "TCG", True, "tcg"),
    ],
)
def test_choose_accel(flags: str, override: str | None, usable: bool, want: str) -> None:
    cpuinfo = f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"
    assert hostutil.choose_accel(cpuinfo, override, usable) == want


def test_choose_accel_rejects_unknown_override() -> None:
    with pytest.raises(ValueError, match="kvm or tcg"):
        hostutil.choose_accel("flags : vmx", "hvf")


RECAP = """
TASK [Services] ****
ok: [v2] => (item=skiffd)

PLAY RECAP *********************************************************************
v2                         : ok=7    changed=0    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0

Sunday 29 November 2026  03:50:01 +0000 (0:00:01.2)       0:00:09.1 ******
"""


def test_parse_recap() -> None:
    r = hostutil.parse_recap(RECAP)
    assert r == {"v2": {"ok": 7, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 1,
                        "rescued": 0, "ignored": 0}}
    assert hostutil.parse_recap("no recap here") == {}


def test_junit_counts(tmp_path: Path) -> None:
    x = tmp_path / "r.xml"
    x.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="1" '
                 'failures="2" skipped="3" tests="10" time="1.0"/></testsuites>')
    assert hostutil.junit_counts(x) == {"tests": 10, "failures": 2, "errors": 1, "skipped": 3,
                                        "passed": 4}
    assert hostutil.junit_counts(tmp_path / "missing.xml")["tests"] == 0


def test_results_layout(tmp_path: Path) -> None:
    lay = hostutil.results_layout(tmp_path, "20260101-000000", "v1")
    assert lay["dir"] == tmp_path / "20260101-000000" / "v1"
    assert lay["junit_system"].name == "system.xml"
    assert all(p.is_relative_to(lay["dir"]) for p in lay.values())


def test_format_table() -> None:
    t = hostutil.format_table([("v2", "up", "66.0")], ("kernel", "step", "s"))
    lines = t.splitlines()
    assert lines[0].startswith("| kernel | step | s ")
    assert lines[1].startswith("|--------|")
    assert "| v2     | up   | 66.0 |" == lines[2]


def test_failure_excerpt_keeps_failures_and_summary() -> None:
    from vm.harness import failure_excerpt
    out = "\n".join(["collected 3 items", "t.py .F.",
                     "=================== FAILURES ===================",
                     "____ test_x ____", "E   AssertionError: 1 != 2",
                     "=========== short test summary info ===========",
                     "FAILED t.py::test_x - AssertionError",
                     "====== 1 failed, 2 passed in 1.00s ======"])
    text = failure_excerpt(out, "v2", "property")
    assert "E   AssertionError: 1 != 2" in text
    assert "FAILED t.py::test_x" in text
    assert "collected 3 items" not in text
    assert text.startswith("---- [v2] tests/property failures ----")


def test_failure_excerpt_is_bounded() -> None:
    from vm.harness import failure_excerpt
    out = "\n".join(["= FAILURES ="] + [f"line {i}" for i in range(1000)])
    text = failure_excerpt(out, "v1", "system", limit=30)
    assert len(text.splitlines()) < 40 and "lines cut" in text


def test_static_executable_tells_static_from_dynamic(tmp_path: Path) -> None:
    import shutil
    import sys

    from vm.hostutil import static_executable
    assert not static_executable(sys.executable) or "static" in sys.executable
    assert not static_executable(str(tmp_path / "missing"))
    (tmp_path / "text").write_text("#!/bin/sh\n")
    assert not static_executable(str(tmp_path / "text"))
    tini = shutil.which("tini-static")
    if tini:
        assert static_executable(tini)
