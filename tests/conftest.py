"""Shared pytest wiring: the target machine (`--target local|vagrant`) and the test images.

`--target local` (default): this machine, as root; what CI and these dev machines use, and what
the suites use INSIDE the VM (`tox -e system` runs `pytest tests/system --target local` there,
so the engine and the kernel under test are the VM's).

`--target vagrant`: the tests run on the host and make their kernel-side assertions on the VM
through the `host` fixture (testinfra over SSH). The VM is the one `tox -e system --keep` left
running (SKIFF_SSH_CONFIG / SKIFF_VM_MACHINE set by the harness, or found through
python-vagrant in vm/ with the harness's state directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("skiff")
    group.addoption(
        "--target",
        default=os.environ.get("SKIFF_TARGET", "local"),
        choices=["local", "vagrant"],
        help="where system/property suites run their kernel-side checks (default: local)",
    )
    group.addoption(
        "--vm-machine",
        default=os.environ.get("SKIFF_VM_MACHINE", "v2"),
        help="with --target vagrant: which machine of vm/Vagrantfile (v2 or v1)",
    )


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--target"))


def _vagrant_ssh_config(machine: str, tmp: Path) -> Path:
    """ssh-config of a running harness VM, through python-vagrant (no VM is booted here)."""
    import vagrant  # python-vagrant, from the [harness] extra

    from vm.harness import MACHINES, vagrant_env

    env = dict(os.environ, **vagrant_env(None, os.environ.get("SKIFF_VM_ACCEL", "tcg"), 2, 2048))
    v = vagrant.Vagrant(root=str(REPO / "vm"), env=env, quiet_stdout=True, quiet_stderr=True)
    try:
        running = machine in MACHINES and v.status(vm_name=machine)[0].state == "running"
    except Exception:  # noqa: BLE001 - vagrant/libvirt not there: same answer as "no VM"
        running = False
    if not running:
        pytest.skip(f"no running VM {machine!r}: start one with `tox -e system -- --keep`")
    path = tmp / f"{machine}.ssh-config"
    path.write_text(v.ssh_config(vm_name=machine))
    return path


@pytest.fixture(scope="session")
def host(request: pytest.FixtureRequest, target: str, tmp_path_factory: pytest.TempPathFactory):
    """A testinfra host for kernel-side assertions on the target (local:// or ssh://<vm>)."""
    import testinfra

    if target == "local":
        return testinfra.get_host("local://")
    machine = str(request.config.getoption("--vm-machine"))
    ssh_config = os.environ.get("SKIFF_SSH_CONFIG")
    if not ssh_config:
        try:
            ssh_config = str(_vagrant_ssh_config(machine, tmp_path_factory.mktemp("vm")))
        except ImportError:
            pytest.skip("--target vagrant needs python-vagrant (pip install '.[harness]')")
    return testinfra.get_host(f"ssh://{machine}", ssh_config=ssh_config, sudo=True)


@pytest.fixture(scope="session")
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root and the real kernel")


@pytest.fixture(scope="session")
def busybox_image(require_root: None) -> Path:
    """Directory of the busybox test image (rootfs/, rootfs.tar, bundle/, oci/, docker-save.tar)."""
    from tests.images import busybox

    return busybox.build()
