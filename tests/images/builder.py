"""Write images reproducibly: deterministic tars, an OCI image layout and a `docker save` tar.

Everything here is a pure function of its inputs (file contents, modes, a fixed timestamp), so
two builds of the same inputs have the same digests. Later tests compose multi-layer images from
`Layer` objects (e.g. the busybox base plus a layer of their own).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

EPOCH = 1700000000  # fixed mtime for every entry: reproducible digests
CREATED = "2023-11-14T22:13:20Z"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_directory(root: Path) -> bytes:
    """A deterministic tar of a directory: sorted, uid/gid 0, fixed mtime, no user names."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = sorted(p for p in root.rglob("*"))
        for p in paths:
            rel = p.relative_to(root).as_posix()
            info = tar.gettarinfo(str(p), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = EPOCH
            info.pax_headers = {}
            if info.isreg():
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


@dataclass
class Layer:
    tar: bytes  # uncompressed layer tar

    @property
    def diff_id(self) -> str:
        return sha256(self.tar)

    @property
    def gz(self) -> bytes:
        return gzip_bytes(self.tar)


@dataclass
class Image:
    layers: list[Layer]
    cmd: list[str] = field(default_factory=lambda: ["sh"])
    env: list[str] = field(
        default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    )
    exposed_ports: list[str] = field(default_factory=list)
    architecture: str = "amd64"
    os: str = "linux"

    def config(self) -> bytes:
        cfg: dict = {"Env": self.env, "Cmd": self.cmd}
        if self.exposed_ports:
            cfg["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        doc = {
            "architecture": self.architecture,
            "os": self.os,
            "created": CREATED,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in self.layers]},
            "history": [{"created": CREATED, "created_by": "skiff tests/images"} for _ in self.layers],
        }
        return canonical(doc)

    def manifest(self, docker: bool = False) -> bytes:
        config = self.config()
        doc = {
            "schemaVersion": 2,
            "mediaType": MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST,
            "config": {
                "mediaType": MT_DOCKER_CONFIG if docker else MT_OCI_CONFIG,
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": MT_DOCKER_LAYER if docker else MT_OCI_LAYER_GZIP,
                    "digest": sha256(lay.gz),
                    "size": len(lay.gz),
                }
                for lay in self.layers
            ],
        }
        return canonical(doc)


def canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def write_oci_layout(images: dict[str, Image], out: Path) -> Path:
    """An OCI image layout; keys of `images` become `org.opencontainers.image.ref.name`."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> str:
        d = sha256(data)
        (blobs / d.split(":", 1)[1]).write_bytes(data)
        return d

    manifests = []
    for ref, img in sorted(images.items()):
        put(img.config())
        for lay in img.layers:
            put(lay.gz)
        m = img.manifest()
        manifests.append(
            {
                "mediaType": MT_OCI_MANIFEST,
                "digest": put(m),
                "size": len(m),
                "platform": {"architecture": img.architecture, "os": img.os},
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        )
    (out / "index.json").write_bytes(canonical({"schemaVersion": 2, "manifests": manifests}))
    return out


def write_docker_save(images: dict[str, Image], out: Path) -> Path:
    """A `docker save` tarball (manifest.json + config + <id>/layer.tar) for `repo:tag` keys."""
    members: dict[str, bytes] = {}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for repotag, img in sorted(images.items()):
        config = img.config()
        cfg_name = sha256(config).split(":", 1)[1] + ".json"
        members[cfg_name] = config
        layer_paths = []
        for lay in img.layers:
            lid = lay.diff_id.split(":", 1)[1]
            members[f"{lid}/layer.tar"] = lay.tar
            members[f"{lid}/VERSION"] = b"1.0"
            layer_paths.append(f"{lid}/layer.tar")
        manifest.append({"Config": cfg_name, "RepoTags": [repotag], "Layers": layer_paths})
        repo, _, tag = repotag.rpartition(":")
        repositories.setdefault(repo, {})[tag] = img.layers[-1].diff_id.split(":", 1)[1]
    members["manifest.json"] = canonical(manifest)
    members["repositories"] = canonical(repositories)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        dirs = sorted({name.split("/")[0] for name in members if "/" in name})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = EPOCH
            tar.addfile(info)
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))
    out.write_bytes(buf.getvalue())
    return out


def file_layer(files: dict[str, bytes | str], mode: int = 0o644) -> Layer:
    """A layer made of the given files (parents created as directories)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for name in sorted(files):
            parts = name.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = EPOCH
                    tar.addfile(info)
            data = files[name]
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name.strip("/"))
            info.size = len(raw)
            info.mode = mode
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(raw))
    return Layer(buf.getvalue())


def ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


__all__ = [
    "Image",
    "Layer",
    "file_layer",
    "tar_directory",
    "write_oci_layout",
    "write_docker_save",
    "sha256",
    "ensure_dir",
]
