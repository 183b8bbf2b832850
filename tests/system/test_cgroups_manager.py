"""The cgroup Manager against this machine's real kernel (root): read-back, enforcement,
freezer, update, removal. Every cgroup is under `skt2` and removed in a finalizer."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import CgroupError, Resources, devices_bpf, model
from tests.property.cgsupport import child_in, leftovers, remove_prefix, scratch

pytestmark = pytest.mark.root


@pytest.fixture(scope="module", autouse=True)
def _root_and_cleanup(require_root):
    yield
    remove_prefix()


@pytest.fixture(scope="module")
def version() -> str:
    return cgroups.detect()


def file(m, ctrl: str, name: str) -> Path:
    if m.version == "v2":
        return m.dir / name
    return m.paths[ctrl] / name


def rd(m, ctrl: str, name: str) -> str:
    return file(m, ctrl, name).read_text().strip()


def test_limits_read_back(version):
    r = Resources.from_oci(
        {
            "memory": {"limit": 10000001, "reservation": 5000001},
            "cpu": {"shares": 512, "quota": 12345, "period": 50000, "cpus": "0"},
            "pids": {"limit": 77},
        }
    )
    with scratch("readback", r) as m:
        if version == "v1":
            assert rd(m, "memory", "memory.limit_in_bytes") == str(
                model.memory_readback_v1(10000001)) == "9998336"
            assert rd(m, "memory", "memory.soft_limit_in_bytes") == str(
                model.memory_readback_v1(5000001))
            assert rd(m, "cpu", "cpu.shares") == "512"
            assert rd(m, "cpu", "cpu.cfs_quota_us") == "12345"
            assert rd(m, "cpu", "cpu.cfs_period_us") == "50000"
        else:
            assert rd(m, "memory", "memory.max") == model.memory_readback_v2(10000001)
            assert rd(m, "cpu", "cpu.weight") == str(model.shares_to_weight(512))
            assert rd(m, "cpu", "cpu.max") == "12345 50000"
        assert rd(m, "pids", "pids.max") == "77"
        assert rd(m, "cpuset", "cpuset.cpus") == "0"


def test_unlimited_read_back(version):
    with scratch("unlim", Resources(memory_limit=-1, pids_limit=-1, cpu_quota=-1)) as m:
        if version == "v1":
            assert rd(m, "memory", "memory.limit_in_bytes") == str(model.V1_MEMORY_UNLIMITED)
            assert rd(m, "cpu", "cpu.cfs_quota_us") == "-1"
        else:
            assert rd(m, "memory", "memory.max") == "max"
        assert rd(m, "pids", "pids.max") == "max"


def test_memory_enforced_oom_kill():
    limit = 32 << 20
    with scratch("oom", Resources(memory_limit=limit, memory_swap=limit)) as m:
        assert m.oom_kill_count() == 0
        hog = "blocks = []\nwhile True:\n    blocks.append(b'x' * (1 << 20))\n"
        with child_in(m, hog) as c:
            c.go()
            rc, _, _ = c.wait(60)
        assert rc == -9, "the allocating process must be SIGKILLed by the OOM killer"
        assert m.oom_kill_count() >= 1
        st = m.stats()
        assert st["memory"]["oom_kill"] >= 1
        assert st["memory"]["max_usage"] <= model.memory_readback_v1(limit) or m.version == "v2"


def test_pids_enforced():
    code = (
        "import os, time\n"
        "kids, err = [], None\n"
        "for _ in range(20):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as e:\n"
        "        err = e.errno\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    kids.append(pid)\n"
        "print(len(kids), err, flush=True)\n"
        "for k in kids:\n"
        "    os.kill(k, 9)\n"
        "    os.waitpid(k, 0)\n"
    )
    with scratch("pids", Resources(pids_limit=4)) as m:
        with child_in(m, code) as c:
            c.go()
            rc, out, err = c.wait(30)
        assert rc == 0, err
        n, e = out.split()
        assert int(n) == 3  # the parent plus three children = pids.max
        assert int(e) == errno.EAGAIN
        events = m.dirs()[0] if m.version == "v2" else m.paths["pids"]
        assert cgroups.fs.read_keyed(events / "pids.events").get("max", 0) >= 1


def test_cpu_quota_throttles():
    # 10% of one CPU; burning 0.05 s of CPU time (not wall time: the host may be loaded)
    # takes >= 0.5 s of wall time and must be throttled on the way.
    with scratch("cpu", Resources(cpu_quota=10000, cpu_period=100000)) as m:
        spin = ("import time\nw = time.monotonic()\nt = time.process_time() + 0.05\n"
                "while time.process_time() < t:\n    pass\nprint(time.monotonic() - w)\n")
        with child_in(m, spin) as c:
            c.go()
            rc, out, err = c.wait(60)
        assert rc == 0, err
        st = m.stats()["cpu"]
        assert st["nr_throttled"] > 0 and st["throttled_ns"] > 0
        assert float(out) >= 0.3, "50 ms of CPU at 10% cannot finish in under ~0.4 s"


def test_freeze_thaw():
    with scratch("freeze", Resources()) as m:
        spin = "while True:\n    pass\n"
        with child_in(m, spin) as c:
            c.go()
            time.sleep(0.1)
            m.freeze()
            assert m.freezer_state() == "frozen"
            u1 = m.stats()["cpu"]["usage_ns"]
            time.sleep(0.2)
            u2 = m.stats()["cpu"]["usage_ns"]
            assert u2 - u1 < 20_000_000, "a frozen cgroup must not run"
            m.thaw()
            assert m.freezer_state() == "thawed"
            # It runs again (polling: the shared host may be loaded).
            deadline = time.monotonic() + 10
            while m.stats()["cpu"]["usage_ns"] - u2 < 20_000_000:
                assert time.monotonic() < deadline, "the thawed process does not run"
                time.sleep(0.02)
            assert m.pids() == [c.pid]


def test_update_below_usage(version):
    hold = "b = b'x' * (48 << 20)\nprint('ok', flush=True)\nimport time\ntime.sleep(60)\n"
    with scratch("update", Resources(memory_limit=256 << 20)) as m:
        with child_in(m, hold) as c:
            c.go()
            assert c.proc.stdout is not None
            assert c.proc.stdout.readline().strip() == "ok"
            m.update(Resources(memory_limit=128 << 20))  # above usage: fine
            if version == "v1":
                with pytest.raises(CgroupError) as ei:
                    m.update(Resources(memory_limit=8 << 20))
                assert ei.value.errno_ == errno.EBUSY
                assert "cannot reclaim" in str(ei.value)
                # The limit was left as it was.
                assert rd(m, "memory", "memory.limit_in_bytes") == str(128 << 20)
                assert c.proc.poll() is None
            else:
                # v2 reclaims, then OOM-kills (swap capped too, so nothing can escape)
                m.update(Resources(memory_limit=8 << 20, memory_swap=8 << 20))
                rc, _, _ = c.wait(30)
                assert rc == -9 and m.oom_kill_count() >= 1


def test_devices_rules(version):
    r = Resources.from_oci({"devices": [{"allow": False, "access": "rwm"}]})
    with scratch("dev", r) as m:
        if version == "v1":
            lines = rd(m, "devices", "devices.list").splitlines()
            assert lines[:2] == ["c *:* m", "b *:* m"]
            assert "c 1:3 rwm" in lines and "c 136:* rwm" in lines
        else:  # one eBPF device program (devices_bpf) on the cgroup
            assert len(devices_bpf.attached(m.dir)) == 1
        code = "open('/dev/null', 'w').write('x')\nopen('/dev/full', 'r')\n"
        with child_in(m, code + "open('/dev/kmsg', 'r')\n") as c:
            c.go()
            rc, _, err = c.wait(30)
        assert rc == 1 and "PermissionError" in err and "/dev/kmsg" in err


def test_devices_without_a_leading_deny_all_are_default_deny(version):
    """A list that does not start with an "a" rule means default-deny on both versions (as in
    runc): /dev/kmsg is not in Docker's defaults, so only the explicit allow opens it."""
    kmsg = {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}
    with scratch("devdef", Resources.from_oci({"devices": [kmsg]})) as m:
        if version == "v1":
            assert "a *:* rwm" not in rd(m, "devices", "devices.list").splitlines()
        code = ("open('/dev/kmsg', 'r')\nopen('/dev/full', 'r')\nprint('reads ok', flush=True)\n"
                "open('/dev/kmsg', 'w')\n")
        with child_in(m, code) as c:
            c.go()
            rc, out, err = c.wait(30)
        assert rc == 1 and "reads ok" in out and "PermissionError" in err, err


