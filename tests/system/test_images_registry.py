"""Pull and push against a real distribution registry (Debian's docker-registry 2.8).

Test images are pushed with skopeo (docker schema2 from a docker-archive, OCI from a layout,
an index of two platforms) and pulled back through Graph on the overlay driver; then mounted
and run via chroot. Fault cases break the registry for real (a corrupted blob file, a proxy
that cuts the connection mid-blob, a stopped registry, a deleted blob) and check the error, that
nothing partial stays in the graph, and that a retry succeeds once the fault is gone.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from engine.errors import NotFound, Unavailable
from engine.graph import Graph
from engine.registry.client import DigestMismatch
from tests.images import multi
from tests.images.builder import Image, file_layer, write_docker_save
from tests.system.registry import CuttingProxy, LocalRegistry

pytestmark = pytest.mark.usefixtures("require_root")


@pytest.fixture
def graphs():
    """Factory of Graphs under /var/tmp/skt3-*; all closed (unmounted) and removed after."""
    made: list[tuple[Graph, Path]] = []

    def make(driver: str | None = None) -> Graph:
        root = Path(tempfile.mkdtemp(prefix="skt3-graph-", dir="/var/tmp"))
        g = Graph(root, driver)
        made.append((g, root))
        return g

    yield make
    for g, root in made:
        for rw in g.rw_layers():
            g.remove_rw_layer(rw["container_id"])
        g.close(unmount=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def reg():
    with LocalRegistry() as r:
        yield r


def assert_empty(g: Graph) -> None:
    assert g.list() == []
    assert g.layers() == []
    assert g.blobs.all() == []
    assert g.driver.ids() == []


def run_in(g: Graph, image: str, script: str, cid: str = "c" * 64) -> str:
    g.create_rw_layer(cid, image)
    root = g.mount(cid)
    try:
        out = subprocess.run(["chroot", str(root), "/bin/sh", "-c", script],
                             capture_output=True, text=True, check=True)
        return out.stdout
    finally:
        g.unmount(cid)
        g.remove_rw_layer(cid)


def test_pull_docker_schema2_and_run(reg, busybox_image, graphs):
    reg.push_docker_archive(busybox_image / "docker-save.tar", "lib/busybox:latest")
    g = graphs()
    msgs: list[dict] = []
    img = g.pull(f"{reg.host}/lib/busybox", progress=msgs.append, summary=True)
    assert img.repo_tags == [f"{reg.host}/lib/busybox:latest"]
    assert msgs[-1]["status"].startswith("Status: Downloaded newer image")
    top = img.repo_digests[0].split("@")[1]
    assert json.loads(g.blobs.read(top))["mediaType"] == \
        "application/vnd.docker.distribution.manifest.v2+json"
    assert run_in(g, img.id, "echo hi from $(uname -s); head -1 /etc/passwd") == \
        "hi from Linux\nroot:x:0:0:root:/root:/bin/sh\n"


def test_pull_oci_manifest_same_image_layers_once(reg, busybox_image, graphs):
    reg.push_oci_layout(busybox_image / "oci", "busybox:latest", "oci/busybox:1")
    reg.push_docker_archive(busybox_image / "docker-save.tar", "v2/busybox:1")
    g = graphs()
    a = g.pull(f"{reg.host}/oci/busybox:1")
    top = a.repo_digests[0].split("@")[1]
    assert json.loads(g.blobs.read(top))["mediaType"] == \
        "application/vnd.oci.image.manifest.v1+json"
    b = g.pull(f"{reg.host}/v2/busybox:1")
    assert a.id == b.id  # same config: one image, two names
    assert len(g.layers()) == 1
    assert sorted(g.get(a.id).repo_tags) == sorted([f"{reg.host}/oci/busybox:1",
                                                     f"{reg.host}/v2/busybox:1"])


def test_shared_base_layer_stored_once(reg, busybox_image, graphs, tmp_path):
    images = multi.shared_base(busybox_image)
    write_docker_save(images, tmp_path / "apps.tar")
    for name in images:
        reg.skopeo(f"docker-archive:{tmp_path / 'apps.tar'}:{name}", name, "v2s2")
    g = graphs()
    one = g.pull(f"{reg.host}/app1")
    msgs: list[dict] = []
    two = g.pull(f"{reg.host}/app2", progress=msgs.append, summary=True)
    assert [m["status"] for m in msgs].count("Already exists") == 1
    base = one.parent_chain[0]
    assert two.parent_chain[0] == base and len(g.layers()) == 3
    assert sorted(g.layer_users(base)) == sorted([one.id, two.id])
    assert len(g.driver.ids()) == 3
    assert run_in(g, one.id, "cat /app/name; cat /etc/motd") == "one\napp1\n"
    assert run_in(g, two.id, "cat /app/name; test -e /etc/group || echo no-group") == \
        "two\nno-group\n"
    g.remove(f"{reg.host}/app1")
    assert g.has_layer(base) and len(g.layers()) == 2
    assert run_in(g, two.id, "cat /app/name") == "two\n"
    g.remove(f"{reg.host}/app2")
    assert_empty(g)


def test_index_with_several_platforms_picks_linux_amd64(reg, busybox_image, graphs, tmp_path):
    amd = Image([multi.busybox_layer(busybox_image)])
    arm = Image([file_layer({"arm": "64"})], architecture="arm64")
    multi.write_index_layout("multi:latest", [arm, amd], tmp_path / "oci")
    reg.push_oci_layout(tmp_path / "oci", "multi:latest", keep_index=True)
    g = graphs()
    img = g.pull(f"{reg.host}/multi")
    assert img.config["architecture"] == "amd64"
    assert img.diff_ids == [amd.layers[0].diff_id]
    arm_img = g.pull(f"{reg.host}/multi", platform="linux/arm64")
    assert arm_img.config["architecture"] == "arm64"


def test_push_with_skiff_and_pull_back(reg, busybox_image, graphs):
    g = graphs()
    with open(busybox_image / "docker-save.tar", "rb") as f:
        g.load(f)
    g.tag("busybox:latest", f"{reg.host}/skiff/bb:1")
    msgs: list[dict] = []
    res = g.push(f"{reg.host}/skiff/bb:1", progress=msgs.append, summary=True)
    assert "Pushed" in [m.get("status") for m in msgs]
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                          f"docker://{reg.host}/skiff/bb:1"], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout)["Digest"] == res["Digest"]
    g.tag("busybox:latest", f"{reg.host}/other/bb:2")
    msgs.clear()
    g.push(f"{reg.host}/other/bb:2", progress=msgs.append, summary=True)
    assert f"Mounted from {reg.host}/skiff/bb" in [m.get("status") for m in msgs]
    g2 = graphs()
    img = g2.pull(f"{reg.host}/other/bb:2")
    assert img.id == g.get("busybox").id
    assert run_in(g2, img.id, "echo ok") == "ok\n"


def test_save_is_readable_by_skopeo_both_ways(reg, busybox_image, graphs, tmp_path):
    g = graphs()
    with open(busybox_image / "docker-save.tar", "rb") as f:
        g.load(f)
    with open(tmp_path / "save.tar", "wb") as f:
        g.save(["busybox:latest"], f)
    reg.skopeo(f"docker-archive:{tmp_path / 'save.tar'}", "saved/docker:1")
    reg.skopeo(f"oci-archive:{tmp_path / 'save.tar'}", "saved/oci:1")
    g2 = graphs()
    assert g2.pull(f"{reg.host}/saved/docker:1").id == g.get("busybox").id
    assert g2.pull(f"{reg.host}/saved/oci:1").id == g.get("busybox").id


# -- faults ---------------------------------------------------------------------------------------

def _layer_digest(g_or_layout: Path) -> str:
    idx = json.loads((g_or_layout / "index.json").read_text())
    m = json.loads((g_or_layout / "blobs/sha256" / idx["manifests"][0]["digest"][7:])
                   .read_text())
    return m["layers"][0]["digest"]


def test_fault_corrupt_blob(reg, busybox_image, graphs):
    reg.push_oci_layout(busybox_image / "oci", "busybox:latest", "f/corrupt:1")
    digest = _layer_digest(busybox_image / "oci")
    blob = reg.blob_path(digest)
    good = blob.read_bytes()
    blob.write_bytes(bytes(len(good)))  # same size, wrong bytes
    g = graphs()
    with pytest.raises(DigestMismatch, match=f"blob {digest}.*digest mismatch"):
        g.pull(f"{reg.host}/f/corrupt:1")
    assert_empty(g)
    blob.write_bytes(good)
    assert g.pull(f"{reg.host}/f/corrupt:1").diff_ids


def test_fault_registry_stops_mid_download(reg, busybox_image, graphs):
    reg.push_oci_layout(busybox_image / "oci", "busybox:latest", "f/cut:1")
    g = graphs()
    with CuttingProxy(reg.port, cut_after=200_000) as proxy:
        with pytest.raises(Unavailable, match="connection lost|Remote|closed|Read"):
            g.pull(f"{proxy.host}/f/cut:1")
        assert proxy.cuts >= 1
        assert_empty(g)
        proxy.cut_after = None
        assert g.pull(f"{proxy.host}/f/cut:1").diff_ids


def test_fault_registry_down(reg, busybox_image, graphs):
    reg.push_oci_layout(busybox_image / "oci", "busybox:latest", "f/down:1")
    reg.kill()
    g = graphs()
    with pytest.raises(Unavailable, match="ConnectError|refused"):
        g.pull(f"{reg.host}/f/down:1")
    assert_empty(g)
    reg.start()
    assert g.pull(f"{reg.host}/f/down:1").diff_ids


def test_fault_unknown_tag(reg, busybox_image, graphs):
    reg.push_oci_layout(busybox_image / "oci", "busybox:latest", "f/tag:1")
    g = graphs()
    with pytest.raises(NotFound, match=f"manifest for {reg.host}/f/tag:nope not found"):
        g.pull(f"{reg.host}/f/tag:nope")
    with pytest.raises(NotFound):
        g.pull(f"{reg.host}/f/no-such-repo:1")
    assert_empty(g)


def test_fault_manifest_layer_missing(reg, busybox_image, graphs):
    reg.push_oci_layout(busybox_image / "oci", "busybox:latest", "f/missing:1")
    digest = _layer_digest(busybox_image / "oci")
    blob_dir = reg.blob_path(digest).parent
    aside = blob_dir.with_name("aside")
    blob_dir.rename(aside)
    g = graphs()
    try:
        with pytest.raises(NotFound, match=f"blob {digest} not found"):
            g.pull(f"{reg.host}/f/missing:1")
        assert_empty(g)
    finally:
        aside.rename(blob_dir)
    assert g.pull(f"{reg.host}/f/missing:1").diff_ids


def test_vfs_driver_pull_and_run(reg, busybox_image, graphs):
    reg.push_docker_archive(busybox_image / "docker-save.tar", "vfs/busybox:1")
    g = graphs("vfs")
    img = g.pull(f"{reg.host}/vfs/busybox:1")
    assert run_in(g, img.id, "echo vfs") == "vfs\n"


def test_load_and_import_on_overlay(busybox_image, graphs):
    g = graphs("overlay")
    with open(busybox_image / "rootfs.tar", "rb") as f:
        img = g.import_tar(f, "imported:1", ['CMD ["sh"]'])
    assert run_in(g, img.id, "echo imported") == "imported\n"
    buf = io.BytesIO()
    g.save(["imported:1"], buf)
    g.remove("imported:1")
    assert_empty(g)
    assert g.load(io.BytesIO(buf.getvalue())) == ["Loaded image: imported:1"]


def test_pull_zstd_layers(reg, busybox_image, graphs):
    reg.skopeo(f"oci:{busybox_image / 'oci'}:busybox:latest", "zstd/busybox:1", "oci",
               "--dest-compress-format", "zstd")
    g = graphs()
    img = g.pull(f"{reg.host}/zstd/busybox:1")
    m = json.loads(g.blobs.read(img.repo_digests[0].split("@")[1]))
    assert m["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert run_in(g, img.id, "echo zstd") == "zstd\n"


def test_concurrent_pulls_on_overlay_share_layers(reg, busybox_image, graphs, tmp_path):
    import threading

    images = multi.shared_base(busybox_image)
    write_docker_save(images, tmp_path / "apps.tar")
    for name in images:
        reg.skopeo(f"docker-archive:{tmp_path / 'apps.tar'}:{name}", name, "v2s2")
    g = graphs("overlay")
    errors: list[BaseException] = []

    def pull(name: str) -> None:
        try:
            g.pull(f"{reg.host}/{name}")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=pull, args=(n,)) for n in ("app1", "app2", "app1", "app2")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert len(g.layers()) == 3 and len(g.list()) == 2
    assert sorted(g.driver.ids()) == sorted(r["cache_id"] for r in g.layers())
    assert run_in(g, f"{reg.host}/app2", "cat /app/name") == "two\n"
