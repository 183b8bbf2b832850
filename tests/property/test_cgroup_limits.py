"""Hypothesis fuzzes cgroup limits through Skiff's cgroup Manager against the real kernel.

For every generated value:
- Skiff's validator (Resources.from_oci + Manager.validate) accepts or refuses it, and
- the kernel is probed directly with the same raw value in a scratch cgroup.
Then: an accepted value must be written by the Manager without a kernel error and read back
exactly as `engine.libcontainer.cgroups.model` predicts; a refused value must be refused by the
kernel too, unless the refusal is one of the deliberate, documented policies below (each says
why, and what docker does). Anything else is a disagreement and fails.

Everything is created under the `skt2` prefix and removed after each example.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine import units
from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import CgroupError, Resources, model
from engine.libcontainer.errors import ConfigError
from tests.property.cgsupport import scratch, unique

pytestmark = pytest.mark.root

VERSION = cgroups.detect()
PAGE = model.PAGE_SIZE
INT64_MAX = model.INT64_MAX


# ---------------------------------------------------------------- the raw kernel probe


@dataclass
class Observed:
    ok: bool
    readback: str | None
    err: int | None

    def label(self) -> str:
        if self.ok:
            return "accepted"
        return f"refused ({errno.errorcode.get(self.err or 0, self.err)})"


class Probe:
    """Raw writes to a scratch cgroup's files, each restored to its first value afterwards."""

    def __init__(self, m: cgroups.Manager) -> None:
        self.m = m
        self.original: dict[Path, str] = {}

    def file(self, ctrl: str, v1: str, v2: str) -> Path:
        if VERSION == "v2":
            return self.m.dir / v2  # type: ignore[attr-defined]
        return self.m.paths[ctrl] / v1  # type: ignore[attr-defined]

    def write(self, path: Path, value: str) -> Observed:
        if path not in self.original:
            self.original[path] = cgroups.fs.read(path)
        try:
            cgroups.fs.write(path, value)
        except CgroupError as e:
            return Observed(False, None, e.errno_)
        rb = cgroups.fs.read(path)
        # An empty original (a fresh v2 cpuset) is restored with "\n": a zero-length write
        # may never reach the kernel's handler.
        cgroups.fs.write(path, self.original[path] or "\n")
        return Observed(True, rb, None)


@pytest.fixture(scope="module")
def probe(require_root):
    with scratch("probe", Resources()) as m:
        yield Probe(m)


@pytest.fixture(scope="module")
def report(kernel_report):
    return kernel_report


# ---------------------------------------------------------------- Skiff's side


def skiff(oci: dict, name: str) -> tuple[cgroups.Manager | None, ConfigError | None]:
    """Skiff's decision before touching the kernel: the OCI validator, then host checks."""
    try:
        res = Resources.from_oci(oci)
        m = cgroups.new_manager(unique(name), res)
        m.validate(res)
    except ConfigError as e:
        assert e.field.startswith("linux.resources"), e
        assert str(e.value) in str(e) or repr(e.value) in str(e), f"message lacks value: {e}"
        return None, e
    return m, None


def apply_and_read(m: cgroups.Manager, files: list[Path], what: str) -> list[str]:
    """Create the cgroup with the resources, read the files, destroy it."""
    try:
        m.create()
    except CgroupError as e:
        pytest.fail(f"Skiff accepted {what} but the kernel refused it: {e}")
    try:
        return [cgroups.fs.read(f) for f in files]
    finally:
        m.destroy()


def leaf(m: cgroups.Manager, ctrl: str, v1: str, v2: str) -> Path:
    if m.version == "v2":
        return m.dir / v2  # type: ignore[attr-defined]
    return m.paths[ctrl] / v1  # type: ignore[attr-defined]


def judge(report, family: str, shown: object, input_class: str, rejected: ConfigError | None,
          kernel: Observed, policy: Callable[[], str | None], t0: float,
          readback: object = None) -> None:
    """Record the example; fail on a disagreement between Skiff and the kernel."""
    seconds = time.monotonic() - t0
    if rejected is None:
        report.record(family, shown, "accepted", f"{input_class}: kernel {kernel.label()}",
                      readback, seconds)
        return
    if not kernel.ok:
        report.record(family, shown, "both-rejected",
                      f"{input_class}: kernel {kernel.label()}, Skiff refuses", None, seconds)
        return
    why = policy()
    if why is None:
        pytest.fail(
            f"{family}: Skiff refused {shown!r} ({rejected}) but the kernel accepts it "
            f"(reads back {kernel.readback!r}) and no documented policy covers it"
        )
    report.record(family, shown, "policy-rejected",
                  f"{input_class}: kernel accepts, Skiff refuses: {why}", kernel.readback,
                  seconds)
    report.note(family, f"policy: {why}")


