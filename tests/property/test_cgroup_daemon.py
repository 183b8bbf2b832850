"""Cgroup limits sampled through the Docker API of a real `skiffd` (docker-py), and `docker
update` of a running container.

Here docker's own rules apply on top of the kernel's: limits below 6 MiB are refused
("Minimum memory limit allowed is 6MB"), --cpus beyond the host's CPUs are refused, cpu shares
are clamped with a warning, pids <= 0 mean unlimited, memory+swap defaults to twice the memory.
What the daemon accepts must read back inside the container as the model says; what it
refuses must be refused with docker's message, leaving nothing behind.

The daemon runs with the `skt2d` prefix (bridge skt2dbr0, nft table skt2d, 10.212.0.0/26) and
its containers' cgroups under skt2/daemon; everything is removed when the module ends.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import units
from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import model
from tests.property.cgsupport import enforcement_examples

pytestmark = pytest.mark.root

VERSION = cgroups.detect()
RUNS = enforcement_examples() * 3
MiB = 1 << 20

READ = (
    "for f in memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes memory.max "
    "memory.swap.max pids/pids.max pids.max cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us "
    "cpu.max cpu/cpu.shares cpu.weight; do "
    '[ -f /sys/fs/cgroup/$f ] && echo "$f=$(cat /sys/fs/cgroup/$f)"; done; true'
)


@pytest.fixture(scope="module")
def report(kernel_report):
    return kernel_report


@pytest.fixture(scope="module")
def daemon(busybox_image):
    pytest.importorskip("docker")
    from tests.system.daemon import Skiffd

    d = Skiffd("skt2d", subnet="10.212.0.0/26")
    d.cgroup_parent = "skt2/daemon"
    with d:
        d.load_busybox(busybox_image)
        yield d


def parse(out: bytes | str) -> dict[str, str]:
    text = out.decode() if isinstance(out, bytes) else out
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def expect_memory(mem: int, swap: int | None) -> dict[str, str]:
    """docker: memory+swap defaults to 2 x memory when swap is not given."""
    total = 2 * mem if swap is None else swap
    if VERSION == "v1":
        out = {"memory/memory.limit_in_bytes": str(model.memory_readback_v1(mem))}
        out["memory/memory.memsw.limit_in_bytes"] = str(model.memory_readback_v1(total))
        return out
    sw = model.swap_v2_value(total, mem)
    return {"memory.max": model.memory_readback_v2(mem),
            "memory.swap.max": model.memory_readback_v2(sw if sw is not None else -1)}


MEMORY = st.one_of(
    st.sampled_from(["0", "4m", "6m", "6291455b", "6291456b", "7m", "6143k", "6145k"]),
    st.integers(6, 512).map(lambda n: f"{n}m"),
    st.integers(1, 8 * MiB).map(str),
)
CPUS = st.one_of(st.none(), st.sampled_from(["0.01", "0.5", "1", "1.5", str(os.cpu_count()),
                                             str((os.cpu_count() or 1) + 1)]))
# The read-back script forks (sh + cat), so tiny pids limits cannot run it: >= 16 here (the
# fork limit itself is swept by test_cgroup_enforcement).
PIDS = st.one_of(st.none(), st.sampled_from([-1, 0, 64]), st.integers(16, 4096))
SHARES = st.one_of(st.none(), st.sampled_from([0, 1, 2, 512, 1024, 262144, 262145, 10**6]))


@settings(max_examples=RUNS)
@given(MEMORY, CPUS, PIDS, SHARES)
def test_docker_run_limits(daemon, report, mem_text, cpus, pids, shares):
    import docker

    t0 = time.monotonic()
    mem = units.ram_in_bytes(mem_text)
    kwargs: dict = {"mem_limit": mem}
    nano = units.nano_cpus(cpus) if cpus is not None else 0
    if nano:
        kwargs["nano_cpus"] = nano
    if pids is not None:
        kwargs["pids_limit"] = pids
    if shares is not None:
        kwargs["cpu_shares"] = shares
    ncpu = os.cpu_count() or 1
    refusal = None
    if 0 < mem < units.DOCKER_MIN_MEMORY:
        refusal = "Minimum memory limit allowed is 6MB"
    elif nano > ncpu * 10**9:
        refusal = "Range of CPUs"
    client = daemon.client()
    shown = {"memory": mem_text, "cpus": cpus, "pids": pids, "shares": shares}
    try:
        out = client.containers.run("busybox", ["sh", "-c", READ], network_mode="none",
                                    remove=True, **kwargs)
    except docker.errors.APIError as e:
        assert refusal is not None, f"skiffd refused {shown}: {e}"
        assert e.status_code == 400 and refusal in str(e), e
        report.record("daemon.run", shown, "docker-rejected", f"docker refuses: {refusal}",
                      None, time.monotonic() - t0)
        return
    assert refusal is None, f"skiffd accepted {shown}; docker refuses it ({refusal})"
    seen = parse(out)
    want: dict[str, str] = {}
    if mem:
        want.update(expect_memory(mem, None))
    if nano:
        quota, period = units.nano_cpus_to_cfs(nano)
        if VERSION == "v1":
            want["cpu/cpu.cfs_quota_us"] = str(quota)
            want["cpu/cpu.cfs_period_us"] = str(period)
        else:
            want["cpu.max"] = f"{quota} {period}"
    if pids is not None:
        want["pids/pids.max" if VERSION == "v1" else "pids.max"] = (
            "max" if pids <= 0 else str(pids))
    if shares:  # 0 = default; dockerd clamps into 2..262144
        clamped, _warning = units.clamp_cpu_shares(shares)
        if VERSION == "v1":
            want["cpu/cpu.shares"] = str(clamped)
        else:
            want["cpu.weight"] = str(model.shares_to_weight(clamped))
    for k, v in want.items():
        assert seen.get(k) == v, (k, seen.get(k), v, shown)
    report.record("daemon.run", shown, "accepted",
                  "docker run: limits read back inside the container as docker + the model say",
                  seen, time.monotonic() - t0)


UPDATE = st.lists(
    st.tuples(st.integers(6, 256).map(lambda n: n * MiB),
              st.one_of(st.none(), st.just(-1), st.integers(0, 256).map(lambda n: n * MiB))),
    min_size=1, max_size=4,
)


@settings(max_examples=max(1, enforcement_examples() - 1))
@given(UPDATE)
def test_docker_update_memory(daemon, report, steps):
    """docker update --memory [--memory-swap] on a running container, in sequence: each step
    is refused with docker's message or reads back inside the container as modelled."""
    import docker

    client = daemon.client()
    c = client.containers.run("busybox", ["sleep", "120"], mem_limit=64 * MiB,
                              network_mode="none", detach=True)
    try:
        mem_now, total_now = 64 * MiB, 128 * MiB  # docker's default: swap = 2 x memory
        for mem, extra in steps:
            t0 = time.monotonic()
            swap = None if extra is None else (-1 if extra == -1 else mem + extra)
            kw: dict = {"mem_limit": mem}
            if swap is not None:
                kw["memswap_limit"] = swap
            shown = {"memory": mem, "memory-swap": swap}
            refusal = None
            if swap is None and total_now != -1 and mem > total_now:
                refusal = "Memory limit should be smaller than already set memoryswap limit"
            try:
                c.update(**kw)
            except docker.errors.APIError as e:
                assert refusal is not None and refusal in str(e), (shown, e)
                report.record("daemon.update", shown, "docker-rejected",
                              "docker refuses: memory above the current memory+swap", None,
                              time.monotonic() - t0)
                continue
            assert refusal is None, f"skiffd accepted {shown}; docker refuses ({refusal})"
            mem_now = mem
            total_now = total_now if swap is None else swap
            seen = parse(c.exec_run(["sh", "-c", READ]).output)
            want = expect_memory(mem_now, total_now)
            for k, v in want.items():
                assert seen.get(k) == v, (k, seen.get(k), v, shown, steps)
            report.record("daemon.update", shown, "accepted",
                          "docker update: read back inside the running container", seen,
                          time.monotonic() - t0)
    finally:
        c.remove(force=True)
