"""Multi-layer, shared-base and multi-platform test images (on top of the busybox layer).

    shared_base(bb_dir) -> {"app1:latest": Image, "app2:latest": Image}  (same base layer)
    write_index_layout(ref, images, out) -> an OCI layout whose ref names an image index
      (one manifest per platform), for `skopeo copy --multi-arch all`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .builder import (
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    Image,
    Layer,
    canonical,
    file_layer,
    sha256,
)
from .layers import mk


def busybox_layer(bb_dir: Path) -> Layer:
    return Layer((bb_dir / "rootfs.tar").read_bytes())


def shared_base(bb_dir: Path) -> dict[str, Image]:
    base = busybox_layer(bb_dir)
    app1 = file_layer({"app/name": "one\n", "etc/motd": "app1\n"})
    app2 = Layer(mk([("d", "app"), ("f", "app/name", "two\n"), ("f", "etc/.wh.group", ""),
                     ("l", "app/sh", "/bin/busybox")]))
    return {
        "app1:latest": Image([base, app1], cmd=["cat", "/app/name"]),
        "app2:latest": Image([base, app2], cmd=["cat", "/app/name"]),
    }


def write_index_layout(ref: str, images: list[Image], out: Path) -> Path:
    """An OCI layout with `ref` naming an index of the given images (one per platform)."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> str:
        d = sha256(data)
        (blobs / d[7:]).write_bytes(data)
        return d

    descs = []
    for img in images:
        put(img.config())
        for lay in img.layers:
            put(lay.gz)
        m = img.manifest()
        descs.append({"mediaType": MT_OCI_MANIFEST, "digest": put(m), "size": len(m),
                      "platform": {"architecture": img.architecture, "os": img.os}})
    idx = canonical({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": descs})
    top = {"schemaVersion": 2, "manifests": [{
        "mediaType": MT_OCI_INDEX, "digest": put(idx), "size": len(idx),
        "annotations": {"org.opencontainers.image.ref.name": ref}}]}
    (out / "index.json").write_text(json.dumps(top))
    return out
