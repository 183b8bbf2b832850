"""The graph on the vfs driver: import/load/save, references, rmi semantics and refcounts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from engine.errors import Conflict, InvalidParameter, NotFound
from engine.graph import Graph, chain_ids
from engine.graph.archive import LayerError
from tests.images.builder import Image, file_layer, write_docker_save, write_oci_layout

BASE = file_layer({"bin/sh": "#!fake", "etc/os-release": "ID=skiff\n"})
APP1 = file_layer({"app/one": "1"})
APP2 = file_layer({"app/two": "2"})


@pytest.fixture
def g(tmp_path: Path):
    graph = Graph(tmp_path / "root", "vfs")
    yield graph
    graph.close()


def load(g: Graph, images: dict[str, Image], tmp_path: Path, oci: bool = False) -> list[str]:
    if oci:
        layout = write_oci_layout(images, tmp_path / "layout")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(layout, arcname=".")
        buf.seek(0)
        return g.load(buf)
    with open(write_docker_save(images, tmp_path / "save.tar"), "rb") as f:
        return g.load(f)


def test_load_docker_save_and_get(g, tmp_path):
    msgs = load(g, {"team/app:1": Image([BASE, APP1])}, tmp_path)
    assert msgs == ["Loaded image: team/app:1"]
    img = g.get("team/app:1")
    assert img.repo_tags == ["team/app:1"]
    assert img.diff_ids == [BASE.diff_id, APP1.diff_id]
    assert img.parent_chain == chain_ids([BASE.diff_id, APP1.diff_id])
    assert g.get(img.id).id == img.id
    assert g.get(img.id[7:19]).id == img.id  # short ID
    assert g.get("docker.io/team/app:1").id == img.id
    summary = img.to_docker()
    assert summary["RepoTags"] == ["team/app:1"] and summary["Size"] == img.size > 0
    detail = img.to_docker(inspect=True)
    assert detail["RootFS"]["Layers"] == img.diff_ids and detail["Os"] == "linux"
    assert detail["GraphDriver"]["Name"] == "vfs"


def test_load_oci_layout(g, tmp_path):
    msgs = load(g, {"busybox:latest": Image([BASE])}, tmp_path, oci=True)
    assert msgs == ["Loaded image: busybox:latest"]
    assert g.get("busybox").diff_ids == [BASE.diff_id]


def test_not_found_message(g):
    with pytest.raises(NotFound, match="No such image: busybox:latest"):
        g.get("busybox")


def test_shared_base_layer_is_stored_once_and_refcounted(g, tmp_path):
    load(g, {"a:1": Image([BASE, APP1]), "b:1": Image([BASE, APP2])}, tmp_path)
    base_chain = BASE.diff_id
    assert len(g.layers()) == 3
    a, b = g.get("a:1"), g.get("b:1")
    assert sorted(g.layer_users(base_chain)) == sorted([a.id, b.id])
    out = g.remove("a:1")
    assert {"Untagged": "a:1"} in out and {"Deleted": a.id} in out
    assert g.has_layer(base_chain) and len(g.layers()) == 2
    assert g.layer_users(base_chain) == [b.id]
    g.remove("b:1")
    assert g.layers() == [] and g.list() == []
    assert g.blobs.all() == []


def test_untag_only_while_other_tags_remain(g, tmp_path):
    load(g, {"a:1": Image([BASE])}, tmp_path)
    g.tag("a:1", "a:2")
    iid = g.get("a:1").id
    assert g.remove("a:1") == [{"Untagged": "a:1"}]
    assert g.get("a:2").id == iid
    with pytest.raises(InvalidParameter):
        g.tag("a:2", "a@sha256:" + "0" * 64)


def test_remove_by_id_with_several_tags_needs_force(g, tmp_path):
    load(g, {"a:1": Image([BASE])}, tmp_path)
    g.tag("a:1", "b:1")
    iid = g.get("a:1").id
    with pytest.raises(Conflict, match="must be forced"):
        g.remove(iid)
    out = g.remove(iid, force=True)
    assert {"Deleted": iid} in out and len([o for o in out if "Untagged" in o]) == 2


def test_rw_layer_keeps_image_layers_and_blocks_rmi(g, tmp_path):
    load(g, {"a:1": Image([BASE, APP1])}, tmp_path)
    img = g.get("a:1")
    cid = "c" * 64
    g.create_rw_layer(cid, "a:1")
    root = g.mount(cid)
    assert (root / "app/one").read_text() == "1"
    (root / "new").write_text("n")
    buf = io.BytesIO()
    g.rw_layer_diff(cid, buf)
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(buf.getvalue()))] == ["new"]
    with pytest.raises(Conflict, match="container"):
        g.remove("a:1")
    out = g.remove(img.id, force=True)
    assert {"Deleted": img.id} in out
    assert len(g.layers()) == 2  # still under the container
    g.unmount(cid)
    g.remove_rw_layer(cid)
    assert g.layers() == []
    g.remove_rw_layer(cid)  # idempotent


def test_import_with_changes(g, tmp_path):
    buf = io.BytesIO(BASE.tar)
    img = g.import_tar(buf, "imported:v1", ['CMD ["/bin/sh"]', "ENV A=1", "EXPOSE 80",
                                            "WORKDIR /app", "LABEL x=y"])
    cfg = img.config["config"]
    assert cfg["Cmd"] == ["/bin/sh"] and cfg["Env"] == ["A=1"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["WorkingDir"] == "/app"
    assert img.diff_ids == [BASE.diff_id] and img.repo_tags == ["imported:v1"]
    with pytest.raises(InvalidParameter, match="not a valid change"):
        g.import_tar(io.BytesIO(BASE.tar), None, ["FROB x"])


def test_import_refuses_escape_and_leaves_nothing(g):
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tar:
        info = tarfile.TarInfo("../evil")
        tar.addfile(info)
    bad.seek(0)
    with pytest.raises(LayerError):
        g.import_tar(bad, "bad:1")
    assert g.list() == [] and g.layers() == [] and g.driver.ids() == []
    assert list(g.blobs.tmp.iterdir()) == []


def test_save_roundtrip_both_formats(g, tmp_path):
    load(g, {"a:1": Image([BASE, APP1])}, tmp_path)
    out = io.BytesIO()
    g.save(["a:1"], out)
    tar = tarfile.open(fileobj=io.BytesIO(out.getvalue()))
    names = tar.getnames()
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= set(names)
    manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest[0]["RepoTags"] == ["a:1"] and len(manifest[0]["Layers"]) == 2
    g2 = Graph(tmp_path / "other", "vfs")
    try:
        assert g2.load(io.BytesIO(out.getvalue())) == ["Loaded image: a:1"]
        assert g2.get("a:1").id == g.get("a:1").id
    finally:
        g2.close()


def test_load_rejects_bad_archives(g):
    with pytest.raises(InvalidParameter):
        g.load(io.BytesIO(b"garbage" * 100))
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w"):
        pass
    with pytest.raises(InvalidParameter, match="manifest.json"):
        g.load(io.BytesIO(empty.getvalue()))
    assert g.list() == []


def test_load_diff_id_mismatch_leaves_nothing(g, tmp_path):
    img = Image([BASE, APP1])
    path = write_docker_save({"a:1": img}, tmp_path / "s.tar")
    raw = path.read_bytes().replace(b"#!fake", b"#!evil")  # layer bytes no longer match
    with pytest.raises(LayerError, match="diff ID mismatch"):
        g.load(io.BytesIO(raw))
    assert g.list() == [] and g.layers() == [] and g.driver.ids() == []


def test_reopen_keeps_state_and_reconciles_orphans(tmp_path):
    g = Graph(tmp_path / "root", "vfs")
    load(g, {"a:1": Image([BASE])}, tmp_path)
    iid = g.get("a:1").id
    g.driver.create("f" * 64)  # an orphan, as after a crash during apply
    (g.driver.home / ".tmp-half").mkdir()
    g.close()
    g = Graph(tmp_path / "root", "vfs")
    try:
        assert g.get("a:1").id == iid
        assert "f" * 64 not in g.driver.ids()
        assert not (g.driver.home / ".tmp-half").exists()
    finally:
        g.close()


def test_history_shape(g, tmp_path):
    load(g, {"a:1": Image([BASE, APP1])}, tmp_path)
    img = g.get("a:1")
    h = img.history()
    assert len(h) == 2 and h[0]["Id"] == img.id and h[1]["Id"] == "<missing>"
    assert h[0]["Tags"] == ["a:1"] and h[0]["CreatedBy"] == "skiff tests/images"
    assert sum(r["Size"] for r in h) == img.size


def test_prune_images(g, tmp_path):
    load(g, {"a:1": Image([BASE, APP1]), "b:1": Image([BASE, APP2])}, tmp_path)
    a = g.get("a:1")
    g.remove("a:1")  # gone entirely (it was a's only tag)
    load(g, {"a:1": Image([BASE, APP1])}, tmp_path)
    g.tag("a:1", "c:1")
    g.remove("a:1")  # still tagged c:1
    assert g.prune_images() == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    g.create_rw_layer("d" * 64, "b:1")
    res = g.prune_images(all=True)
    assert {"Deleted": a.id} in res["ImagesDeleted"] and res["SpaceReclaimed"] > 0
    assert [i.repo_tags for i in g.list()] == [["b:1"]]  # in use by a container
