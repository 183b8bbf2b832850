"""The kernel arithmetic model (engine/libcontainer/cgroups/model.py) and docker unit parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.libcontainer.cgroups import model


def test_page_rounding_matches_kernel_facts():
    # kernel-facts: 10000001 -> 9998336 on this machine's v1.
    assert model.memory_readback_v1(10000001) == 9998336
    assert model.memory_readback_v2(10000001) == "9998336"
    assert model.memory_readback_v1(4095) == 0
    assert model.memory_readback_v2(4096) == "4096"


def test_unlimited_keywords():
    assert model.memory_readback_v1(-1) == 9223372036854771712
    assert model.V1_MEMORY_UNLIMITED == 9223372036854771712
    assert model.memory_readback_v2(-1) == "max"
    assert model.memory_readback_v2(2**63 - 1) == "max"  # PAGE_COUNTER_MAX pages reads "max"
    assert model.memory_readback_v1(2**63 - 1) == 9223372036854771712
    assert model.memory_v2_value(-1) == "max"
    assert model.pids_value(-1) == "max"
    assert model.pids_value(5) == "5"


@pytest.mark.parametrize(
    "shares,weight",
    [(0, 0), (1, 1), (2, 1), (1024, 100), (262144, 10000), (10**9, 10000)],
)
def test_shares_to_weight_fixed_points(shares, weight):
    # The curve's defining points: min -> min, default -> default, max -> max.
    assert model.shares_to_weight(shares) == weight


@given(st.integers(2, 262143))
def test_shares_to_weight_monotone_in_range(s):
    a, b = model.shares_to_weight(s), model.shares_to_weight(s + 1)
    assert 1 <= a <= b <= 10000


def test_blkio_weight_conversion():
    assert model.blkio_weight_to_io_weight(10) == 1
    assert model.blkio_weight_to_io_weight(1000) == 10000
    assert model.blkio_weight_to_io_weight(500) == 1 + 490 * 9999 // 990


def test_swap_v2_value():
    assert model.swap_v2_value(None, None) is None
    assert model.swap_v2_value(None, -1) == -1
    assert model.swap_v2_value(-1, 100) == -1
    assert model.swap_v2_value(300, 100) == 200
    assert model.swap_v2_value(100, 100) == 0
    with pytest.raises(ValueError):
        model.swap_v2_value(50, 100)
    with pytest.raises(ValueError):
        model.swap_v2_value(50, None)


def test_memsw_write_order():
    limit, memsw = "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
    # Raising (current 100M, new swap 400M): memsw first.
    assert model.memsw_write_order(100 << 20, 200 << 20, 400 << 20) == [memsw, limit]
    # Lowering (current 400M, new swap 100M): memory first.
    assert model.memsw_write_order(400 << 20, 50 << 20, 100 << 20) == [limit, memsw]
    assert model.memsw_write_order(400 << 20, 50 << 20, -1) == [memsw, limit]
    assert model.memsw_write_order(0, 5, None) == [limit]
    assert model.memsw_write_order(0, None, 5) == [memsw]


def test_cpu_max_v2():
    assert model.cpu_max_v2(None, None) is None
    assert model.cpu_max_v2(50000, None) == "50000 100000"
    assert model.cpu_max_v2(-1, 20000) == "max 20000"
    assert model.cpu_max_v2(2000, 1000) == "2000 1000"
    assert model.cfs_quota_readback_v1(-5) == -1
    assert model.nano_cpus_to_quota(1_500_000_000) == 150000


@pytest.mark.parametrize(
    "text,ids",
    [("", set()), ("0", {0}), ("0-2", {0, 1, 2}), ("0,2-3", {0, 2, 3}), ("1,1", {1})],
)
def test_parse_cpu_list(text, ids):
    assert model.parse_cpu_list(text) == ids


@pytest.mark.parametrize(
    "text", ["a", "1-", "-1", "3-1", "0,,1", "0-1:1/2", "+1", "1 2", "٣", " ", " 0", "0\n"]
)
def test_parse_cpu_list_rejects(text):
    with pytest.raises(ValueError):
        model.parse_cpu_list(text)


@given(st.sets(st.integers(0, 300), max_size=40))
def test_cpu_list_roundtrip(ids):
    assert model.parse_cpu_list(model.format_cpu_list(ids)) == ids


def test_format_cpu_list():
    assert model.format_cpu_list({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"


@pytest.mark.parametrize(
    "text,value",
    [("4096", 4096), ("4k", 4096), ("1M", 1 << 20), ("0x10", 16), ("010", 8), ("1g", 1 << 30),
     ("-1", None), ("1x", None), ("", None), ("0x", None), ("1kb", None)],
)
def test_kernel_memparse(text, value):
    assert model.kernel_memparse(text) == value
