"""The I/O fields of GET /containers/{id}/stats: the /proc/net/dev, v1 blkio and v2 io.stat
parsers, and the docker-shaped dicts built from them. This host is cgroup v1: the v2 io.stat
path is only exercised for real in the VM, so its parser is pinned here."""

from __future__ import annotations

from pathlib import Path

from engine.containers import stats_io
from engine.libcontainer.cgroups import new_manager
from engine.libcontainer.cgroups.resources import Resources
from engine.libcontainer.cgroups.v1 import blkio_stats, parse_blkio_v1
from engine.libcontainer.cgroups.v2 import parse_io_stat

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:12345678901  17    1    2    0     0          0         0     2900      21    3    4    0     0       0          0
 tunl0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth1: 5 6 7 8 0 0 0 0 9 10 11 12 0 0 0 0
"""  # noqa: E501

V1_BLKIO = """\
253:0 Read 0
253:0 Write 0
254:0 Read 4096
254:0 Write 1048576
254:0 Sync 1052672
254:0 Async 0
254:0 Discard 0
254:0 Total 1052672
Total 1052672
"""


def test_net_dev_eth_only_docker_names():
    s = stats_io.parse_net_dev(NET_DEV)
    assert set(s) == {"eth0", "eth1"}  # no lo, no fallback tunnels
    assert s["eth0"] == {"rx_bytes": 12345678901, "rx_packets": 17, "rx_errors": 1,
                         "rx_dropped": 2, "tx_bytes": 2900, "tx_packets": 21, "tx_errors": 3,
                         "tx_dropped": 4}
    assert s["eth1"]["rx_dropped"] == 8 and s["eth1"]["tx_packets"] == 10


def test_net_dev_none_mode_and_garbage():
    lo_only = "\n".join(NET_DEV.splitlines()[:3])
    assert stats_io.parse_net_dev(lo_only) == {}
    assert stats_io.parse_net_dev("eth0: 1 2 3\neth1: a b c d e f g h i j k l m n o p\n") == {}
    assert stats_io.network_stats(0) == {}
    assert stats_io.network_stats(2**22 + 12345) == {}  # no such pid: {} rather than an error


def test_net_dev_of_this_process_parses():
    """The real /proc format (this namespace may have no eth*: only the shape is checked)."""
    text = Path("/proc/self/net/dev").read_text()
    assert isinstance(stats_io.parse_net_dev(text), dict)


def test_parse_blkio_v1_skips_total_line():
    e = parse_blkio_v1(V1_BLKIO)
    assert len(e) == 8
    assert e[2] == {"major": 254, "minor": 0, "op": "Read", "value": 4096}
    assert e[3] == {"major": 254, "minor": 0, "op": "Write", "value": 1048576}
    assert parse_blkio_v1("") == [] and parse_blkio_v1("8:0 Read x\n") == []


def test_v1_blkio_source_order(tmp_path: Path):
    """runc's order: the CFQ files, then BFQ's, then the throttle layer's; an empty file
    (BFQ on a kernel where no device uses bfq) falls through to the next."""
    (tmp_path / "blkio.bfq.io_service_bytes_recursive").write_text("")
    (tmp_path / "blkio.throttle.io_service_bytes_recursive").write_text(V1_BLKIO)
    (tmp_path / "blkio.throttle.io_serviced_recursive").write_text("254:0 Write 3\nTotal 3\n")
    s = blkio_stats(str(tmp_path))
    assert len(s["service_bytes"]) == 8
    assert s["serviced"] == [{"major": 254, "minor": 0, "op": "Write", "value": 3}]
    (tmp_path / "blkio.io_service_bytes_recursive").write_text("8:0 Read 1\n")
    assert blkio_stats(str(tmp_path)) == {
        "service_bytes": [{"major": 8, "minor": 0, "op": "Read", "value": 1}], "serviced": []}
    assert blkio_stats(str(tmp_path / "gone")) == {"service_bytes": [], "serviced": []}


def test_parse_io_stat_v2():
    text = ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n"
            "\n"
            "254:16 rbytes=4096 wbytes=1048576 rios=1 wios=256 dbytes=0 dios=0 cost.usage=9\n"
            "253:0 rbytes=5\n"
            "bogus line\n")
    s = parse_io_stat(text)
    assert s["service_bytes"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 1},
        {"major": 8, "minor": 0, "op": "write", "value": 2},
        {"major": 254, "minor": 16, "op": "read", "value": 4096},
        {"major": 254, "minor": 16, "op": "write", "value": 1048576},
        {"major": 253, "minor": 0, "op": "read", "value": 5},
        {"major": 253, "minor": 0, "op": "write", "value": 0},
    ]
    assert s["serviced"][:2] == [{"major": 8, "minor": 0, "op": "read", "value": 3},
                                 {"major": 8, "minor": 0, "op": "write", "value": 4}]
    assert parse_io_stat("") == {"service_bytes": [], "serviced": []}


def test_managers_report_io(tmp_path: Path):
    """Both managers' stats() carry "io" from their own files (fake trees)."""
    v2 = tmp_path / "v2"
    leaf = v2 / "skt15" / "c"
    leaf.mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu io memory pids\n")
    (leaf / "io.stat").write_text("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n")
    s = new_manager("/skt15/c", Resources(), version="v2", root=v2).stats()
    assert s["io"]["service_bytes"][1] == {"major": 8, "minor": 0, "op": "write", "value": 20}
    (leaf / "io.stat").unlink()
    assert "io" not in new_manager("/skt15/c", Resources(), version="v2", root=v2).stats()

    v1 = tmp_path / "v1"
    d = v1 / "blkio" / "skt15" / "c"
    d.mkdir(parents=True)
    (d / "blkio.throttle.io_service_bytes_recursive").write_text(V1_BLKIO)
    s = new_manager("/skt15/c", Resources(), version="v1", root=v1).stats()
    assert s["io"]["service_bytes"][3]["value"] == 1048576


def test_docker_blkio_stats_shape():
    keys = set(stats_io.BLKIO_KEYS)
    empty = stats_io.blkio_stats(None, "v1")
    assert set(empty) == keys and all(v is None for v in empty.values())
    io = {"service_bytes": [{"major": 8, "minor": 0, "op": "Read", "value": 1}],
          "serviced": [{"major": 8, "minor": 0, "op": "Read", "value": 1}]}
    v1 = stats_io.blkio_stats(io, "v1")
    assert v1["io_service_bytes_recursive"] == io["service_bytes"]
    assert v1["io_serviced_recursive"] == io["serviced"]
    v2 = stats_io.blkio_stats(io, "v2")  # docker on v2 fills only the bytes
    assert v2["io_service_bytes_recursive"] == io["service_bytes"]
    assert v2["io_serviced_recursive"] is None and set(v2) == keys
    assert stats_io.blkio_stats({"service_bytes": [], "serviced": []}, "v2")[
        "io_service_bytes_recursive"] is None