def _short(rb: str | None) -> str:
    if rb is None:
        return "-"
    if rb == str(model.V1_MEMORY_UNLIMITED):
        return "unlimited"
    return rb if len(rb) < 24 else rb[:21] + "..."


# ---------------------------------------------------------------- memory

MEMORY = st.one_of(
    st.sampled_from([0, -1, 1, PAGE - 1, PAGE, PAGE + 1, units.DOCKER_MIN_MEMORY, INT64_MAX]),
    st.integers(-(2**63), -2),
    st.integers(1, PAGE - 1),
    st.builds(lambda p, d: p * PAGE + d, st.integers(1, 1 << 24), st.sampled_from([-1, 0, 1])),
    st.integers(units.DOCKER_MIN_MEMORY - 2 * PAGE, units.DOCKER_MIN_MEMORY + 2 * PAGE),
    st.integers(1 << 40, INT64_MAX),
    st.integers(INT64_MAX - 2 * PAGE, INT64_MAX + 2 * PAGE),
    st.integers(2**64 - 2, 2**64 + 2),
)
DOCKER_MEMORY = st.builds(
    lambda n, u: f"{n}{u}",
    st.integers(0, 8192),
    st.sampled_from(["", "b", "k", "K", "kb", "KiB", "m", "M", "mb", "MiB", "g", "G", "t", "x"]),
)


def memory_class(v: int) -> str:
    if v == -1:
        return "-1 (unlimited)"
    if v == 0:
        return "0"
    if v < -1:
        return "negative"
    if v > INT64_MAX:
        return "beyond int64"
    if v < PAGE:
        return "below one page"
    if v >= model.PAGE_COUNTER_MAX * PAGE:
        return "at/above PAGE_COUNTER_MAX pages"
    return "page multiple" if v % PAGE == 0 else "not a page multiple"


def memory_policy(v: int) -> Callable[[], str | None]:
    def why() -> str | None:
        if 0 < v < PAGE:
            return ("below one page the kernel stores 0 pages and OOM-kills every process; "
                    "docker refuses < 6 MiB")
        if v > INT64_MAX:
            return ("OCI memory values are int64; the kernel's 64-bit parser wraps past 2^64 "
                    "(2^64 reads back 0)")
        return None

    return why


def check_memory(report, probe: Probe, v: int, family: str, key: str = "limit",
                 shown: object = None) -> None:
    t0 = time.monotonic()
    kfile = probe.file("memory", "memory.limit_in_bytes" if key == "limit"
                       else "memory.soft_limit_in_bytes", "memory.max" if key == "limit"
                       else "memory.low")
    kernel = probe.write(kfile, str(v) if not (VERSION == "v2" and v == -1) else "max")
    m, rejected = skiff({"memory": {key: v}}, "mem")
    readback = None
    if m is not None:
        (rb,) = apply_and_read(m, [leaf(m, "memory", kfile.name, kfile.name)], f"memory {v}")
        readback = rb
        if v == 0:  # runc: 0 is "unset": the default stays
            if key == "limit":
                want = "max" if VERSION == "v2" else str(model.V1_MEMORY_UNLIMITED)
            else:
                want = "0" if VERSION == "v2" else str(model.V1_MEMORY_UNLIMITED)
        elif VERSION == "v2":
            want = model.memory_readback_v2(v)
        else:
            want = str(model.memory_readback_v1(v))
        assert rb == want, f"{family} {v}: kernel reads back {rb}, model says {want}"
        if v != 0:
            assert kernel.ok and kernel.readback == rb, (kernel, rb)
    judge(report, family, shown if shown is not None else v, memory_class(v), rejected, kernel,
          memory_policy(v), t0, readback)


@given(MEMORY)
@example(10000001)
@example(units.DOCKER_MIN_MEMORY)
def test_memory_limit(report, probe, v):
    check_memory(report, probe, v, "memory.limit")


