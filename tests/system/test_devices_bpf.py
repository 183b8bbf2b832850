"""The cgroup v2 device filter (eBPF) against the real kernel (root).

On this hybrid host the program goes on a directory of the cgroup2 at /sys/fs/cgroup/unified
(device programs need no controller); on a pure-v2 host (the VM) on /sys/fs/cgroup itself.
The probe process is moved into that cgroup, and opens / mknods device nodes made in tmp_path:
only EPERM is the filter's refusal. Everything is under `skt13` and removed also on failure.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import Resources, devices_bpf
from engine.libcontainer.cgroups.resources import DEFAULT_ALLOWED_DEVICES
from engine.libcontainer.defaults import default_spec
from tests.property import devsupport as ds

pytestmark = pytest.mark.root

DENY_ALL = [{"allow": False, "access": "rwm"}]
KMSG = {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}
# Block/char numbers in the "local/experimental use" range: no driver, so a permitted open
# fails with ENXIO instead of touching a real disk.
BLK, CHR = ("b", 240, 0), ("c", 240, 0)
NULL, KMSG_DEV = ("c", 1, 3), ("c", 1, 11)


@pytest.fixture(scope="module")
def root(require_root) -> Iterator[Path]:
    why = ds.unavailable()
    if why:
        pytest.skip(why)
    r = ds.cgroup2_root()
    assert r is not None
    sc = r / "cgroup.subtree_control"
    before = set(sc.read_text().split())
    yield r
    ds.remove_prefix()
    if r != cgroups.fs.CGROUP_ROOT:
        # Hybrid host: undo the controllers our V2Managers delegated at the side mount.
        for ctrl in set(sc.read_text().split()) - before:
            with contextlib.suppress(cgroups.CgroupError):
                cgroups.fs.write(sc, f"-{ctrl}")


@contextlib.contextmanager
def manager(root: Path, name: str, devices: list[dict]) -> Iterator[cgroups.V2Manager]:
    m = cgroups.new_manager(f"/{ds.PREFIX}/{name}-{uuid.uuid4().hex[:8]}",
                            Resources.from_oci({"devices": devices}), version="v2", root=root)
    try:
        m.create()
        yield m
    finally:
        if m.exists():
            with contextlib.suppress(Exception):
                m.kill_all()
            m.destroy()


def opens(nodes: dict, devs_access: list[tuple[tuple[str, int, int], str]]) -> list:
    return [("open", nodes[dev], dev[0], dev[1], dev[2], ds.ACCESS_FLAGS[acc])
            for dev, acc in devs_access]


def test_docker_defaults_enforced(root, tmp_path):
    nodes = ds.make_nodes(tmp_path, [NULL, KMSG_DEV, BLK, CHR])
    with manager(root, "defaults", DENY_ALL) as m:
        ids = devices_bpf.attached(m.dir)
        assert len(ids) == 1
        fd = devices_bpf.prog_fd_by_id(ids[0])
        try:
            assert devices_bpf.prog_info(fd) == (ids[0], devices_bpf.PROG_NAME)
        finally:
            os.close(fd)
        calls = opens(nodes, [(NULL, "rw"), (KMSG_DEV, "r"), (BLK, "r"), (BLK, "w"),
                              (CHR, "rw")])
        calls += [("open", "/dev/null", "c", 1, 3, os.O_RDWR),
                  ("mknod", str(tmp_path / "m-b"), "b", 240, 1, 0),   # b *:* m is allowed
                  ("mknod", str(tmp_path / "m-c"), "c", 240, 1, 0)]
        got = ds.probe(m.dir, calls)
        assert got[0] == "ok" and got[5] == "ok", got
        assert [ds.denied(x) for x in got[1:5]] == [True] * 4, got
        assert got[6:] == ["ok", "ok"], got
        assert not m.warnings


def test_update_replaces_the_program(root, tmp_path):
    nodes = ds.make_nodes(tmp_path, [KMSG_DEV])
    with manager(root, "update", DENY_ALL) as m:
        (old,) = devices_bpf.attached(m.dir)
        assert ds.denied(ds.probe(m.dir, opens(nodes, [(KMSG_DEV, "r")]))[0])
        m.update(Resources.from_oci({"devices": DENY_ALL + [KMSG]}))
        (new,) = devices_bpf.attached(m.dir)
        assert new != old and ds.wait_released(old), "the old program is detached and freed"
        assert ds.probe(m.dir, opens(nodes, [(KMSG_DEV, "r"), (KMSG_DEV, "w")])) == [
            "ok", "EPERM"]
        m.update(Resources(pids_limit=None))  # an update without devices keeps the filter
        assert devices_bpf.attached(m.dir) == [new]


def test_destroy_releases_the_program(root):
    with manager(root, "destroy", DENY_ALL) as m:
        (prog,) = devices_bpf.attached(m.dir)
        m.destroy()
        assert not m.exists()
    assert ds.wait_released(prog), "a removed cgroup must not keep its device program"


def test_privileged_allows_every_device(root, tmp_path):
    nodes = ds.make_nodes(tmp_path, [BLK, KMSG_DEV])
    with manager(root, "priv", [{"allow": True, "access": "rwm"}]) as m:
        assert len(devices_bpf.attached(m.dir)) == 1
        got = ds.probe(m.dir, opens(nodes, [(BLK, "r"), (KMSG_DEV, "r")]))
        assert not any(ds.denied(x) for x in got), got


def test_no_programs_without_device_rules(root):
    with manager(root, "nodev", []) as m:
        assert devices_bpf.attached(m.dir) == []


def test_update_has_no_deny_window(root, tmp_path):
    """While updates swap programs, /dev/null (allowed by both) is never refused."""
    nodes = ds.make_nodes(tmp_path, [NULL])
    loop = ("import os, sys, time\nsys.stdin.read(1)\nn = bad = 0\n"
            "t = time.monotonic() + 1.5\n"
            "while time.monotonic() < t:\n"
            "    n += 1\n"
            "    try:\n"
            f"        os.close(os.open({nodes[NULL]!r}, os.O_RDWR))\n"
            "    except PermissionError:\n"
            "        bad += 1\n"
            "print(n, bad)\n")
    with manager(root, "window", DENY_ALL) as m:
        proc = subprocess.Popen([sys.executable, "-c", loop], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            m.apply(proc.pid)
            assert proc.stdin is not None
            proc.stdin.write("g")
            proc.stdin.close()
            proc.stdin = None
            i, t_end = 0, time.monotonic() + 1.2
            while time.monotonic() < t_end or i % 2 == 1:
                m.update(Resources.from_oci({"devices": DENY_ALL + ([KMSG] if i % 2 == 0
                                                                    else [])}))
                i += 1
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        n, bad = map(int, out.split())
        assert i > 2 and n > 0 and bad == 0, f"{bad} of {n} opens denied during {i} updates"
        assert len(devices_bpf.attached(m.dir)) == 1


def test_raw_apply_on_a_bare_cgroup_and_detach(root, tmp_path):
    """devices_bpf alone (no Manager): a second apply replaces, detach_all leaves none."""
    nodes = ds.make_nodes(tmp_path, [NULL, CHR])
    rules = list(Resources.from_oci({"devices": DENY_ALL}).devices + DEFAULT_ALLOWED_DEVICES)
    with ds.scratch_dir("raw") as d:
        first = devices_bpf.apply(d, rules)
        second = devices_bpf.apply(d, rules)
        assert devices_bpf.attached(d) == [second] and ds.wait_released(first)
        got = ds.probe(d, opens(nodes, [(NULL, "rw"), (CHR, "r")]))
        assert got[0] == "ok" and ds.denied(got[1]), got
        devices_bpf.detach_all(d)
        assert devices_bpf.attached(d) == []
        got = ds.probe(d, opens(nodes, [(CHR, "r")]))
        assert not ds.denied(got[0]), got


def test_load_error_carries_the_verifier_log(root):
    # exit without setting r0: the verifier refuses it and says why
    with pytest.raises(devices_bpf.BpfError) as ei:
        devices_bpf.load(devices_bpf.assemble([(0x95, 0, 0, 0, 0)]))
    msg = str(ei.value)
    assert "BPF_PROG_LOAD" in msg and "verifier log" in msg and "R0" in msg, msg


def test_skiff_runc_container_gets_the_default_device_rules(require_root, busybox_image,
                                                            tmp_path):
    """End to end through `skiff-runc run` on this host's cgroup version (v1 here, v2 in the
    VM): with CAP_MKNOD (Docker's default caps) a container can make any node, but opens
    only the default devices."""
    work = tempfile.mkdtemp(prefix=f"{ds.PREFIX}-rootfs-", dir="/var/tmp")
    state = f"/run/{ds.PREFIX}-{uuid.uuid4().hex[:8]}"
    cid = f"{ds.PREFIX}-{uuid.uuid4().hex[:10]}"
    try:
        os.chmod(work, 0o755)
        subprocess.run(["cp", "-a", str(busybox_image / "rootfs"), work], check=True)
        cfg = default_spec()
        cfg["root"]["path"] = os.path.join(work, "rootfs")
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["sh", "-c", (
            "mknod /dev/b b 240 0 && mknod /dev/k c 1 11 && echo made;"
            "head -c1 /dev/b; cat /dev/k; echo x > /dev/null && echo null-ok")]
        cfg["linux"]["cgroupsPath"] = f"/{ds.PREFIX}/{cid}"
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        r = subprocess.run([sys.executable, "-m", "engine.libcontainer.cli", "--root", state,
                            "run", "-b", str(tmp_path), cid], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["made", "null-ok"], r
        assert r.stderr.count("Operation not permitted") == 2, r.stderr
    finally:
        subprocess.run([sys.executable, "-m", "engine.libcontainer.cli", "--root", state,
                        "delete", "--force", cid], capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        for d in glob.glob(f"/sys/fs/cgroup/*/{ds.PREFIX}") + glob.glob(
                f"/sys/fs/cgroup/{ds.PREFIX}"):
            with contextlib.suppress(OSError):
                os.rmdir(d)
    assert not glob.glob(f"/sys/fs/cgroup/*/{ds.PREFIX}/{cid}") + glob.glob(
        f"/sys/fs/cgroup/{ds.PREFIX}/{cid}")
