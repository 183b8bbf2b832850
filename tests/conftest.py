"""Shared pytest wiring: the target machine (`--target local|vagrant`) and the test images."""

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


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--target"))


@pytest.fixture(scope="session")
def host(target: str):
    """A testinfra host for kernel-side assertions on the target."""
    import testinfra

    if target == "local":
        return testinfra.get_host("local://")
    ssh_config = os.environ.get("SKIFF_SSH_CONFIG")
    if not ssh_config:
        pytest.skip("--target vagrant needs SKIFF_SSH_CONFIG (set by `tox -e system`)")
    return testinfra.get_host("ssh://default", ssh_config=ssh_config, sudo=True)


@pytest.fixture(scope="session")
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root and the real kernel")


@pytest.fixture(scope="session")
def busybox_image(require_root: None) -> Path:
    """Directory of the busybox test image (rootfs/, rootfs.tar, bundle/, oci/, docker-save.tar)."""
    from tests.images import busybox

    return busybox.build()