@given(DOCKER_MEMORY)
@example("6m")
@example("1g")
@example("4095b")
def test_memory_docker_strings(report, probe, text):
    """docker's `--memory` strings: parsed by engine.units (go-units), then as bytes."""
    try:
        v = units.ram_in_bytes(text)
    except ValueError as e:
        report.record("memory.docker-string", text, "docker-rejected", f"docker refuses: {e}")
        return
    if v < units.DOCKER_MIN_MEMORY and v != 0:
        report.note("memory.docker-string",
                    "dockerd refuses limits below 6 MiB at its own layer; libcontainer only "
                    "refuses what the kernel cannot run (below one page)")
    check_memory(report, probe, v, "memory.docker-string", shown=text)


@given(st.one_of(st.integers(0, 1 << 34), st.sampled_from([-1, 1, PAGE - 1, PAGE + 1])))
def test_memory_reservation(report, probe, v):
    check_memory(report, probe, v, "memory.reservation", key="reservation")


# ---------------------------------------------------------------- memory + swap (an update
# sequence on one cgroup, so the v1 write order matters)

MEMSW_STEP = st.tuples(
    st.one_of(st.just(-1), st.integers(1, 1 << 12).map(lambda p: p * PAGE * 16)),
    st.one_of(st.none(), st.just(-1), st.integers(0, 1 << 30)),
)


@given(st.lists(MEMSW_STEP, min_size=1, max_size=6))
def test_memory_swap_sequence(report, steps):
    """Apply (memory, memory+swap) pairs in sequence with update(): raising and lowering both
    limits must never hit the kernel's memsw >= memory check (v1) and must read back as the
    model says (v2 stores swap only: memory.swap.max = swap - memory)."""
    with scratch("memsw", Resources()) as m:
        for mem, extra in steps:
            t0 = time.monotonic()
            swap = None if extra is None else (-1 if extra == -1 else
                                              (mem if mem > 0 else 0) + extra)
            if swap == 0:
                swap = None  # OCI 0 = unset
            oci: dict = {"memory": {"limit": mem}}
            if swap is not None:
                oci["memory"]["swap"] = swap
            shown = {"limit": mem, "swap": swap}
            try:
                res = Resources.from_oci(oci)
            except ConfigError as e:
                # only the OCI consistency rules may refuse: swap without a memory limit
                assert mem == -1 and swap not in (None, -1), e
                report.record("memory+swap", shown, "skiff-rejected",
                              "swap set with unlimited memory: Skiff refuses (runc too)")
                continue
            memsw_f = m.dirs()[0] / "memory.memsw.limit_in_bytes"
            if m.version == "v1":
                memsw_f = m.paths["memory"] / "memory.memsw.limit_in_bytes"  # type: ignore
            cur_memsw = cgroups.fs.read_int(memsw_f) if memsw_f.exists() else None
            try:
                m.update(res)
            except ConfigError as e:
                # v1 only: raising memory above the current memory+swap without a new swap
                # value is refused before any write (dockerd refuses it too).
                assert m.version == "v1" and swap is None and cur_memsw is not None
                assert model.memory_readback_v1(mem) > cur_memsw, e
                report.record("memory+swap", shown, "skiff-rejected",
                              "v1: memory above the current memory+swap without swap: Skiff "
                              "refuses before writing (kernel would EINVAL; docker refuses)")
                continue
            except CgroupError as e:
                pytest.fail(f"update to {shown} failed after {steps}: {e}")
            if m.version == "v1":
                lim = cgroups.fs.read(m.paths["memory"] / "memory.limit_in_bytes")
                assert lim == str(model.memory_readback_v1(mem))
                memsw_f = m.paths["memory"] / "memory.memsw.limit_in_bytes"
                if memsw_f.exists():
                    want_sw = -1 if swap is None and mem == -1 else swap
                    if want_sw is not None:
                        assert cgroups.fs.read(memsw_f) == str(model.memory_readback_v1(want_sw))
                behaviour = "v1: both limits read back (write order kept memsw >= memory)"
            else:
                assert cgroups.fs.read(m.dir / "memory.max") == model.memory_readback_v2(mem)
                sw = model.swap_v2_value(swap, mem)
                f = m.dir / "memory.swap.max"
                if sw is not None and f.exists():
                    assert cgroups.fs.read(f) == model.memory_readback_v2(sw)
                behaviour = "v2: memory.max and memory.swap.max = swap - memory read back"
            report.record("memory+swap", shown, "accepted", behaviour, None,
                          time.monotonic() - t0)


