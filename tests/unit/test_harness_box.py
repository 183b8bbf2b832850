"""Box cache keys, box naming, the Vagrantfile variables, result collection helpers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from vm import box, wheels


def test_cache_key_is_stable_and_ignores_package_order_and_duplicates() -> None:
    a = box.cache_key(b"script", ["b", "a", "a"], "ro  console=ttyS0")
    b = box.cache_key(b"script", ["a", "b"], "ro console=ttyS0")
    assert a == b
    assert len(a) == 64


def test_cache_key_changes_with_each_input() -> None:
    base = box.cache_key(b"script", ["a"], "ro", "bookworm", "http://m/debian")
    assert box.cache_key(b"script2", ["a"], "ro", "bookworm", "http://m/debian") != base
    assert box.cache_key(b"script", ["a", "c"], "ro", "bookworm", "http://m/debian") != base
    assert box.cache_key(b"script", ["a"], "ro quiet", "bookworm", "http://m/debian") != base
    assert box.cache_key(b"script", ["a"], "ro", "trixie", "http://m/debian") != base
    assert box.cache_key(b"script", ["a"], "ro", "bookworm", "http://other/debian") != base
    # a trailing slash on the mirror is the same mirror
    assert box.cache_key(b"script", ["a"], "ro", "bookworm", "http://m/debian/") == base


def test_read_packages_strips_comments(tmp_path: Path) -> None:
    f = tmp_path / "packages.txt"
    f.write_text("# header\npython3\npython3-apt    # why\n\n  skopeo  \n")
    assert box.read_packages(f) == ["python3", "python3-apt", "skopeo"]


def test_repository_package_list_is_clean() -> None:
    pkgs = box.read_packages()
    assert pkgs and all(p == p.strip() and " " not in p for p in pkgs)
    assert {"python3-venv", "docker-registry", "skopeo", "busybox-static"} <= set(pkgs)


def test_box_name_and_env(tmp_path: Path) -> None:
    key = "ab" * 32
    assert box.box_name(key) == "skiff-debian12-" + key[:12]
    b = box.Box(box.box_name(key), key, tmp_path)
    env = b.env()
    assert env["SKIFF_BOX"] == box.box_name(key)
    assert env["SKIFF_BOX_KERNEL"] == str(tmp_path / "vmlinuz")
    assert env["SKIFF_BOX_CMDLINE_V1"].endswith("systemd.unified_cgroup_hierarchy=0")
    assert f"root=UUID={box.ROOT_UUID}" in env["SKIFF_BOX_CMDLINE_V2"]
    assert "unified_cgroup_hierarchy" not in env["SKIFF_BOX_CMDLINE_V2"]


def test_public_box_has_no_direct_kernel_boot() -> None:
    env = box.Box("debian/bookworm64", "", None).env()
    assert env == {"SKIFF_BOX": "debian/bookworm64"}


def test_parse_box_list() -> None:
    out = ("1700000000,,ui,info,skiff-debian12-83fa4276b2dc (libvirt%!(VAGRANT_COMMA) 0)\n"
           "1700000000,,box-name,skiff-debian12-83fa4276b2dc\n"
           "1700000000,,box-provider,libvirt\n"
           "1700000000,,box-name,debian/bookworm64\n")
    assert box.parse_box_list(out) == ["skiff-debian12-83fa4276b2dc", "debian/bookworm64"]


def test_wheelhouse_key_follows_pyproject(tmp_path: Path) -> None:
    p = tmp_path / "pyproject.toml"
    p.write_text("[project]\nname='x'\n")
    k1 = wheels.key(p)
    assert wheels.key(p) == k1
    p.write_text("[project]\nname='x'\ndependencies=['y']\n")
    assert wheels.key(p) != k1


def test_collect_layout_extracts_guest_tar(tmp_path: Path) -> None:
    """The collect step's shape: a tar of the guest's results dir unpacks under <kernel>/."""
    from vm import hostutil

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in {"./system.xml": b"<testsuites/>", "./skiffd.log": b"log"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    lay = hostutil.results_layout(tmp_path, "run1", "v2")
    lay["dir"].mkdir(parents=True)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        t.extractall(lay["dir"])  # noqa: S202 - our own archive
    assert lay["junit_system"].read_bytes() == b"<testsuites/>"
    assert lay["skiffd_log"].read_text() == "log"
    assert json.dumps({k: str(v) for k, v in lay.items()})
