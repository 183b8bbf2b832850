"""Cgroup limits sampled end to end through `skiff-runc run` of the busybox bundle.

The same contract as test_cgroup_limits, one level up: a config the validator refuses makes
`skiff-runc run` fail before anything exists (no cgroup, no state), naming the field; an
accepted one runs, and the container reads its own limits (cgroup namespace) equal to the
model. Sampled (each run starts a container), plus OOM through the runtime: exit 137.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import Resources, model
from engine.libcontainer.errors import ConfigError
from tests.property.cgsupport import enforcement_examples, prefix_dirs

pytestmark = pytest.mark.root

VERSION = cgroups.detect()
RUNC_EXAMPLES = enforcement_examples() * 5  # ~0.15 s per run
INIT_NEEDS = 4 << 20  # below this a container may not get to exec (see test_runc_limits)

READ = (
    "for f in memory/memory.limit_in_bytes memory.max pids/pids.max pids.max "
    "cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpu.max; do "
    '[ -f /sys/fs/cgroup/$f ] && echo "$f=$(cat /sys/fs/cgroup/$f)"; done; true'
)


def skiff_runc() -> list[str]:
    exe = Path(sys.executable).parent / "skiff-runc"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("skiff-runc")
    if not found:
        pytest.skip("skiff-runc is not installed")
    return [found]


@pytest.fixture(scope="module")
def report(kernel_report):
    return kernel_report


@pytest.fixture(scope="module")
def runc(busybox_image: Path, tmp_path_factory):
    """(run(config) -> CompletedProcess, base config) with a private --root."""
    state = tmp_path_factory.mktemp("skt2-runc-root")
    base = json.loads((busybox_image / "bundle" / "config.json").read_text())
    base["root"] = {"path": str(busybox_image / "bundle" / "rootfs"), "readonly": True}
    base["process"]["terminal"] = False
    cmd = skiff_runc()
    started: list[str] = []

    def run(config: dict, cid: str) -> subprocess.CompletedProcess:
        bundle = tmp_path_factory.mktemp("skt2-bundle")
        (bundle / "config.json").write_text(json.dumps(config))
        started.append(cid)
        return subprocess.run(
            [*cmd, "--root", str(state), "run", "-b", str(bundle), cid],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )

    yield run, base
    for cid in started:  # anything a failed example left behind
        subprocess.run([*cmd, "--root", str(state), "delete", "--force", cid],
                       capture_output=True, timeout=30)


def config_with(base: dict, resources: dict, args: list[str], path: str) -> dict:
    c = json.loads(json.dumps(base))
    c["process"]["args"] = args
    c["linux"]["resources"] = {**c["linux"].get("resources", {}), **resources}
    c["linux"]["cgroupsPath"] = path
    return c


def cgroup_exists(path: str) -> bool:
    return any((d / path.rsplit("/", 1)[-1]).exists() for d in prefix_dirs())


MEM = st.one_of(st.none(), st.sampled_from([0, -1, 100, 4095, 4096, 6 << 20]),
                st.integers(8 << 20, 1 << 34), st.integers(-5, -2))
PIDS = st.one_of(st.none(), st.sampled_from([0, -1, 1 << 22, model.PIDS_MAX]),
                 st.integers(8, 1000))
# The container's init runs Python inside the cgroup before it execs: a tiny CPU share would
# make a start take seconds, so accepted quotas here stay >= 20% of a CPU (the bounds
# themselves are swept by test_cgroup_limits through the Manager).
QUOTA = st.one_of(st.none(), st.sampled_from([999, 0, -1, -2]), st.integers(20000, 400000))
PERIOD = st.one_of(st.none(), st.sampled_from([999, 1000, 100000, 1_000_001]))


@settings(max_examples=RUNC_EXAMPLES)
@given(MEM, PIDS, QUOTA, PERIOD)
def test_runc_limits(runc, report, mem, pids, quota, period):
    run, base = runc
    res: dict = {}
    if mem is not None:
        res["memory"] = {"limit": mem}
    if pids is not None:
        res["pids"] = {"limit": pids}
    cpu = {k: v for k, v in (("quota", quota), ("period", period)) if v is not None}
    if cpu:
        res["cpu"] = cpu
    cid = f"skt2-{uuid.uuid4().hex[:10]}"
    path = f"/skt2/{cid}"
    t0 = time.monotonic()
    try:
        Resources.from_oci(res)
        refused = None
    except ConfigError as e:
        refused = e
    p = run(config_with(base, res, ["sh", "-c", READ], path), cid)
    if refused is not None:
        assert p.returncode != 0, f"skiff-runc ran a config the validator refuses: {res}"
        assert refused.field in p.stderr, (refused.field, p.stderr)
        assert not cgroup_exists(path), "a refused config left a cgroup behind"
        report.record("runc.limits", res, "skiff-rejected",
                      "skiff-runc refuses before creating anything, naming the field",
                      None, time.monotonic() - t0)
        return
    if p.returncode != 0 and mem is not None and 0 < mem < INIT_NEEDS:
        # The kernel takes the limit, but the container's init (Python until it execs) needs
        # a few MiB (peak ~3 MiB here): it is OOM-killed at start. docker refuses < 6 MiB.
        assert not cgroup_exists(path), "a failed start left a cgroup behind"
        report.record("runc.limits", res, "enforced",
                      "limit below what the init needs: OOM-killed at start, nothing left",
                      p.stderr.strip()[-120:], time.monotonic() - t0)
        return
    assert p.returncode == 0, (res, p.stderr)
    seen = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    want: dict[str, str] = {}
    if VERSION == "v1":
        if mem not in (None, 0):
            want["memory/memory.limit_in_bytes"] = str(model.memory_readback_v1(mem))
        if pids not in (None, 0):
            want["pids/pids.max"] = model.pids_value(pids)
        if quota is not None:  # 0 is "unset": the default -1 stays
            want["cpu/cpu.cfs_quota_us"] = "-1" if quota == 0 else str(
                model.cfs_quota_readback_v1(quota))
        if period is not None:
            want["cpu/cpu.cfs_period_us"] = str(period)
    else:
        if mem not in (None, 0):
            want["memory.max"] = model.memory_readback_v2(mem)
        if pids not in (None, 0):
            want["pids.max"] = model.pids_value(pids)
        if cpu:
            want["cpu.max"] = model.cpu_max_v2(
                quota if quota not in (-1, 0) else None, period
            ) or f"max {model.CFS_PERIOD_DEFAULT_US}"
    for k, v in want.items():
        assert seen.get(k) == v, (k, seen.get(k), v, res)
    assert not cgroup_exists(path), "skiff-runc run left its cgroup behind"
    report.record("runc.limits", res, "accepted",
                  "skiff-runc run: the container reads its limits as the model says",
                  seen, time.monotonic() - t0)


@settings(max_examples=max(1, enforcement_examples() - 1))
@given(st.integers(8 << 20, 48 << 20))
def test_runc_oom_exit_137(runc, report, limit):
    run, base = runc
    cid = f"skt2-{uuid.uuid4().hex[:10]}"
    t0 = time.monotonic()
    # memory+swap = memory: on a host with swap, nothing can be swapped out instead
    p = run(config_with(base, {"memory": {"limit": limit, "swap": limit}},
                        ["sh", "-c", "tail /dev/zero"],
                        f"/skt2/{cid}"), cid)
    assert p.returncode == 137, (p.returncode, p.stderr)
    report.record("runc.oom", limit, "enforced",
                  "skiff-runc run of a process past its memory limit exits 137",
                  p.returncode, time.monotonic() - t0)


@pytest.fixture(scope="module", autouse=True)
def _cleanup_prefix():
    yield
    with contextlib.suppress(Exception):
        from tests.property.cgsupport import remove_prefix

        remove_prefix()