def test_destroy_leaves_nothing_and_is_idempotent():
    m = cgroups.new_manager("/skt2/destroy-me", Resources(pids_limit=10))
    try:
        m.create()
        assert m.exists() and all(d.is_dir() for d in m.dirs())
        nested = m.dirs()[0] / "nested"
        nested.mkdir()  # a child cgroup (as a container's own cgroup namespace might make)
    finally:
        m.destroy()
    assert not m.exists()
    assert not any(d.exists() for d in m.dirs())
    m.destroy()


def test_failed_create_leaves_nothing():
    # CPU 999 is not in any parent's cpuset: refused before anything exists.
    m = cgroups.new_manager("/skt2/bad-cpuset", Resources.from_oci({"cpu": {"cpus": "0,999"}}))
    with pytest.raises(cgroups.resources.ConfigError) as ei:
        m.create()
    assert "999" in str(ei.value)
    assert not m.exists()


def test_destroy_retries_ebusy_then_reports():
    with scratch("busy", Resources()) as m:
        with child_in(m, "import time\ntime.sleep(60)\n") as c:
            c.go()
            t0 = time.monotonic()
            with pytest.raises(CgroupError, match="still in it"):
                cgroups.fs.rmdir_tree(m.dirs()[0], timeout=0.2)
            assert time.monotonic() - t0 < 2
            os.kill(c.pid, 9)
            c.proc.wait()
        m.destroy()  # the exited task is released: removal succeeds
        assert not m.exists()


