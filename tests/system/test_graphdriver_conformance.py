"""One conformance suite for every graphdriver (overlay, vfs), on the real kernel.

Like moby's graphtest: layers from tars (with whiteouts), a container rw layer on top, mount
reference counts, diff, remove, status. Each test gets a fresh driver home under
/var/tmp/skt3-* and unmounts and removes everything in its finalizer.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from engine.drivers.graph import DRIVERS, _mount, new_driver
from engine.errors import Conflict, NotFound
from tests.images.layers import mk

BASE = [
    ("d", "etc"), ("f", "etc/hosts", "127.0.0.1 localhost\n"), ("f", "etc/gone", "g"),
    ("d", "var"), ("d", "var/cache"), ("f", "var/cache/a", "a"), ("f", "var/cache/b", "b"),
    ("d", "bin"), ("f", "bin/tool", "#!/bin/sh\necho tool\n", 0o755),
    ("h", "bin/tool-hard", "bin/tool"), ("l", "bin/alias", "tool"),
    ("f", "home/user/file", "u", 0o640, (1000, 1001)),
    ("f", "setuid", "s", 0o4755),
]
CHILD = [
    ("f", "etc/.wh.gone", ""), ("d", "var/cache"), ("f", "var/cache/.wh..wh..opq", ""),
    ("f", "var/cache/new", "n"), ("f", "etc/added", "added"),
]


@pytest.fixture(params=DRIVERS)
def driver(request, require_root):
    home = Path(tempfile.mkdtemp(prefix="skt3-gd-", dir="/var/tmp"))
    d = new_driver(request.param, home)
    assert d.name == request.param
    try:
        yield d
    finally:
        d.cleanup()
        with open("/proc/self/mountinfo") as f:
            left = [ln.split()[4] for ln in f if ln.split()[4].startswith(str(home))]
        for m in sorted(left, key=len, reverse=True):
            _mount.umount(m, _mount.MNT_DETACH)
        shutil.rmtree(home, ignore_errors=True)
        assert not left, f"mounts left behind: {left}"


def layer(d, id: str, parent: str | None, entries: list[tuple]) -> None:
    d.create(id, parent)
    d.apply_diff(id, io.BytesIO(mk(entries)))


def tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "->" + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = p.read_text()
    return out


def test_base_layer_contents_modes_owners_links(driver):
    layer(driver, "base", None, BASE)
    root = driver.get("base")
    try:
        assert (root / "etc/hosts").read_text() == "127.0.0.1 localhost\n"
        st = os.lstat(root / "home/user/file")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o640)
        assert stat.S_IMODE(os.lstat(root / "setuid").st_mode) == 0o4755
        assert os.lstat(root / "bin/tool").st_ino == os.lstat(root / "bin/tool-hard").st_ino
        assert os.readlink(root / "bin/alias") == "tool"
    finally:
        driver.put("base")


def test_child_whiteouts_and_opaque_dirs(driver):
    layer(driver, "base", None, BASE)
    layer(driver, "child", "base", CHILD)
    driver.create("rw", "child")
    root = driver.get("rw")
    try:
        t = tree(root)
        assert "etc/gone" not in t
        assert t["etc/added"] == "added" and t["etc/hosts"].startswith("127.0.0.1")
        assert sorted(os.listdir(root / "var/cache")) == ["new"]
        assert t["bin/tool"].startswith("#!/bin/sh")
    finally:
        driver.put("rw")
    # the lower layer is unchanged
    base = driver.get("base")
    try:
        assert sorted(os.listdir(base / "var/cache")) == ["a", "b"]
        assert (base / "etc/gone").exists()
    finally:
        driver.put("base")


def test_rw_layer_changes_and_diff(driver):
    layer(driver, "base", None, BASE)
    driver.create("rw", "base")
    root = driver.get("rw")
    try:
        (root / "etc/new").write_text("new")
        os.unlink(root / "etc/gone")
        (root / "etc/hosts").write_text("changed\n")
    finally:
        driver.put("rw")
    out = io.BytesIO()
    driver.diff("rw", "base", out)
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(out.getvalue()))}
    assert "etc/new" in members and "etc/.wh.gone" in members and "etc/hosts" in members
    assert "bin/tool" not in members
    # applying the diff on a copy of base reproduces the rw view
    layer(driver, "base2", None, BASE)
    driver.create("again", "base2")
    driver.apply_diff("again", io.BytesIO(out.getvalue()))
    a, b = driver.get("again"), driver.get("rw")
    try:
        assert tree(a) == tree(b)
    finally:
        driver.put("again")
        driver.put("rw")


def test_mount_refcount_and_remove_while_mounted(driver):
    layer(driver, "base", None, BASE)
    driver.create("rw", "base")
    p1 = driver.get("rw")
    p2 = driver.get("rw")
    assert p1 == p2
    driver.put("rw")
    assert (p1 / "etc/hosts").exists()  # still mounted after one put
    if driver.name == "overlay":
        assert _mount.is_mountpoint(str(p1))
    driver.remove("rw")  # unmounts first
    assert not driver.exists("rw")
    if driver.name == "overlay":
        assert not _mount.is_mountpoint(str(p1))
    driver.remove("rw")  # idempotent


def test_errors_and_status(driver):
    layer(driver, "base", None, BASE)
    with pytest.raises(Conflict):
        driver.create("base", None)
    with pytest.raises(NotFound):
        driver.get("nope")
    with pytest.raises(NotFound):
        driver.create("x", "nope")
    assert not driver.exists("x")
    st = dict(driver.status())
    assert st["Backing Filesystem"] in ("extfs", "xfs", "tmpfs", "btrfs")
    assert driver.ids() == ["base"]


def test_chroot_into_busybox_rw_layer(driver, busybox_image):
    driver.create("bb", None)
    with open(busybox_image / "rootfs.tar", "rb") as f:
        driver.apply_diff("bb", f)
    driver.create("ctr", "bb")
    root = driver.get("ctr")
    try:
        out = subprocess.run(["chroot", str(root), "/bin/sh", "-c", "echo hi > /hello; cat /hello"],
                             capture_output=True, text=True, check=True)
        assert out.stdout == "hi\n"
    finally:
        driver.put("ctr")
    base = driver.get("bb")
    try:
        assert not (base / "hello").exists()  # the write went to the rw layer only
    finally:
        driver.put("bb")


def test_deep_layer_chain(driver):
    """100 layers: overlay's mount data would pass a page with absolute lowerdir paths."""
    parent = None
    for i in range(100):
        layer(driver, f"l{i:03d}", parent, [("f", f"f{i:03d}", str(i))])
        parent = f"l{i:03d}"
    driver.create("top", parent)
    root = driver.get("top")
    try:
        names = sorted(n for n in os.listdir(root) if n.startswith("f"))
        assert len(names) == 100 and (root / "f042").read_text() == "42"
    finally:
        driver.put("top")