# ---------------------------------------------------------------- cpu quota / period

QUOTA = st.one_of(
    st.sampled_from([0, -1, -2, 999, 1000, 1001, model.CFS_QUOTA_MAX_US,
                     model.CFS_QUOTA_MAX_US + 1]),
    st.integers(-5, 5),
    st.integers(990, 1010),
    st.integers(999_990, 1_000_010),
    st.integers(1000, 10**7),
    st.integers(1, 2**45),
    st.integers(-(2**40), -2),
)
PERIOD = st.one_of(
    st.none(),
    st.sampled_from([0, 999, 1000, 1001, 100_000, 999_999, 1_000_000, 1_000_001]),
    st.integers(990, 1010),
    st.integers(999_990, 1_000_010),
    st.integers(1, 2 * 10**6),
)


def cpu_probe(probe: Probe, quota: int | None, period: int | None) -> Observed:
    """The raw pair on the kernel: v1 period then quota; v2 one cpu.max write."""
    if VERSION == "v2":
        q = "max" if quota is None else str(quota)
        p = model.CFS_PERIOD_DEFAULT_US if period is None else period
        return probe.write(probe.file("cpu", "", "cpu.max"), f"{q} {p}")
    obs = Observed(True, None, None)
    if period is not None:
        obs = probe.write(probe.file("cpu", "cpu.cfs_period_us", ""), str(period))
        if not obs.ok:
            return obs
    if quota is not None:
        obs = probe.write(probe.file("cpu", "cpu.cfs_quota_us", ""), str(quota))
    return obs


def cpu_class(quota: int | None, period: int | None) -> str:
    def q() -> str:
        if quota is None:
            return "no quota"
        if quota == -1:
            return "quota -1"
        if quota < -1:
            return "quota < -1"
        if quota == 0:
            return "quota 0"
        if quota < model.CFS_QUOTA_MIN_US:
            return "quota < 1000us"
        if quota > model.CFS_QUOTA_MAX_US:
            return "quota > max_cfs_runtime"
        return "quota in range"

    def p() -> str:
        if period is None:
            return "default period"
        if period == 0:
            return "period 0"
        if period < model.CFS_PERIOD_MIN_US:
            return "period < 1ms"
        if period > model.CFS_PERIOD_MAX_US:
            return "period > 1s"
        return "period in range"

    return f"{q()}, {p()}"


def cpu_policy(quota: int | None, period: int | None) -> Callable[[], str | None]:
    def why() -> str | None:
        if quota is not None and quota < -1:
            return ("a negative quota other than -1: v1 takes any negative as unlimited, "
                    "v2's cpu.max refuses it; Skiff refuses on both so a config means the same")
        if quota == 0 or period == 0:
            return None  # 0 is "unset" and never refused
        return None

    return why


def check_cpu(report, probe: Probe, quota: int | None, period: int | None, family: str,
              shown: object = None) -> None:
    t0 = time.monotonic()
    # 0 means unset in OCI (runc): the kernel is probed with what would be written.
    kq = None if quota in (None, 0) else quota
    kp = None if period in (None, 0) else period
    if VERSION == "v2" and kq is not None and kq == -1:
        kq = None  # "max"
    kernel = cpu_probe(probe, kq, kp) if (kq is not None or kp is not None) else Observed(
        True, None, None)
    cpu: dict = {}
    if quota is not None:
        cpu["quota"] = quota
    if period is not None:
        cpu["period"] = period
    m, rejected = skiff({"cpu": cpu}, "cpu")
    readback = None
    if m is not None:
        if m.version == "v2":
            (rb,) = apply_and_read(m, [m.dir / "cpu.max"], f"cpu {cpu}")  # type: ignore
            q = "max" if quota in (None, 0, -1) else str(quota)
            p = str(period) if period not in (None, 0) else str(model.CFS_PERIOD_DEFAULT_US)
            assert rb == f"{q} {p}", (rb, cpu)
            readback = rb
        else:
            rq, rp = apply_and_read(
                m, [m.paths["cpu"] / "cpu.cfs_quota_us", m.paths["cpu"] / "cpu.cfs_period_us"],
                f"cpu {cpu}")  # type: ignore[attr-defined]
            want_q = "-1" if quota in (None, 0) else str(model.cfs_quota_readback_v1(quota))
            want_p = str(period) if period not in (None, 0) else str(
                model.CFS_PERIOD_DEFAULT_US)
            assert (rq, rp) == (want_q, want_p), ((rq, rp), cpu)
            readback = f"{rq} {rp}"
        assert kernel.ok, f"the Manager wrote {cpu} but the raw probe was refused: {kernel}"
    judge(report, family, shown if shown is not None else cpu, cpu_class(quota, period),
          rejected, kernel, cpu_policy(quota, period), t0, readback)


