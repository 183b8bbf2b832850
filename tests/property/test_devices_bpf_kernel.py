"""Property: the kernel, running Skiff's compiled device program, decides every open and
mknod exactly as the reference semantics `devices_bpf.decide()` says.

Random rule lists (allow/deny, a/b/c, wildcards, any access) over a few device numbers are
attached (each example replaces the previous example's program on the same cgroup), then a
probe process inside the cgroup opens r / w / rw and mknods every device; EPERM is a refusal.
Works on any cgroup2 (the hybrid host's /sys/fs/cgroup/unified or a pure-v2 /sys/fs/cgroup).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.libcontainer.cgroups import devices_bpf
from engine.libcontainer.cgroups.resources import DeviceRule
from tests.property import devsupport as ds
from tests.property.cgsupport import profile_name

pytestmark = pytest.mark.root

# /dev/null, /dev/zero, and numbers without a driver (a permitted open is ENXIO, not EPERM)
DEVICES = [("c", 1, 3), ("c", 1, 5), ("c", 240, 0), ("b", 240, 0), ("b", 240, 5)]
EXAMPLES = {"ci": 40, "vm": 15, "dev": 10}.get(profile_name(), 500)

ACCESS = st.sets(st.sampled_from("rwm"), min_size=1).map(
    lambda s: "".join(c for c in "rwm" if c in s))


@st.composite
def rule_lists(draw) -> list[DeviceRule]:
    out = []
    for _ in range(draw(st.integers(0, 7))):
        typ = draw(st.sampled_from("abc"))
        maj = None if typ == "a" else draw(st.sampled_from([None, 1, 240]))
        mnr = None if typ == "a" else draw(st.sampled_from([None, 0, 3, 5]))
        out.append(DeviceRule(draw(st.booleans()), typ, maj, mnr, draw(ACCESS)))
    return out


@pytest.fixture(scope="module")
def cg(require_root, tmp_path_factory) -> Iterator[tuple[Path, dict, Path]]:
    why = ds.unavailable()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("skt13-nodes")
    nodes = ds.make_nodes(tmp, DEVICES)
    with ds.scratch_dir("prop") as d:
        yield d, nodes, tmp
        assert len(devices_bpf.attached(d)) <= 1, "replacements must not pile up"
    ds.remove_prefix()


@settings(max_examples=EXAMPLES)
@given(rules=rule_lists())
def test_kernel_agrees_with_reference(cg, rules):
    d, nodes, tmp = cg
    devices_bpf.apply(d, rules)
    calls, want = [], []
    for i, dev in enumerate(DEVICES):
        for acc in ("r", "w", "rw"):
            calls.append(("open", nodes[dev], *dev, ds.ACCESS_FLAGS[acc]))
            want.append(devices_bpf.decide(rules, *dev, acc))
        calls.append(("mknod", str(tmp / f"new{i}"), *dev, 0))
        want.append(devices_bpf.decide(rules, *dev, "m"))
    got = ds.probe(d, calls)
    allowed = [not ds.denied(x) for x in got]
    diff = [(c[0], c[2:5], oct(c[5]), g) for c, g, w in zip(calls, got, want, strict=True)
            if (not ds.denied(g)) != w]
    assert allowed == want, f"kernel and reference disagree on {diff}"
    for i in range(len(DEVICES)):
        assert not os.path.exists(tmp / f"new{i}")