def test_no_leftovers():
    assert leftovers() == []


def _whole_disk() -> tuple[int, int] | None:
    base = Path("/sys/dev/block")
    for d in sorted(base.iterdir()) if base.exists() else []:
        if not (d / "partition").exists() and not d.resolve().name.startswith(("loop", "zram")):
            major, minor = d.name.split(":")
            return int(major), int(minor)
    return None


def test_blkio_throttle_read_back(version):
    disk = _whole_disk()
    if disk is None:
        pytest.skip("no whole disk to throttle")
    major, minor = disk
    r = Resources.from_oci({"blockIO": {"throttleReadBpsDevice": [
        {"major": major, "minor": minor, "rate": 1 << 20}]}})
    with scratch("throttle", r) as m:
        if version == "v1":
            got = rd(m, "blkio", "blkio.throttle.read_bps_device")
            assert got == f"{major}:{minor} {1 << 20}"
            m.update(Resources.from_oci({"blockIO": {"throttleReadBpsDevice": [
                {"major": major, "minor": minor, "rate": 0}]}}))
            assert rd(m, "blkio", "blkio.throttle.read_bps_device") == ""  # 0 removes it
        else:
            assert f"{major}:{minor} rbps={1 << 20}" in rd(m, "io", "io.max")


def test_kill_all_reaches_nested_cgroups():
    with scratch("killall", Resources()) as m:
        with child_in(m, "import time\ntime.sleep(60)\n") as a, \
                child_in(m, "import time\ntime.sleep(60)\n") as b:
            a.go()
            b.go()
            # Move b into a child cgroup in every hierarchy (as a nested runtime would).
            for d in m.dirs():
                (d / "sub").mkdir()
                for key in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset starts empty
                    if (d / "sub" / key).exists() and not cgroups.fs.read(d / "sub" / key):
                        cgroups.fs.write(d / "sub" / key, cgroups.fs.read(d / key))
                cgroups.fs.write(d / "sub" / "cgroup.procs", str(b.pid))
            assert sorted(m.all_pids()) == sorted([a.pid, b.pid])
            assert m.pids() == [a.pid]
            m.kill_all()
            assert a.wait(10)[0] == -9 and b.wait(10)[0] == -9
        m.destroy()
        assert not m.exists()


def test_detect_matches_the_filesystem(version):
    import subprocess

    fstype = subprocess.run(["stat", "-f", "-c", "%T", "/sys/fs/cgroup"], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert version == ("v2" if fstype == "cgroup2fs" else "v1"), fstype


def test_devices_update_has_no_deny_window(version):
    base = [{"allow": False, "access": "rwm"}]
    kmsg = {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}
    with scratch("devupd", Resources.from_oci({"devices": base})) as m:
        loop = ("import time\nn = bad = 0\nt = time.monotonic() + 1.5\n"
                "while time.monotonic() < t:\n"
                "    n += 1\n"
                "    try:\n"
                "        open('/dev/null', 'rb').close()\n"
                "    except PermissionError:\n"
                "        bad += 1\n"
                "print(n, bad)\n")
        with child_in(m, loop) as c:
            c.go()
            # Update for as long as the loop runs (a replay of deny-all + allows would deny
            # ~45% of the opens here).
            i, t_end = 0, time.monotonic() + 1.2
            while time.monotonic() < t_end or i % 2 == 1:
                m.update(Resources.from_oci({"devices": base + ([kmsg] if i % 2 == 0 else [])}))
                i += 1
            rc, out, err = c.wait(30)
        assert rc == 0, err
        n, bad = map(int, out.split())
        assert n > 0 and bad == 0, f"{bad} of {n} opens of /dev/null were denied during updates"
        if version == "v1":
            lines = rd(m, "devices", "devices.list").splitlines()
            assert "c 1:11 r" not in lines and "c 1:3 rwm" in lines  # the last update (odd i)
        else:  # v2: the updates replaced the program, none piled up
            assert len(devices_bpf.attached(m.dir)) == 1
        with child_in(m, "open('/dev/kmsg', 'r')\n") as c:  # the last update (odd i)
            c.go()
            rc, _, err = c.wait(30)
        assert rc == 1 and "PermissionError" in err