@given(QUOTA, PERIOD)
@example(999, None)
@example(1000, 1000)
@example(1000, 1_000_001)
@example(-2, None)
def test_cpu_quota_period(report, probe, quota, period):
    check_cpu(report, probe, quota, period, "cpu.quota/period")


CPUS = st.one_of(
    st.sampled_from(["0.01", "0.001", "0.5", "1", "1.5", "2", "0", "3/2", "1e-2", "0.0000000001"]),
    st.decimals(min_value=0, max_value=8, places=3).map(str),
    st.fractions(min_value=0, max_value=8, max_denominator=1000).map(str),
)


@given(CPUS)
def test_docker_cpus(report, probe, text):
    """docker --cpus: NanoCPUs -> quota at period 100000 (moby), then through the Manager."""
    try:
        nano = units.nano_cpus(text)
    except ValueError as e:
        report.record("cpu.--cpus", text, "docker-rejected", f"docker refuses: {e}")
        return
    if nano == 0:
        report.record("cpu.--cpus", text, "accepted", "0 CPUs: no limit (docker: unset)")
        return
    quota, period = units.nano_cpus_to_cfs(nano)
    ncpu = os.cpu_count() or 1
    if nano > ncpu * 10**9:
        report.note("cpu.--cpus", "dockerd refuses more CPUs than the host has; the kernel "
                    "does not care (quota > period is fine)")
    if quota < model.CFS_QUOTA_MIN_US:
        # docker: "Range of CPUs is from 0.01 to N.00"; the kernel: quota < 1000us is EINVAL.
        m, rejected = skiff({"cpu": {"quota": quota, "period": period}}, "cpus")
        assert rejected is not None and m is None
    check_cpu(report, probe, quota, period, "cpu.--cpus", shown=text)


# ---------------------------------------------------------------- shares / weight

SHARES = st.one_of(
    st.sampled_from([0, 1, 2, 3, 1023, 1024, 1025, 262143, 262144, 262145]),
    st.integers(2, 262144),
    st.integers(262145, 2**40),
)


@given(SHARES)
def test_cpu_shares(report, probe, shares):
    t0 = time.monotonic()
    if VERSION == "v2":
        w = model.shares_to_weight(shares) if shares else 100
        kernel = probe.write(probe.file("cpu", "", "cpu.weight"), str(w))
    else:
        kernel = probe.write(probe.file("cpu", "cpu.shares", ""), str(shares))
    m, rejected = skiff({"cpu": {"shares": shares}}, "shares")
    readback = None
    if m is not None:
        if m.version == "v2":
            (rb,) = apply_and_read(m, [m.dir / "cpu.weight"], f"shares {shares}")  # type: ignore
            want = str(model.shares_to_weight(shares)) if shares else "100"
        else:
            (rb,) = apply_and_read(m, [m.paths["cpu"] / "cpu.shares"], f"shares {shares}")  # type: ignore
            want = str(shares) if shares else "1024"
        assert rb == want, (rb, want, shares)
        readback = rb

    def why() -> str | None:
        if VERSION == "v1" and kernel.ok and kernel.readback != str(shares):
            return ("outside 2..262144 the v1 kernel clamps silently; runc refuses; dockerd "
                    "clamps with a warning (engine.units.clamp_cpu_shares)")
        if VERSION == "v2" and not (2 <= shares <= 262144):
            return "outside 2..262144 (runc refuses; dockerd clamps with a warning)"
        return None

    cls = ("0 (unset)" if shares == 0 else "below 2" if shares < 2 else
           "above 262144" if shares > 262144 else "in range")
    judge(report, "cpu.shares" if VERSION == "v1" else "cpu.shares->weight", shares, cls,
          rejected, kernel, why, t0, readback)


