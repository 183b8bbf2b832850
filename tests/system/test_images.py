"""The busybox test image is a working root filesystem on this kernel."""

import json
import subprocess


def test_busybox_rootfs_runs(busybox_image):
    out = subprocess.run(
        ["chroot", str(busybox_image / "rootfs"), "/bin/sh", "-c", "echo hi from $(uname -s)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout == "hi from Linux\n"


def test_bundle_has_config(busybox_image):
    spec = json.loads((busybox_image / "bundle" / "config.json").read_text())
    assert spec["root"]["path"] == "rootfs"
    assert (busybox_image / "bundle" / "rootfs" / "bin" / "sh").is_symlink()
