"""docker stats' NET I/O and BLOCK I/O against a real skiffd (root, real kernel): `networks`
from the container's own netns, `blkio_stats` from its cgroup. Driven through docker-py so that
it also runs in the VM (cgroup v2, no docker CLI); the docker CLI's columns are checked where
there is one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.system.daemon import Skiffd, until

pytestmark = [pytest.mark.root]

SIZE = 256 * 1024  # bytes the client container downloads from the server container


@pytest.fixture(scope="module")
def d(require_root, busybox_image):
    with Skiffd("skt15a", subnet="10.215.0.0/26") as dm:
        dm.load_busybox(busybox_image)
        yield dm


@pytest.fixture
def cli(d):
    pytest.importorskip("docker")
    c = d.client()
    yield c
    c.close()


def _has(ct, path: str) -> bool:
    return ct.exec_run(["test", "-e", path]).exit_code == 0


def _cli_stats(d: Skiffd, name: str) -> dict | None:
    """`docker stats --no-stream` as JSON, or None where there is no docker CLI (the VM)."""
    if shutil.which("docker") is None:
        return None
    r = d.docker("stats", "--no-stream", "--format", "{{json .}}", name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[0])


def test_net_io_between_two_containers(d, cli):
    made = []
    try:
        srv = cli.containers.run(
            "busybox", ["sh", "-c", f"mkdir /www && head -c {SIZE} /dev/zero > /www/f"
                        " && touch /ready && httpd -f -p 80 -h /www"],
            detach=True, name="skt15-srv")
        made.append(srv)
        until(lambda: _has(srv, "/ready"), what="the server's file")
        srv.reload()
        ip = srv.attrs["NetworkSettings"]["IPAddress"]
        assert ip.startswith("10.215.0.")
        ct = cli.containers.run(
            "busybox", ["sh", "-c", f"until wget -q -O /tmp/f http://{ip}/f; do sleep 0.1;"
                        " done; touch /done; sleep 600"], detach=True, name="skt15-cli")
        made.append(ct)
        until(lambda: _has(ct, "/done"), what="the download")

        s = ct.stats(stream=False)
        assert list(s["networks"]) == ["eth0"]  # no lo
        eth0 = s["networks"]["eth0"]
        assert set(eth0) == {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes",
                             "tx_packets", "tx_errors", "tx_dropped"}
        assert eth0["rx_bytes"] >= SIZE and eth0["tx_bytes"] > 0 and eth0["rx_packets"] > 0
        sent = cli.api.stats("skt15-srv", stream=False, one_shot=True)["networks"]["eth0"]
        assert sent["tx_bytes"] >= SIZE  # the server sent what the client received

        gen = cli.api.stats("skt15-cli", stream=True, decode=True)  # the streaming endpoint
        first = next(gen)
        gen.close()
        assert first["networks"]["eth0"]["rx_bytes"] >= SIZE

        row = _cli_stats(d, "skt15-cli")
        if row is not None:  # NET I/O column: "<rx> / <tx>", both non-zero
            rx, tx = (v.strip() for v in row["NetIO"].split("/"))
            assert rx.endswith("kB") and float(rx[:-2]) >= SIZE / 1000, row["NetIO"]
            assert tx not in ("0B", ""), row["NetIO"]

        # docker omits networks for --network host and none: no endpoint of their own
        for mode in ("host", "none"):
            c = cli.containers.run("busybox", ["sleep", "600"], detach=True,
                                   name=f"skt15-{mode}", network_mode=mode)
            made.append(c)
            assert "networks" not in cli.api.stats(c.id, stream=False, one_shot=True), mode
            row = _cli_stats(d, f"skt15-{mode}")
            if row is not None:
                assert row["NetIO"].replace(" ", "") == "0B/0B"
    finally:
        for c in made:
            c.remove(force=True)


def test_block_io_of_a_volume_write(d, cli):
    ct = cli.containers.run(
        "busybox", ["sh", "-c", "dd if=/dev/zero of=/data/f bs=64k count=64 conv=fsync"
                    " 2>/dev/null && touch /done; sleep 600"],
        detach=True, name="skt15-dd", volumes={"skt15vol": {"bind": "/data", "mode": "rw"}})
    try:
        until(lambda: _has(ct, "/done"), what="the dd")
        s = cli.api.stats(ct.id, stream=False, one_shot=True)
        entries = s["blkio_stats"]["io_service_bytes_recursive"]
        written = sum(e["value"] for e in entries or [] if e["op"].lower() == "write")
        if written == 0:
            pytest.skip(f"the kernel did not charge this fsync'd write to the container's "
                        f"cgroup (no block device under {d.root}, or writeback not charged "
                        f"here): {entries}")
        assert written >= 64 * 64 * 1024
        ops = {e["op"] for e in entries}
        if Path("/sys/fs/cgroup/cgroup.controllers").exists():  # pure v2: docker's lowercase
            assert ops == {"read", "write"}
        else:  # v1: the kernel's spelling, passed through
            assert ops >= {"Read", "Write"}
        row = _cli_stats(d, "skt15-dd")
        if row is not None:
            assert row["BlockIO"].split("/")[1].strip() not in ("0B", ""), row["BlockIO"]
    finally:
        ct.remove(force=True, v=True)
        cli.volumes.get("skt15vol").remove(force=True)
