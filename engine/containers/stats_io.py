"""The I/O half of GET /containers/{id}/stats: docker's `networks` and `blkio_stats`.

Network counters come from /proc/<init pid>/net/dev, the kernel's view of the container's own
network namespace (no setns, nothing to enter; the host-side veth would have rx/tx swapped).
Block counters come from the cgroup managers' stats()["io"] (v1 blkio files, v2 io.stat).
"""

from __future__ import annotations

# /proc/net/dev columns after "iface:", receive then transmit
_RX = ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast")
_TX = ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")
_DOCKER = {"bytes": "bytes", "packets": "packets", "errs": "errors", "drop": "dropped"}

# docker's BlkioStats keys: all present, null when there is nothing to say
BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
              "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
              "io_time_recursive", "sectors_recursive")


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/dev -> {ifname: docker NetworkStats}. Only the container's endpoints (eth*,
    as docker and skiff name them): lo and the fallback tunnels a kernel module adds to every
    namespace (tunl0, sit0, gre0...) are not networks, and docker does not show them."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")  # "eth0:123" has no space when counters are big
        name = name.strip()
        if not sep or not name.startswith("eth"):
            continue
        try:
            values = [int(v) for v in rest.split()]
        except ValueError:
            continue
        if len(values) < len(_RX) + len(_TX):
            continue
        rx = dict(zip(_RX, values[:len(_RX)], strict=True))
        tx = dict(zip(_TX, values[len(_RX):len(_RX) + len(_TX)], strict=True))
        s: dict[str, int] = {}
        for k, d in _DOCKER.items():
            s[f"rx_{d}"] = rx[k]
        for k, d in _DOCKER.items():
            s[f"tx_{d}"] = tx[k]
        out[name] = s
    return out


def network_stats(pid: int) -> dict[str, dict[str, int]]:
    """The interfaces of the network namespace `pid` is in; {} when it is gone or has none."""
    if pid <= 0:
        return {}
    try:
        with open(f"/proc/{pid}/net/dev", encoding="ascii", errors="replace") as f:
            return parse_net_dev(f.read())
    except OSError:
        return {}


def blkio_stats(io: dict | None, version: str | None) -> dict:
    """docker's blkio_stats from a cgroup manager's stats()["io"]. On v1 docker passes the
    kernel's recursive files through (ops "Read", "Write", "Sync", "Async", "Discard",
    "Total"); on v2 it fills only io_service_bytes_recursive, with "read"/"write"."""
    out: dict = dict.fromkeys(BLKIO_KEYS)
    if not io:
        return out
    out["io_service_bytes_recursive"] = list(io.get("service_bytes") or []) or None
    if version != "v2":
        out["io_serviced_recursive"] = list(io.get("serviced") or []) or None
    return out
