"""`skiff stats` rows: the same columns and number formats as `docker stats`."""

from __future__ import annotations

from engine.client import format as fmt
from engine.client.cli import _stats_row


def test_sizes_as_docker_prints_them() -> None:
    assert fmt.bytes_size(475136) == "464KiB"
    assert fmt.bytes_size(25275564032) == "23.54GiB"
    assert fmt.human_size(0) == "0B" and fmt.human_size(1_050_000) == "1.05MB"


def test_stats_row_has_cpu_mem_net_block_and_pids() -> None:
    s = {
        "id": "a" * 64, "name": "/web",
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000,
                      "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
        "memory_stats": {"usage": 475136 + 4096, "limit": 25275564032,
                         "stats": {"inactive_file": 4096}},
        "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 262144},
                     "eth1": {"rx_bytes": 500, "tx_bytes": 0}},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 4096},
            {"major": 8, "minor": 0, "op": "Write", "value": 4194304},
            {"major": 8, "minor": 0, "op": "Total", "value": 4198400}]},
        "pids_stats": {"current": 3},
    }
    row = _stats_row("web", s)
    assert row["CPUPerc"] == "40.00%"  # 200/1000 of the system, 2 CPUs
    assert row["MemUsage"] == "464KiB / 23.54GiB"
    assert row["NetIO"] == "2kB / 262kB"
    assert row["BlockIO"] == "4.1kB / 4.19MB"
    assert row["PIDs"] == "3" and row["Name"] == "web" and row["ID"] == "a" * 12


def test_stats_row_without_network_or_block_io() -> None:
    row = _stats_row("c", {"memory_stats": {}, "blkio_stats": {
        "io_service_bytes_recursive": None}})
    assert row["NetIO"] == "0B / 0B" and row["BlockIO"] == "0B / 0B"


def test_memory_limit_is_never_negative() -> None:
    """v2's "max" reads as -1: docker's CLI decodes memory_stats.limit as a uint64 and drops
    the whole frame on a negative value (it printed "EOF" in the v2 VM)."""
    import os

    from engine.containers.manager import _memory_limit

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert _memory_limit(-1) == ram and _memory_limit(None) == ram and _memory_limit(0) == ram
    assert _memory_limit(9223372036854771712) == ram  # v1's unlimited
    assert _memory_limit(64 << 20) == 64 << 20
