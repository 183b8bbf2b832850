"""engine/units.py: docker's unit formats (go-units and opts.NanoCPUs behaviour)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import units


@pytest.mark.parametrize(
    "text,value",
    [
        ("0", 0),
        ("6m", 6 << 20),
        ("6M", 6 << 20),
        ("6mb", 6 << 20),
        ("6MiB", 6 << 20),
        ("1g", 1 << 30),
        ("1.5g", 3 << 29),
        ("512", 512),
        ("512b", 512),
        ("10 k", 10240),
        ("4k", 4096),
        ("1p", 1 << 50),
    ],
)
def test_ram_in_bytes(text, value):
    assert units.ram_in_bytes(text) == value


@pytest.mark.parametrize("text", ["", "m", "-1", "6x", "6mm", "6kibb", "6 mb b", "1e", "abc"])
def test_ram_in_bytes_rejects(text):
    with pytest.raises(ValueError):
        units.ram_in_bytes(text)


def test_decimal_and_swap():
    assert units.from_human_size("1k") == 1000
    assert units.memory_swap_bytes("-1") == -1
    assert units.memory_swap_bytes("1g") == 1 << 30


@pytest.mark.parametrize(
    "text,nano", [("1", 10**9), ("1.5", 1_500_000_000), ("0.01", 10**7), ("3/2", 1_500_000_000)]
)
def test_nano_cpus(text, nano):
    assert units.nano_cpus(text) == nano


@pytest.mark.parametrize("text,msg", [("abc", "rational"), ("0.0000000001", "too precise")])
def test_nano_cpus_rejects(text, msg):
    with pytest.raises(ValueError, match=msg):
        units.nano_cpus(text)


def test_nano_cpus_to_cfs():
    assert units.nano_cpus_to_cfs(1_500_000_000) == (150000, 100000)
    assert units.nano_cpus_to_cfs(10**7) == (1000, 100000)  # 0.01 CPU: the kernel's minimum


def test_clamp_and_pids():
    assert units.clamp_cpu_shares(1)[0] == 2
    assert units.clamp_cpu_shares(10**6)[0] == 262144
    assert units.clamp_cpu_shares(512) == (512, None)
    assert units.pids_limit_to_oci(0) == -1
    assert units.pids_limit_to_oci(-5) == -1
    assert units.pids_limit_to_oci(7) == 7
    assert units.pids_limit_to_oci(None) is None


def test_human_sizes():
    assert units.human_size(1_500_000) == "1.5MB"
    assert units.bytes_size(1536) == "1.5KiB"


@given(st.integers(0, 2**40), st.sampled_from(["", "b", "k", "m", "g", "kb", "KiB", "M"]))
def test_ram_in_bytes_integers(n, sfx):
    mult = {"": 1, "b": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30, "kb": 1024, "kib": 1024}
    expected = n * mult[sfx.lower()]
    if expected <= 2**53:  # exact in a float, as in go-units
        assert units.ram_in_bytes(f"{n}{sfx}") == expected


@pytest.mark.parametrize(
    "text,ids", [("", set()), ("0", {0}), ("0-2,5", {0, 1, 2, 5}), ("+1", {1}), ("00", {0})]
)
def test_parse_uint_list(text, ids):
    assert units.parse_uint_list(text) == ids


@pytest.mark.parametrize("text", ["0,", ",0", "1-0", "0-", "a", " 0", "0-1:1/2", "-1"])
def test_parse_uint_list_rejects(text):
    with pytest.raises(ValueError, match="invalid format"):
        units.parse_uint_list(text)
