"""docker stats' NET I/O and BLOCK I/O against a real skiffd (root, real kernel, docker CLI and
docker-py): `networks` from the container's own netns, `blkio_stats` from its cgroup."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.system.daemon import Skiffd

pytestmark = [pytest.mark.root]

SIZE = 256 * 1024  # bytes the client container downloads from the server container


@pytest.fixture(scope="module")
def d(require_root, busybox_image):
    with Skiffd("skt15a", subnet="10.215.0.0/26") as dm:
        dm.load_busybox(busybox_image)
        yield dm


def ok(r):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr}"
    return r


def _until(cond, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _stats(d: Skiffd, name: str) -> dict:
    r = ok(d.docker("stats", "--no-stream", "--format", "{{json .}}", name))
    return json.loads(r.stdout.strip().splitlines()[0])


def _docker_cli(d: Skiffd) -> None:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")


def test_net_io_between_two_containers(d):
    _docker_cli(d)
    pytest.importorskip("docker")
    cli = d.client()
    names = ("skt15-srv", "skt15-cli", "skt15-host")
    try:
        ok(d.docker("run", "-d", "--name", "skt15-srv", "busybox", "sh", "-c",
                    f"mkdir /www && head -c {SIZE} /dev/zero > /www/f && touch /ready"
                    " && httpd -f -p 80 -h /www"))
        _until(lambda: d.docker("exec", "skt15-srv", "test", "-e", "/ready").returncode == 0,
               what="the server's file")
        ip = ok(d.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "skt15-srv")
                ).stdout.strip()
        assert ip.startswith("10.215.0.")
        ok(d.docker("run", "-d", "--name", "skt15-cli", "busybox", "sh", "-c",
                    f"until wget -q -O /tmp/f http://{ip}/f; do sleep 0.1; done;"
                    " touch /done; sleep 600"))
        _until(lambda: d.docker("exec", "skt15-cli", "test", "-e", "/done").returncode == 0,
               what="the download")

        s = cli.containers.get("skt15-cli").stats(stream=False)
        eth0 = s["networks"]["eth0"]
        assert set(eth0) >= {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes",
                             "tx_packets", "tx_errors", "tx_dropped"}
        assert eth0["rx_bytes"] >= SIZE and eth0["tx_bytes"] > 0 and eth0["rx_packets"] > 0
        srv = cli.api.stats("skt15-srv", stream=False, one_shot=True)["networks"]["eth0"]
        assert srv["tx_bytes"] >= SIZE  # the server sent what the client received
        assert list(s["networks"]) == ["eth0"]  # no lo

        # the CLI's NET I/O column: "<rx> / <tx>", both non-zero
        rx, tx = (v.strip() for v in _stats(d, "skt15-cli")["NetIO"].split("/"))
        assert rx not in ("0B", "") and tx not in ("0B", ""), (rx, tx)
        assert rx.endswith("kB") and float(rx[:-2]) >= SIZE / 1000

        # the streaming endpoint carries the same field
        gen = cli.api.stats("skt15-cli", stream=True, decode=True)
        first = next(gen)
        gen.close()
        assert first["networks"]["eth0"]["rx_bytes"] >= SIZE

        # docker omits networks for --network host (and none): no endpoint of their own
        for mode in ("host", "none"):
            ok(d.docker("run", "-d", "--name", f"skt15-{mode}", "--network", mode, "busybox",
                        "sleep", "600"))
            s = cli.api.stats(f"skt15-{mode}", stream=False, one_shot=True)
            assert "networks" not in s, mode
            assert _stats(d, f"skt15-{mode}")["NetIO"].replace(" ", "") == "0B/0B"
    finally:
        for n in (*names, "skt15-none"):
            d.docker("rm", "-f", n)
        cli.close()


def _block_write(entries: list[dict] | None) -> int:
    return sum(e["value"] for e in entries or [] if e["op"].lower() == "write")


def test_block_io_of_a_volume_write(d):
    _docker_cli(d)
    pytest.importorskip("docker")
    cli = d.client()
    try:
        ok(d.docker("run", "-d", "--name", "skt15-dd", "-v", "skt15vol:/data", "busybox",
                    "sh", "-c", "dd if=/dev/zero of=/data/f bs=64k count=64 conv=fsync"
                    " 2>/dev/null && touch /done; sleep 600"))
        _until(lambda: d.docker("exec", "skt15-dd", "test", "-e", "/done").returncode == 0,
               what="the dd")
        s = cli.api.stats("skt15-dd", stream=False, one_shot=True)
        entries = s["blkio_stats"]["io_service_bytes_recursive"]
        written = _block_write(entries)
        if written == 0:
            pytest.skip(f"the kernel did not account this fsync'd write to the container's "
                        f"cgroup (backing fs of {d.root} has no block device, or writeback is"
                        f" not charged here): {entries}")
        assert written >= 64 * 64 * 1024
        bio = _stats(d, "skt15-dd")["BlockIO"]
        assert bio.split("/")[1].strip() not in ("0B", ""), bio
    finally:
        d.docker("rm", "-f", "-v", "skt15-dd")
        d.docker("volume", "rm", "-f", "skt15vol")
        cli.close()