def test_unified_refused_on_v1(report):
    if VERSION != "v1":
        pytest.skip("cgroup v1 only")
    m = cgroups.new_manager(unique("w"), Resources.from_oci({"unified": {"cpu.weight": "50"}}))
    with pytest.raises(ConfigError, match="cgroup v2"):
        m.validate(m.resources)
    report.record("cpu.weight (unified)", "50", "skiff-rejected",
                  "cgroup v1: unified resources need cgroup v2; Skiff refuses")


@pytest.mark.skipif(VERSION != "v2", reason="cpu.weight is a cgroup v2 file")
@given(st.one_of(st.integers(-3, 3), st.integers(9995, 10005), st.integers(1, 10000),
                 st.integers(10**5, 10**12)))
def test_cpu_weight_unified(report, probe, weight):
    """v2 only: cpu.weight through `unified` — the kernel's 1..10000 range, Skiff passes the
    raw value and turns the kernel's refusal into a ConfigError naming the key."""
    t0 = time.monotonic()
    kernel = probe.write(probe.file("cpu", "", "cpu.weight"), str(weight))
    res = Resources.from_oci({"unified": {"cpu.weight": str(weight)}})
    with scratch("w", Resources()) as m:
        try:
            m.set(res)
            rejected = None
        except ConfigError as e:
            rejected = e
        if rejected is None:
            assert cgroups.fs.read(m.dir / "cpu.weight") == str(weight)  # type: ignore
            assert kernel.ok
        else:
            assert not kernel.ok, f"Skiff refused cpu.weight {weight} the kernel accepts"
    cls = "in 1..10000" if 1 <= weight <= 10000 else "outside 1..10000"
    judge(report, "cpu.weight (unified)", weight, cls, rejected, kernel, lambda: None, t0)


# ---------------------------------------------------------------- cpuset


def host_cpus() -> set[int]:
    if VERSION == "v2":
        root = cgroups.v2.v2_root()
        f = root / "cpuset.cpus.effective"
    else:
        f = cgroups.v1.v1_mounts()["cpuset"] / "cpuset.effective_cpus"
    return model.parse_cpu_list(cgroups.fs.read(f))


try:
    HOST_CPUS = sorted(host_cpus()) or [0]
except (OSError, KeyError, ValueError):  # no cpuset controller, or not root
    HOST_CPUS = [0]

CPUSET = st.one_of(
    # valid lists from the CPUs this host has
    st.sets(st.sampled_from(HOST_CPUS), min_size=1).map(model.format_cpu_list),
    st.sets(st.sampled_from(HOST_CPUS), min_size=1).map(
        lambda s: ",".join(str(c) for c in sorted(s, reverse=True))),
    # CPUs not present
    st.sets(st.integers(0, 300), min_size=1, max_size=5).map(model.format_cpu_list),
    st.sampled_from([f"0-{max(HOST_CPUS) + 1}", str(max(HOST_CPUS) + 1), "0-1023"]),
    # malformed / kernel-only syntax
    st.sampled_from(["0,", ",0", " 0", "0 ", "0-", "-0", "1-0", "0-1:1/2", "+1", "0x1", "00",
                     "0,,1", "a", "0-0", "0 1"]),
    st.text(alphabet="0123456789,-: x", min_size=1, max_size=8),
)


