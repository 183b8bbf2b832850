"""The image builder is deterministic: the same inputs give the same digests."""

import io
import json
import tarfile

from tests.images.builder import Image, file_layer, sha256, write_docker_save, write_oci_layout


def test_layers_are_reproducible():
    a = file_layer({"etc/hello": "hi\n", "bin/x": b"\x7fELF"})
    b = file_layer({"bin/x": b"\x7fELF", "etc/hello": "hi\n"})
    assert a.diff_id == b.diff_id
    assert sha256(a.gz) == sha256(b.gz)


def test_oci_layout_and_docker_save(tmp_path):
    img = Image(layers=[file_layer({"a": "1"}), file_layer({"b": "2"})])
    out = write_oci_layout({"t:1": img}, tmp_path / "oci")
    index = json.loads((out / "index.json").read_text())
    mdesc = index["manifests"][0]
    manifest = json.loads((out / "blobs/sha256" / mdesc["digest"][7:]).read_bytes())
    assert len(manifest["layers"]) == 2
    for d in manifest["layers"] + [manifest["config"]]:
        blob = (out / "blobs/sha256" / d["digest"][7:]).read_bytes()
        assert sha256(blob) == d["digest"] and len(blob) == d["size"]

    tarpath = write_docker_save({"t:1": img}, tmp_path / "save.tar")
    with tarfile.open(tarpath) as tar:
        m = json.load(tar.extractfile("manifest.json"))
        assert m[0]["RepoTags"] == ["t:1"]
        cfg = json.load(tar.extractfile(m[0]["Config"]))
        layer = tar.extractfile(m[0]["Layers"][0]).read()
        assert sha256(layer) == cfg["rootfs"]["diff_ids"][0]
        assert tarfile.open(fileobj=io.BytesIO(layer)).getnames() == ["a"]
