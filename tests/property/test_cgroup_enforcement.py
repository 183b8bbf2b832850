"""Enforcement, sampled: the kernel does what the limits say, and Skiff reports it.

These start real processes (a few hundred ms each), so each property draws a handful of
examples in the ci profile (many more in soak): memory beyond the limit is OOM-killed (SIGKILL,
137 for docker) and counted; forks beyond pids.max fail with EAGAIN; a busy loop under a cpu
quota is throttled (cpu.stat); an update below current usage is refused on v1 (EBUSY) and
reclaims/OOM-kills on v2.
"""

from __future__ import annotations

import errno
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import CgroupError, Resources, model
from tests.property.cgsupport import child_in, enforcement_examples, scratch

pytestmark = pytest.mark.root

MiB = 1 << 20
N = enforcement_examples()


@pytest.fixture(scope="module")
def report(kernel_report):
    return kernel_report


HOG = "blocks = []\nwhile True:\n    blocks.append(b'x' * (1 << 20))\n"


@settings(max_examples=N)
@given(st.integers(16 * MiB, 96 * MiB).map(lambda v: v + 123))  # deliberately not page-aligned
def test_memory_oom_kill(report, limit):
    t0 = time.monotonic()
    # memory+swap = memory: no swapping around the limit, on a host with swap too.
    with scratch("oom", Resources(memory_limit=limit, memory_swap=limit)) as m:
        before = m.oom_kill_count()
        with child_in(m, HOG) as c:
            c.go()
            rc, _, _ = c.wait(60)
        assert rc == -9, f"expected SIGKILL (docker exit 137), got {rc}"
        assert m.oom_kill_count() == before + 1
        st_ = m.stats()["memory"]
        rounded = model.memory_pages(limit) * model.PAGE_SIZE
        if m.version == "v1":
            # (failcnt counts on memory.memsw.failcnt when memory+swap is the binding limit)
            assert st_["max_usage"] <= rounded
        report.record("enforce.memory", limit, "enforced",
                      f"allocating past the limit: SIGKILL (137), oom_kill +1, peak <= "
                      f"{'limit rounded to a page' if m.version == 'v1' else 'limit'}",
                      st_["max_usage"], time.monotonic() - t0)


FORKER = (
    "import os, time\n"
    "kids, err = [], None\n"
    "for _ in range({n}):\n"
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


@settings(max_examples=N)
@given(st.integers(1, 12))
def test_pids_fork_limit(report, limit):
    t0 = time.monotonic()
    with scratch("pids", Resources(pids_limit=limit)) as m:
        with child_in(m, FORKER.format(n=limit + 3)) as c:
            c.go()
            rc, out, err = c.wait(30)
        if limit == 1:
            # Python itself may need no thread; the only process is the parent: no fork fits.
            pass
        assert rc == 0, err
        n, e = out.split()
        assert int(n) == limit - 1, f"pids.max={limit}: {n} forks succeeded"
        assert int(e) == errno.EAGAIN
        report.record("enforce.pids", limit, "enforced",
                      "fork past pids.max fails with EAGAIN; pids.events max counts it",
                      int(n), time.monotonic() - t0)


# Burn a fixed amount of CPU time (not wall time: the machine is shared and may be loaded,
# and a loop that gets less than its quota is never throttled). Prints the wall time taken.
SPIN = (
    "import time\n"
    "w = time.monotonic()\n"
    "t = time.process_time() + {cpu}\n"
    "while time.process_time() < t:\n"
    "    pass\n"
    "print(time.monotonic() - w, flush=True)\n"
)


@settings(max_examples=N)
@given(st.integers(10, 20), st.sampled_from([10000, 50000, 100000]))
def test_cpu_quota_throttles(report, percent, period):
    # 10..20% of a CPU: a busy loop always exceeds it, and 50 ms of CPU takes <= 0.5 s.
    quota = max(period * percent // 100, model.CFS_QUOTA_MIN_US)
    t0 = time.monotonic()
    with scratch("cpu", Resources(cpu_quota=quota, cpu_period=period)) as m:
        with child_in(m, SPIN.format(cpu=0.05)) as c:
            w0 = time.monotonic()
            c.go()
            rc, out, err = c.wait(60)
            wall = time.monotonic() - w0  # all the cgroup's CPU use falls in this window
        assert rc == 0, err
        assert float(out.strip()) <= wall
        cpu = m.stats()["cpu"]
        assert cpu["nr_throttled"] > 0 and cpu["throttled_ns"] > 0, cpu
        # Bandwidth: CPU used <= share x wall + one period's quota (+ accounting slack).
        share = quota / period
        assert cpu["usage_ns"] <= (share * wall + quota / 1e6 + 0.02) * 1e9, (cpu, wall, share)
        report.record("enforce.cpu", {"quota": quota, "period": period}, "enforced",
                      "busy loop throttled: cpu.stat nr_throttled > 0, usage <= quota/period",
                      cpu["nr_throttled"], time.monotonic() - t0)


@settings(max_examples=max(1, N - 1))
@given(st.integers(24, 40))
def test_update_below_usage(report, held_mib):
    """docker update --memory below what the container uses: v1 refuses (EBUSY, the limit is
    unchanged, the process lives); v2 reclaims and then OOM-kills."""
    t0 = time.monotonic()
    code = f"b = b'x' * ({held_mib} << 20)\nprint('ok', flush=True)\nimport time\ntime.sleep(60)\n"
    with scratch("upd", Resources(memory_limit=256 * MiB)) as m:
        with child_in(m, code) as c:
            c.go()
            assert c.proc.stdout is not None and c.proc.stdout.readline().strip() == "ok"
            low = 4 * MiB
            if m.version == "v1":
                with pytest.raises(CgroupError) as ei:
                    m.update(Resources(memory_limit=low))
                assert ei.value.errno_ == errno.EBUSY and "cannot reclaim" in str(ei.value)
                lim = cgroups.fs.read(m.paths["memory"] / "memory.limit_in_bytes")  # type: ignore
                assert lim == str(256 * MiB) and c.proc.poll() is None
                what = "v1: EBUSY, limit unchanged, process keeps running"
            else:
                m.update(Resources(memory_limit=low, memory_swap=low))  # no swap to escape to
                rc, _, _ = c.wait(30)
                assert rc == -9 and m.oom_kill_count() >= 1
                what = "v2: reclaim then OOM kill"
        report.record("enforce.update-below-usage", held_mib, "enforced", what, None,
                      time.monotonic() - t0)