@given(CPUSET)
def test_cpuset_cpus(report, probe, text):
    t0 = time.monotonic()
    kernel = probe.write(probe.file("cpuset", "cpuset.cpus", "cpuset.cpus"), text)
    m, rejected = skiff({"cpu": {"cpus": text}}, "cpuset")
    readback = None
    if m is not None:
        (rb,) = apply_and_read(m, [leaf(m, "cpuset", "cpuset.cpus", "cpuset.cpus")],
                               f"cpus {text!r}")
        assert rb == model.format_cpu_list(model.parse_cpu_list(text)), (rb, text)
        assert kernel.ok and kernel.readback == rb, (kernel, rb)
        readback = rb

    def why() -> str | None:
        try:
            ids = units.parse_uint_list(text)
        except ValueError:
            return ("syntax the kernel's bitmap_parselist takes (stride groups, stray "
                    "separators, spaces) but docker's --cpuset-cpus grammar refuses")
        if not ids <= set(HOST_CPUS):
            # v2 keeps the request and drops absent CPUs from cpuset.cpus.effective; v1
            # refuses. dockerd: "Requested CPUs are not available".
            return ("CPUs the parent does not have: cgroup v2 takes them (they never become "
                    "effective), v1 refuses; Skiff refuses on both, as docker does")
        return None

    try:
        ids = model.parse_cpu_list(text)
        cls = "valid, present" if ids <= set(HOST_CPUS) else "valid, CPUs not present"
    except ValueError:
        cls = "malformed for docker" if _docker_refuses(text) else "docker grammar, Skiff strict"
    judge(report, "cpuset.cpus", text, cls, rejected, kernel, why, t0, readback)


def _docker_refuses(text: str) -> bool:
    try:
        units.parse_uint_list(text)
    except ValueError:
        return True
    return False


# ---------------------------------------------------------------- pids

PIDS = st.one_of(
    st.sampled_from([0, 1, -1, -2, model.PIDS_MAX - 1, model.PIDS_MAX, model.PIDS_MAX + 1]),
    st.integers(-3, 10),
    st.integers(model.PIDS_MAX - 3, model.PIDS_MAX + 3),
    st.integers(11, model.PIDS_MAX),
    st.integers(model.PIDS_MAX, 2**63 - 1),
)


@given(PIDS)
def test_pids_limit(report, probe, limit):
    t0 = time.monotonic()
    kernel = probe.write(probe.file("pids", "pids.max", "pids.max"),
                         "max" if limit == -1 else str(limit))
    m, rejected = skiff({"pids": {"limit": limit}}, "pids")
    readback = None
    if m is not None:
        (rb,) = apply_and_read(m, [leaf(m, "pids", "pids.max", "pids.max")], f"pids {limit}")
        want = "max" if limit in (0, -1) else str(limit)  # 0: unset, the default is max
        assert rb == want, (rb, limit)
        readback = rb
    cls = ("0 (unset)" if limit == 0 else "-1 (max)" if limit == -1 else "negative" if limit < 0
           else ">= PIDS_MAX" if limit >= model.PIDS_MAX else "in range")
    judge(report, "pids.max", limit, cls, rejected, kernel, lambda: None, t0, readback)


# ---------------------------------------------------------------- block io weight


@given(st.one_of(st.integers(-2, 12), st.integers(995, 1005), st.integers(10, 1000),
                 st.integers(1001, 10**6)))
def test_blkio_weight(report, probe, weight):
    """OCI blockIO.weight 10..1000 (0 = unset). The file exists only with a weight-capable
    I/O scheduler (v1 blkio.weight/blkio.bfq.weight, v2 io.weight/io.bfq.weight); without
    one, Skiff refuses with a ConfigError naming the field instead of failing half-way."""
    t0 = time.monotonic()
    m0 = probe.m
    if VERSION == "v2":
        files = [m0.dir / n for n in ("io.bfq.weight", "io.weight")]  # type: ignore
    else:
        files = [m0.paths["blkio"] / n for n in ("blkio.bfq.weight", "blkio.weight")]  # type: ignore
    present = [f for f in files if f.exists()]
    if present:
        raw = str(weight)
        if present[0].name == "io.weight":
            raw = str(model.blkio_weight_to_io_weight(weight)) if 10 <= weight <= 1000 else raw
        kernel = probe.write(present[0], raw)
    else:
        kernel = Observed(False, None, errno.ENOENT)
    m, rejected = skiff({"blockIO": {"weight": weight}}, "blkio")
    readback = None
    if m is not None:
        if weight == 0:
            apply_and_read(m, [], "blkio weight 0 (unset)")
        else:
            assert present, "Skiff accepted a blkio weight on a kernel without the file"
            name = present[0].name
            (rb,) = apply_and_read(m, [m.dirs()[0] / name if m.version == "v2"
                                       else m.paths["blkio"] / name],  # type: ignore
                                   f"blkio weight {weight}")
            want = (model.blkio_weight_to_io_weight(weight) if name == "io.weight"
                    else weight)
            # io.weight / io.bfq.weight read back "default N"; blkio.* just N.
            assert rb.split()[-1] == str(want), (rb, want)
            assert kernel.ok and kernel.readback is not None
            assert kernel.readback.split()[-1] == str(want), (kernel, want)
            readback = rb
    cls = ("0 (unset)" if weight == 0 else "in 10..1000" if 10 <= weight <= 1000
           else "outside 10..1000")
    if not present and rejected is not None and 10 <= weight <= 1000:
        assert "blkio" in str(rejected) or "io weight" in str(rejected), rejected
        report.note("blockIO.weight", "this kernel has no weight-capable I/O scheduler: "
                    "Skiff refuses blockIO.weight with a ConfigError (dockerd discards it "
                    "with a warning)")

    def why() -> str | None:
        if 0 < weight < 10 or weight > 1000:
            return "outside OCI/docker's 10..1000 (docker refuses too)"
        return None

    judge(report, "blockIO.weight", weight, cls, rejected, kernel, why, t0, readback)


