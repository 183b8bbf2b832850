"""Pull and push: the registry protocol meets the graph.

Pull: manifest (by tag or digest, every Accept type; an index resolves to linux/amd64), config,
then the layers the graph lacks, downloaded concurrently (at most N at a time, one download per
blob even when several pulls want it) and applied in order as they arrive. Everything is
digest-checked; a failure removes what this pull added (no partial image, no orphan layers or
blobs) so that a retry starts clean.

Push: each layer blob is HEAD-checked, mounted from another repository of the same registry
when the graph knows it lives there, or uploaded; then the config and the manifest.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.errors import InvalidParameter, NotFound

from . import reference
from .client import (
    INDEX_TYPES,
    MT_DOCKER_MANIFEST,
    MT_DOCKER_SCHEMA1,
    MT_DOCKER_SCHEMA1_SIGNED,
    MT_OCI_MANIFEST,
    Registry,
    is_insecure,
    retrying,
)
from .progress import LayerProgress, message, short

if TYPE_CHECKING:
    from engine.graph.graph import Graph
    from engine.graph.image import Image

log = logging.getLogger(__name__)

MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_TYPES = {
    MT_DOCKER_LAYER_GZIP, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, MT_OCI_LAYER_TAR,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
}

MAX_CONFIG = 32 << 20  # the config is read into memory: refuse absurd ones up front
_inflight_lock = threading.Lock()
_inflight: dict[tuple[int, str], Future] = {}  # (id(graph), digest) -> download


def registry_for(g: Graph, ref: reference.Reference, auth: dict | None) -> Registry:
    insecure = is_insecure(ref.domain, g.insecure_registries)
    loopback = is_insecure(ref.domain)
    # loopback: plain HTTP at once; other insecure registries: HTTPS first, then plain HTTP
    return Registry(ref.registry_host, auth=auth, insecure=insecure,
                    plain_http=True if loopback else (None if insecure else False),
                    transport=g.transport)


def _platform(platform: str | None) -> tuple[str, str, str | None]:
    parts = (platform or "linux/amd64").split("/")
    if len(parts) < 2:
        raise InvalidParameter(f"invalid platform {platform!r}: want os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def choose_manifest(index: dict, platform: str | None = None) -> dict:
    """The index entry for the platform (linux/amd64 by default)."""
    want_os, want_arch, want_variant = _platform(platform)
    for desc in index.get("manifests") or []:
        p = desc.get("platform") or {}
        if p.get("os") == want_os and p.get("architecture") == want_arch and (
            want_variant is None or p.get("variant") == want_variant
        ):
            return dict(desc)
    raise NotFound(f"no matching manifest for {want_os}/{want_arch}"
                   f"{'/' + want_variant if want_variant else ''} in the manifest list entries")


def pull(g: Graph, ref_s: str, *, auth: dict | None = None,
         progress: Callable[[dict], None] | None = None, platform: str | None = None,
         summary: bool = False) -> Image:
    """Pull; with summary=True the closing "Digest:"/"Status:" lines are emitted too.

    The daemon writes those closing lines itself (engine/daemon/router/images.py), so they are
    off by default; `Image.pull_status` says which Status docker would print.
    """
    emit = progress or (lambda d: None)
    ref = reference.parse(ref_s)
    with registry_for(g, ref, auth) as reg:
        return _pull(g, reg, ref, emit, platform, summary)


def _pull(g: Graph, reg: Registry, ref: reference.Reference, emit: Callable[[dict], None],
          platform: str | None, summary: bool) -> Image:
    repo = ref.path
    want = ref.digest or ref.tag or "latest"
    reg.ping()
    message(emit, f"Pulling from {ref.familiar_repository}", ref.tag or ref.digest)
    raw, mt, top_digest = reg.get_manifest(repo, want)
    manifests = [(raw, top_digest)]
    if mt in INDEX_TYPES:
        desc = choose_manifest(json.loads(raw), platform)
        raw, mt, digest = reg.get_manifest(repo, desc["digest"])
        manifests.append((raw, digest))
    if mt in (MT_DOCKER_SCHEMA1, MT_DOCKER_SCHEMA1_SIGNED):
        raise InvalidParameter(f"{ref.familiar()}: schema1 manifests are not supported "
                               "(push the image again with a current client)")
    if mt not in (MT_DOCKER_MANIFEST, MT_OCI_MANIFEST):
        raise InvalidParameter(f"{ref.familiar()}: unsupported manifest media type {mt!r}")
    manifest = json.loads(raw)
    cdesc = manifest.get("config") or {}
    layers = list(manifest.get("layers") or [])
    for la in layers:
        if la.get("mediaType") not in LAYER_TYPES:
            raise InvalidParameter(f"{ref.familiar()}: unsupported layer media type "
                                   f"{la.get('mediaType')!r}")
    config_digest = cdesc.get("digest", "")
    blob_keys = [config_digest] + [la["digest"] for la in layers] + [d for _, d in manifests]
    try:
        with g.pinned(blob_keys):
            img, existed = _pull_content(g, reg, ref, repo, manifests, cdesc, layers, emit)
    except BaseException:
        g.prune_layers()  # drop what this pull added: no partial image, no orphans
        raise
    what = ref.familiar()
    img.pull_status = (f"Image is up to date for {what}" if existed
                       else f"Downloaded newer image for {what}")
    if summary:
        message(emit, f"Digest: {top_digest}")
        message(emit, f"Status: {img.pull_status}")
    return img


def _pull_content(g: Graph, reg: Registry, ref: reference.Reference, repo: str,
                  manifests: list[tuple[bytes, str]], cdesc: dict, layers: list[dict],
                  emit: Callable[[dict], None]) -> tuple[Image, bool]:
    config_digest = cdesc.get("digest", "")
    if g.blobs.exists(config_digest):
        config_raw = g.blobs.read(config_digest)
    else:
        if int(cdesc.get("size") or 0) > MAX_CONFIG:
            raise InvalidParameter(f"{ref.familiar()}: image config of {cdesc.get('size')} "
                                   f"bytes is larger than {MAX_CONFIG}")
        config_raw = retrying(lambda: reg.get_blob(repo, config_digest, cdesc.get("size")))
    config = json.loads(config_raw)
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layers):
        raise InvalidParameter(f"{ref.familiar()}: manifest has {len(layers)} layers, "
                               f"config has {len(diff_ids)} diff IDs")
    from engine.graph.image import chain_ids

    chains = chain_ids(diff_ids)
    top_digest = manifests[0][1]
    with g.pinned(chains):
        _fetch_layers(g, reg, repo, layers, diff_ids, chains, emit)
        for m_raw, m_digest in manifests:
            if not g.blobs.exists(m_digest):
                g.blobs.put(m_raw, m_digest)
        for la in layers:
            g.add_blob_source(la["digest"], ref.repository)
        g.add_blob_source(config_digest, ref.repository)
        existed = g.db.one("SELECT 1 FROM refs WHERE name=? AND image_id=?",
                           (str(ref), "sha256:" + _sha(config_raw))) is not None
        img = g.register_image(
            config_raw,
            [str(ref)] if ref.tag and not ref.digest else [],
            [str(ref.with_digest(top_digest))],
        )
    return img, existed


def _sha(b: bytes) -> str:
    import hashlib

    return hashlib.sha256(b).hexdigest()


def _fetch_layers(g: Graph, reg: Registry, repo: str, layers: list[dict], diff_ids: list[str],
                  chains: list[str], emit: Callable[[dict], None]) -> None:
    need = [i for i in range(len(layers)) if not g.has_layer(chains[i])]
    for i, la in enumerate(layers):
        message(emit, "Already exists" if i not in need else "Pulling fs layer",
                short(la["digest"]))
    if not need:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, g.max_concurrent_downloads),
                              thread_name_prefix="skiff-pull")
    futures: dict[int, Future] = {}
    mine: list[tuple[int, str]] = []
    try:
        for i in need:
            la = layers[i]
            digest = la["digest"]
            key = (id(g), digest)
            with _inflight_lock:
                fut = _inflight.get(key)
                if fut is None:
                    fut = Future()
                    _inflight[key] = fut
                    mine.append(key)
                    pool.submit(_download, g, reg, repo, la, emit, fut)
            futures[i] = fut
        if getattr(g.driver, "independent_layers", False):
            _apply_parallel(g, layers, diff_ids, chains, need, futures, emit)
        else:
            _apply_in_order(g, layers, diff_ids, chains, need, futures, emit)
    except BaseException:
        for f in futures.values():
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        with _inflight_lock:
            for key in mine:
                _inflight.pop(key, None)


def _opener(g: Graph, digest: str, prog: LayerProgress) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        return _CountingFile(g.blobs.path(digest), prog.add)  # type: ignore[return-value]

    return opener


def _apply_in_order(g: Graph, layers: list[dict], diff_ids: list[str], chains: list[str],
                    need: list[int], futures: dict[int, Future],
                    emit: Callable[[dict], None]) -> None:
    """Each layer on a copy of its parent (vfs): strictly one after the other."""
    parent = chains[need[0] - 1] if need[0] > 0 else None
    for i in need:
        la = layers[i]
        digest = futures[i].result()
        sid = short(la["digest"])
        size = g.blobs.size(digest)
        prog = LayerProgress(emit, sid, "Extracting", size)
        g.register_layer(parent, diff_ids[i], _opener(g, digest, prog),
                         blob=(digest, la["mediaType"], size))
        message(emit, "Pull complete", sid)
        parent = chains[i]


def _apply_parallel(g: Graph, layers: list[dict], diff_ids: list[str], chains: list[str],
                    need: list[int], futures: dict[int, Future],
                    emit: Callable[[dict], None]) -> None:
    """Overlay layers are independent directories: extract them at once, commit in order.

    Each layer is extracted as soon as its download is done, beside the others (file
    creation is syscall-bound and runs outside the GIL); the graph records them base first,
    so a layer is only ever visible with all of its parents.
    """
    with g.chain_locks([chains[i] for i in need]):
        todo = [i for i in need if not g.has_layer(chains[i])]
        if not todo:
            return
        parent_chain = chains[todo[0] - 1] if todo[0] > 0 else None
        parent_row = g.layer(parent_chain) if parent_chain else None
        parent_cache = parent_row["cache_id"] if parent_row else None
        cids: list[str] = []
        committed: set[str] = set()
        pool = ThreadPoolExecutor(max_workers=min(4, len(todo)),
                                  thread_name_prefix="skiff-extract")
        try:
            for _ in todo:
                parent_cache = g.new_layer_dir(parent_cache)
                cids.append(parent_cache)

            def extract(i: int, cid: str) -> tuple[int, str, int]:
                digest = futures[i].result()
                size = g.blobs.size(digest)
                prog = LayerProgress(emit, short(layers[i]["digest"]), "Extracting", size)
                with _opener(g, digest, prog)() as f:
                    res = g.driver.apply_diff(cid, f, expect_diff_id=diff_ids[i],
                                              allow_devices=g.allow_devices)
                return res.size, digest, size

            jobs = [pool.submit(extract, i, cid) for i, cid in zip(todo, cids, strict=True)]
            for i, cid, job in zip(todo, cids, jobs, strict=True):
                used, digest, size = job.result()
                g.commit_layer(parent_chain, diff_ids[i], cid, used,
                               (digest, layers[i]["mediaType"], size))
                committed.add(cid)
                message(emit, "Pull complete", short(layers[i]["digest"]))
                parent_chain = chains[i]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for cid in cids:
                if cid not in committed:
                    g.driver.remove(cid)


def _download(g: Graph, reg: Registry, repo: str, la: dict, emit: Callable[[dict], None],
              fut: Future) -> None:
    digest, size = la["digest"], la.get("size")
    sid = short(digest)
    try:
        if g.blobs.exists(digest):
            message(emit, "Download complete", sid)
            fut.set_result(digest)
            return

        def once() -> str:
            prog = LayerProgress(emit, sid, "Downloading", size or 0)
            with g.blobs.writer(digest) as w:
                reg.fetch_blob(repo, digest, w, size=size, on_bytes=prog.add)
                message(emit, "Verifying Checksum", sid)
                return w.commit()

        d = retrying(once)
        message(emit, "Download complete", sid)
        fut.set_result(d)
    except BaseException as e:  # noqa: BLE001 - handed to the waiting puller
        fut.set_exception(e)


class _CountingFile:
    """A file whose reads report their size (extraction progress in compressed bytes)."""

    def __init__(self, path: Path, on_bytes: Callable[[int], None]) -> None:
        self.f = open(path, "rb", buffering=0)
        self.on_bytes = on_bytes

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.on_bytes(len(b))
        return b

    def readinto(self, b: Any) -> int:
        n = self.f.readinto(b)
        self.on_bytes(n or 0)
        return n or 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> _CountingFile:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()


# -- push -------------------------------------------------------------------------------------


def _compressed_blob(g: Graph, diff_id: str) -> dict:
    """A compressed blob for the layer, gzipping a plain one (loaded/imported) on demand."""
    b = g.layer_blob(diff_id)
    if b is not None and not b["media_type"].endswith(".tar"):
        return b
    if b is None and not g.blobs.exists(diff_id):
        raise NotFound(f"layer {diff_id}: no stored data to push")
    src = g.blobs.path(b["digest"] if b else diff_id)
    fd, name = tempfile.mkstemp(prefix="push-", dir=g.blobs.tmp)
    try:
        with open(src, "rb") as fin, open(fd, "wb") as raw, gzip.GzipFile(
            fileobj=raw, mode="wb", compresslevel=6, mtime=0
        ) as gz:
            shutil.copyfileobj(fin, gz, 1 << 20)
        size = os.path.getsize(name)
        digest = g.blobs.adopt(Path(name))
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    g._add_layer_blob(diff_id, (digest, MT_DOCKER_LAYER_GZIP, size))
    return {"digest": digest, "media_type": MT_DOCKER_LAYER_GZIP, "size": size}


def push(g: Graph, ref_s: str, *, auth: dict | None = None,
         progress: Callable[[dict], None] | None = None, summary: bool = False) -> dict:
    """Push; with summary=True the closing digest line and the aux message are emitted too
    (the daemon writes them itself from the returned {"Tag","Digest","Size"})."""
    emit = progress or (lambda d: None)
    ref = reference.parse(ref_s)
    if ref.digest:
        raise InvalidParameter(f"cannot push a digest reference: {ref_s}")
    img = g.get(str(ref))
    repo = ref.path
    tag = ref.tag or "latest"
    message(emit, f"The push refers to repository [{ref.repository}]")
    with registry_for(g, ref, auth) as reg:
        reg.ping()
        descs = []
        blobs = [_compressed_blob(g, d) for d in img.diff_ids]
        any_zstd = any(b["media_type"].endswith("zstd") for b in blobs)
        for b in blobs:
            mt = b["media_type"]
            if not any_zstd and mt == MT_OCI_LAYER_GZIP:
                mt = MT_DOCKER_LAYER_GZIP
            if any_zstd and mt == MT_DOCKER_LAYER_GZIP:
                mt = MT_OCI_LAYER_GZIP
            descs.append({"mediaType": mt, "size": b["size"], "digest": b["digest"]})
        for b in reversed(blobs):
            message(emit, "Preparing", short(b["digest"]))
        for b in reversed(blobs):
            _push_blob(g, reg, ref, b["digest"], b["size"], emit)
        config = img.config_raw
        if not reg.blob_exists(repo, img.id, scope=f"repository:{repo}:pull,push"):
            reg.upload_blob(repo, img.id, lambda: g.blobs.open(img.id), len(config))
        g.add_blob_source(img.id, ref.repository)
        manifest_type = MT_OCI_MANIFEST if any_zstd else MT_DOCKER_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": MT_OCI_CONFIG if any_zstd else MT_DOCKER_CONFIG,
                       "size": len(config), "digest": img.id},
            "layers": descs,
        }
        raw = json.dumps(manifest, indent=3).encode()
        digest = reg.put_manifest(repo, tag, raw, manifest_type)
    if not g.blobs.exists(digest):
        g.blobs.put(raw, digest)
    g.register_image(config, [], [str(ref.with_digest(digest))])
    aux = {"Tag": tag, "Digest": digest, "Size": len(raw)}
    if summary:
        message(emit, f"{tag}: digest: {digest} size: {len(raw)}")
        emit({"progressDetail": {}, "aux": aux})
    return aux


def _push_blob(g: Graph, reg: Registry, ref: reference.Reference, digest: str, size: int,
               emit: Callable[[dict], None]) -> None:
    repo = ref.path
    sid = short(digest)
    if reg.blob_exists(repo, digest, scope=f"repository:{repo}:pull,push"):
        message(emit, "Layer already exists", sid)
        g.add_blob_source(digest, ref.repository)
        return
    for src in g.blob_sources(digest):
        try:
            sref = reference.parse(src, default_tag=False)
        except InvalidParameter:
            continue
        if sref.domain != ref.domain or sref.path == repo:
            continue
        if reg.mount_blob(repo, digest, sref.path):
            message(emit, f"Mounted from {sref.familiar_repository}", sid)
            g.add_blob_source(digest, ref.repository)
            return
    prog = LayerProgress(emit, sid, "Pushing", size)
    reg.upload_blob(repo, digest, lambda: g.blobs.open(digest), size, on_bytes=prog.add)
    message(emit, "Pushed", sid)
    g.add_blob_source(digest, ref.repository)
