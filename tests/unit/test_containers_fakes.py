"""Fakes for the container engine's unit tests: a graph handing out plain directories."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import NotFound


@dataclass
class FakeImage:
    id: str
    config: dict = field(default_factory=dict)
    repo_tags: list[str] = field(default_factory=list)


class FakeGraph:
    """Images are names -> config; a container's rootfs is a fresh directory."""

    driver_name = "fake"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.images: dict[str, FakeImage] = {}
        self.layers: dict[str, Path] = {}
        self.mounted: dict[str, int] = {}

    def add(self, ref: str, config: dict) -> FakeImage:
        img = FakeImage("sha256:" + format(len(self.images) + 1, "064x"), config, [ref])
        self.images[ref] = img
        return img

    def get(self, ref: str) -> FakeImage:
        for r, img in self.images.items():
            if ref in (r, img.id, r.split(":")[0]):
                return img
        raise NotFound(f"No such image: {ref}")

    def create_rw_layer(self, cid: str, image_id: str) -> None:
        d = self.root / cid
        (d / "etc").mkdir(parents=True)
        (d / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                          "nobody:x:65534:65534::/:/bin/false\n")
        (d / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        (d / "data").mkdir()
        (d / "data" / "from-image").write_text("hello from the image\n")
        self.layers[cid] = d

    def mount(self, cid: str) -> Path:
        self.mounted[cid] = self.mounted.get(cid, 0) + 1
        return self.layers[cid]

    def unmount(self, cid: str) -> None:
        self.mounted[cid] = max(0, self.mounted.get(cid, 0) - 1)

    def remove_rw_layer(self, cid: str) -> None:
        d = self.layers.pop(cid, None)
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)