# ---------------------------------------------------------------- updates (docker update)

UPDATE_STEP = st.one_of(
    st.tuples(st.just("memory"), st.one_of(st.just(-1), st.integers(1 << 20, 1 << 34))),
    st.tuples(st.just("shares"), st.integers(2, 262144)),
    st.tuples(st.just("quota"), st.one_of(st.just(-1), st.integers(1000, 10**6))),
    st.tuples(st.just("period"), st.integers(1000, 10**6)),
    st.tuples(st.just("pids"), st.one_of(st.just(-1), st.integers(1, 10**5))),
    st.tuples(st.just("cpus"), st.sets(st.sampled_from(HOST_CPUS), min_size=1)
              .map(model.format_cpu_list)),
)


def _oci(kind: str, value: object) -> dict:
    return {
        "memory": {"memory": {"limit": value}},
        "shares": {"cpu": {"shares": value}},
        "quota": {"cpu": {"quota": value}},
        "period": {"cpu": {"period": value}},
        "pids": {"pids": {"limit": value}},
        "cpus": {"cpu": {"cpus": value}},
    }[kind]


def _expected(state: dict) -> dict[tuple[str, str, str], str]:
    """The read-back of every file the updates touched, from the accumulated state."""
    out: dict[tuple[str, str, str], str] = {}
    if "memory" in state:
        v = state["memory"]
        out[("memory", "memory.limit_in_bytes", "memory.max")] = (
            model.memory_readback_v2(v) if VERSION == "v2" else str(model.memory_readback_v1(v)))
    if "shares" in state:
        out[("cpu", "cpu.shares", "cpu.weight")] = str(
            model.shares_to_weight(state["shares"]) if VERSION == "v2" else state["shares"])
    q, p = state.get("quota"), state.get("period", model.CFS_PERIOD_DEFAULT_US)
    if VERSION == "v2" and ("quota" in state or "period" in state):
        out[("cpu", "", "cpu.max")] = f"{'max' if q in (None, -1) else q} {p}"
    elif VERSION == "v1":
        if "quota" in state:
            out[("cpu", "cpu.cfs_quota_us", "")] = str(q)
        if "period" in state:
            out[("cpu", "cpu.cfs_period_us", "")] = str(p)
    if "pids" in state:
        out[("pids", "pids.max", "pids.max")] = model.pids_value(state["pids"])
    if "cpus" in state:
        out[("cpuset", "cpuset.cpus", "cpuset.cpus")] = state["cpus"]
    return out


@given(st.lists(UPDATE_STEP, min_size=1, max_size=8))
def test_update_sequence(report, steps):
    """`docker update` as a sequence of partial updates on one cgroup: each only changes its
    own field, and after every step every file reads back as the accumulated model says."""
    with scratch("upd", Resources()) as m:
        state: dict = {}
        for kind, value in steps:
            t0 = time.monotonic()
            m.update(Resources.from_oci(_oci(kind, value)))
            state[kind] = value
            for (ctrl, v1name, v2name), want in _expected(state).items():
                got = cgroups.fs.read(leaf(m, ctrl, v1name, v2name))
                assert got == want, (kind, value, v1name or v2name, got, want, steps)
            report.record("update-sequence", [kind, value], "accepted",
                          "partial update changes only its field; all read back as modelled",
                          None, time.monotonic() - t0)
