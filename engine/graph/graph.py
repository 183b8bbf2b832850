"""The graph: images, their layers and references, on a graphdriver and a blob store.

One Graph per state root (root/graph.db, root/blobs, root/<driver>). Layers are created once per
chain ID and shared by every image whose chain passes through them; reference counts are derived
from the image and container rows (see db.py), so removing images in any order frees exactly
the layers nobody else stands on. Registry work (pull/push) lives in engine.registry; save/load
formats in engine.graph.tarfmt.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.errors import Conflict, InvalidParameter, NotFound
from engine.registry import reference

from .blobs import BlobStore, sha256_bytes
from .db import Database
from .image import Image, chain_ids

if TYPE_CHECKING:
    from engine.drivers.graph import GraphDriver

log = logging.getLogger(__name__)
Progress = Callable[[dict], None]

MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def layer_media_type_of(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"\x1f\x8b"):
        return MT_DOCKER_LAYER_GZIP
    if head == b"\x28\xb5\x2f\xfd":
        return MT_OCI_LAYER_ZSTD
    return MT_OCI_LAYER_TAR


class Graph:
    def __init__(
        self,
        root: Path,
        driver: str | None = None,
        *,
        insecure_registries: list[str] | tuple[str, ...] = (),
        allow_devices: bool = False,
        max_concurrent_downloads: int = 3,
        transport: Any = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.root / "graph.db")
        self.blobs = BlobStore(self.root)
        self.blobs.cleanup_tmp()
        from engine.drivers.graph import new_driver  # the drivers import engine.graph.archive

        self.driver: GraphDriver = new_driver(driver, self.root)
        self.insecure_registries = list(insecure_registries)
        self.allow_devices = allow_devices
        self.max_concurrent_downloads = max_concurrent_downloads
        self.transport = transport  # an httpx transport for tests (MockTransport)
        self._locks_lock = threading.Lock()
        self._chain_locks: dict[str, threading.Lock] = {}
        self._pinned: dict[str, int] = {}  # chain IDs and blob digests in use by running ops
        self._reconcile()

    # -- housekeeping ---------------------------------------------------------------------------
    def _reconcile(self) -> None:
        """After a crash: drop driver dirs no row names and layers nothing references."""
        known = {r["cache_id"] for r in self.db.query("SELECT cache_id FROM layers")}
        known |= {r["cache_id"] for r in self.db.query("SELECT cache_id FROM rw_layers")}
        self.driver.cleanup_tmp()
        for cid in self.driver.ids():
            if cid not in known:
                log.info("graph: removing orphaned driver layer %s", cid)
                self.driver.remove(cid)
        self.prune_layers()

    def close(self, unmount: bool = False) -> None:
        """Close the database. Mounts stay by default: live containers (held by their
        monitors) keep their root filesystems across a daemon restart; unmount=True is for
        tests and full teardown."""
        if unmount:
            self.driver.cleanup()
        self.db.close()

    @contextmanager
    def pinned(self, keys: list[str] | set[str]):
        """Keep layers/blobs of an operation in progress out of prune's reach."""
        keys = list(keys)
        with self._locks_lock:
            for k in keys:
                self._pinned[k] = self._pinned.get(k, 0) + 1
        try:
            yield
        finally:
            with self._locks_lock:
                for k in keys:
                    n = self._pinned.get(k, 0) - 1
                    if n <= 0:
                        self._pinned.pop(k, None)
                    else:
                        self._pinned[k] = n

    def _chain_lock(self, chain_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._chain_locks.setdefault(chain_id, threading.Lock())

    # -- layers -----------------------------------------------------------------------------
    def layer(self, chain_id: str) -> dict | None:
        r = self.db.one("SELECT * FROM layers WHERE chain_id=?", (chain_id,))
        return dict(r) if r else None

    def has_layer(self, chain_id: str) -> bool:
        return self.layer(chain_id) is not None

    def register_layer(
        self,
        parent_chain: str | None,
        diff_id: str | None,
        opener: Callable[[], BinaryIO],
        *,
        blob: tuple[str, str, int] | None = None,
    ) -> str:
        """Create the layer for (parent, diff_id) unless it exists; returns its chain ID.

        `opener` returns the layer data (any compression); it is applied with the diff ID
        checked. `blob` = (digest, media type, size) of a stored blob holding the layer.
        With diff_id None (import), the diff ID is learnt from the data.
        """
        if diff_id is not None:
            chain = chain_ids_from(parent_chain, diff_id)
            with self._chain_lock(chain):
                if self.has_layer(chain):
                    self._add_layer_blob(diff_id, blob)
                    return chain
                return self._create_layer(parent_chain, diff_id, opener, blob)
        return self._create_layer(parent_chain, None, opener, blob)

    def _create_layer(self, parent_chain: str | None, diff_id: str | None,
                      opener: Callable[[], BinaryIO], blob: tuple[str, str, int] | None) -> str:
        parent_cache = None
        if parent_chain is not None:
            p = self.layer(parent_chain)
            if p is None:
                raise NotFound(f"parent layer {parent_chain} not found")
            parent_cache = p["cache_id"]
        cache_id = self.new_layer_dir(parent_cache)
        try:
            with opener() as f:
                res = self.driver.apply_diff(cache_id, f, expect_diff_id=diff_id,
                                             allow_devices=self.allow_devices)
        except BaseException:
            self.driver.remove(cache_id)
            raise
        return self.commit_layer(parent_chain, res.diff_id, cache_id, res.size, blob)

    # The three steps of register_layer, for callers that apply several layers at once (pull on
    # a driver whose layers are independent directories, see engine.registry.distribution).
    def new_layer_dir(self, parent_cache: str | None) -> str:
        """An empty driver layer over `parent_cache`; its cache ID (not yet in the graph)."""
        cache_id = secrets.token_hex(32)
        self.driver.create(cache_id, parent_cache)
        return cache_id

    def commit_layer(self, parent_chain: str | None, diff_id: str, cache_id: str, size: int,
                     blob: tuple[str, str, int] | None) -> str:
        """Record an applied layer; if the chain appeared meanwhile, drop this copy."""
        chain = chain_ids_from(parent_chain, diff_id)
        with self.db.tx() as c:
            if c.execute("SELECT 1 FROM layers WHERE chain_id=?", (chain,)).fetchone():
                created = False
            else:
                c.execute(
                    "INSERT INTO layers(chain_id, diff_id, parent, cache_id, size, created) "
                    "VALUES (?,?,?,?,?,?)",
                    (chain, diff_id, parent_chain, cache_id, size, time.time()),
                )
                created = True
        if not created:
            self.driver.remove(cache_id)
        self._add_layer_blob(diff_id, blob)
        return chain

    @contextmanager
    def chain_locks(self, chains: list[str]):
        """Hold the creation locks of these chains (taken base first: no lock-order cycles)."""
        locks = [self._chain_lock(c) for c in chains]
        taken = []
        try:
            for lk in locks:
                lk.acquire()
                taken.append(lk)
            yield
        finally:
            for lk in reversed(taken):
                lk.release()

    def _add_layer_blob(self, diff_id: str, blob: tuple[str, str, int] | None) -> None:
        if blob is None:
            return
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO layer_blobs(diff_id, digest, media_type, size) "
                      "VALUES (?,?,?,?)", (diff_id, blob[0], blob[1], blob[2]))

    def layer_blob(self, diff_id: str) -> dict | None:
        """A stored blob holding this diff, compressed ones first."""
        for r in self.db.query("SELECT * FROM layer_blobs WHERE diff_id=? ORDER BY "
                               "(media_type LIKE '%gzip') DESC", (diff_id,)):
            if self.blobs.exists(r["digest"]):
                return dict(r)
        return None

    def add_blob_source(self, digest: str, repository: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO blob_sources(digest, repository) VALUES (?,?)",
                      (digest, repository))

    def blob_sources(self, digest: str) -> list[str]:
        return [r["repository"] for r in
                self.db.query("SELECT repository FROM blob_sources WHERE digest=?", (digest,))]

    def layer_users(self, chain_id: str) -> list[str]:
        """IDs of the images whose layer chain includes this layer (shared layers)."""
        return [r["image_id"] for r in self.db.query(
            "SELECT DISTINCT image_id FROM image_layers WHERE chain_id=? ORDER BY image_id",
            (chain_id,))]

    def layers(self) -> list[dict]:
        return [dict(r) for r in self.db.query("SELECT * FROM layers ORDER BY created")]

    def prune_layers(self) -> list[str]:
        """Remove layers no image, no container and no running operation stands on."""
        removed: list[str] = []
        while True:
            with self._locks_lock:
                pinned = set(self._pinned)
            with self.db.tx() as c:
                rows = c.execute(
                    "SELECT chain_id, cache_id FROM layers l WHERE "
                    "NOT EXISTS (SELECT 1 FROM image_layers i WHERE i.chain_id=l.chain_id) AND "
                    "NOT EXISTS (SELECT 1 FROM rw_layers r WHERE r.chain_id=l.chain_id) AND "
                    "NOT EXISTS (SELECT 1 FROM layers k WHERE k.parent=l.chain_id)"
                ).fetchall()
                victims = [r for r in rows if r["chain_id"] not in pinned]
                for r in victims:
                    c.execute("DELETE FROM layers WHERE chain_id=?", (r["chain_id"],))
            if not victims:
                break
            for r in victims:
                self.driver.remove(r["cache_id"])
                removed.append(r["chain_id"])
        self.prune_blobs()
        return removed

    def prune_blobs(self) -> list[str]:
        """Delete blobs nothing refers to (configs, manifests, layer blobs of live layers)."""
        with self._locks_lock:
            pinned = set(self._pinned)
        with self.db.tx() as c:
            c.execute("DELETE FROM layer_blobs WHERE diff_id NOT IN (SELECT diff_id FROM layers)")
            keep = {r[0] for r in c.execute("SELECT id FROM images")}
            keep |= {r[0] for r in c.execute("SELECT digest FROM layer_blobs")}
            keep |= {r[0].rpartition("@")[2] for r in
                     c.execute("SELECT name FROM refs WHERE kind='digest'")}
            gone = [d for d in self.blobs.all() if d not in keep and d not in pinned]
            for d in gone:
                self.blobs.delete(d)
            c.execute("DELETE FROM blob_sources WHERE digest NOT IN "
                      "(SELECT digest FROM layer_blobs) AND digest NOT IN (SELECT id FROM images)")
        return gone

    # -- images -----------------------------------------------------------------------------
    def register_image(self, config_raw: bytes, refs: list[str] = (),  # type: ignore[assignment]
                       digest_refs: list[str] = (), parent: str = "") -> Image:  # type: ignore[assignment]
        """Record an image whose layers are all registered; (re)points the given references."""
        config = json.loads(config_raw)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        chains = chain_ids(diff_ids)
        image_id = self.blobs.put(config_raw) if not self.blobs.exists(
            sha256_bytes(config_raw)) else sha256_bytes(config_raw)
        now = time.time()
        with self.db.tx() as c:
            size = 0
            for ch in chains:
                r = c.execute("SELECT size FROM layers WHERE chain_id=?", (ch,)).fetchone()
                if r is None:
                    raise NotFound(f"layer {ch} of image {image_id} is not in the graph")
                size += r["size"]
            if not c.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone():
                c.execute("INSERT INTO images(id, parent, created, size, added) VALUES (?,?,?,?,?)",
                          (image_id, parent, str(config.get("created") or ""), size, now))
                c.executemany("INSERT INTO image_layers(image_id, idx, chain_id) VALUES (?,?,?)",
                              [(image_id, i, ch) for i, ch in enumerate(chains)])
            for name in refs:
                c.execute("INSERT OR REPLACE INTO refs(name, image_id, kind, added) "
                          "VALUES (?,?,?,?)", (name, image_id, "tag", now))
            for name in digest_refs:
                c.execute("INSERT OR REPLACE INTO refs(name, image_id, kind, added) "
                          "VALUES (?,?,?,?)", (name, image_id, "digest", now))
        return self._image(image_id)

    def _image(self, image_id: str) -> Image:
        row = self.db.one("SELECT * FROM images WHERE id=?", (image_id,))
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        refs = self.db.query("SELECT name, kind FROM refs WHERE image_id=? ORDER BY added, name",
                             (image_id,))
        tags = [reference.parse(r["name"]).familiar() for r in refs if r["kind"] == "tag"]
        digests = [reference.parse(r["name"]).familiar() for r in refs if r["kind"] == "digest"]
        rows = self.db.query(
            "SELECT i.chain_id, l.size FROM image_layers i LEFT JOIN layers l "
            "ON l.chain_id=i.chain_id WHERE i.image_id=? ORDER BY i.idx", (image_id,))
        chain = [r["chain_id"] for r in rows]
        data: dict[str, str] = {}
        if chain:
            top = self.layer(chain[-1])
            if top:
                data = {"UpperDir": str(self.driver.layer_dir(top["cache_id"]))} if \
                    self.driver.exists(top["cache_id"]) else {}
        return Image(id=image_id, config_raw=self.blobs.read(image_id), repo_tags=tags,
                     repo_digests=digests, size=row["size"], parent=row["parent"],
                     layer_chain=chain, driver=self.driver.name, driver_data=data,
                     layer_sizes=[r["size"] or 0 for r in rows])

    def exists(self, ref_or_id: str) -> bool:
        try:
            self.resolve(ref_or_id)
            return True
        except NotFound:
            return False

    def resolve(self, ref_or_id: str) -> str:
        """The image ID a reference, an ID or an unambiguous ID prefix names."""
        s = ref_or_id.strip()
        if re.fullmatch(r"(sha256:)?[0-9a-f]{64}", s):
            iid = s if s.startswith("sha256:") else "sha256:" + s
            if self.db.one("SELECT 1 FROM images WHERE id=?", (iid,)):
                return iid
            raise NotFound(f"No such image: {ref_or_id}")
        shown = s
        try:
            ref = reference.parse(s)
            shown = ref.familiar()
            r = self.db.one("SELECT image_id FROM refs WHERE name=?", (str(ref),))
            if r:
                return str(r["image_id"])
            if ref.digest and ref.tag:
                r = self.db.one("SELECT image_id FROM refs WHERE name=?",
                                (str(ref.with_digest(ref.digest)),))
                if r:
                    return str(r["image_id"])
        except InvalidParameter:
            pass
        prefix = s[7:] if s.startswith("sha256:") else s
        if re.fullmatch(r"[0-9a-f]{1,63}", prefix):
            rows = self.db.query("SELECT id FROM images WHERE id LIKE ?",
                                 (f"sha256:{prefix}%",))
            if len(rows) == 1:
                return str(rows[0]["id"])
            if len(rows) > 1:
                raise NotFound(f"No such image: {ref_or_id} (ambiguous ID prefix)")
        raise NotFound(f"No such image: {shown}")

    def get(self, ref_or_id: str) -> Image:
        return self._image(self.resolve(ref_or_id))

    def tag(self, src: str, ref: str) -> None:
        image_id = self.resolve(src)
        r = reference.parse(ref)
        if r.digest:
            raise InvalidParameter(f"refusing to create a tag with a digest reference: {ref}")
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO refs(name, image_id, kind, added) VALUES (?,?,?,?)",
                      (str(r), image_id, "tag", time.time()))

    def containers_using(self, image_id: str) -> list[str]:
        return [r["container_id"] for r in self.db.query(
            "SELECT container_id FROM rw_layers WHERE image_id=?", (image_id,))]

    def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict]:
        """docker rmi: untag a reference; delete the image when nothing else names it."""
        image_id = self.resolve(ref)
        out: list[dict] = []
        by_id = _looks_like_id(ref, image_id)
        refs = self.db.query("SELECT name, kind FROM refs WHERE image_id=?", (image_id,))
        users = self.containers_using(image_id)
        if by_id:
            tags = [r for r in refs if r["kind"] == "tag"]
            if len(tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                               "image is referenced in multiple repositories")
            if users and not force:
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                               f"image is being used by stopped container {users[0][:12]}")
            to_untag = [r["name"] for r in refs]
        else:
            name = str(reference.parse(ref))
            if not any(r["name"] == name for r in refs):
                # an ID-ish reference that resolved by prefix
                to_untag = [r["name"] for r in refs]
            else:
                to_untag = [name]
            remaining_tags = [r for r in refs if r["name"] not in to_untag and r["kind"] == "tag"]
            if users and not remaining_tags and not force:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{ref}" (must force) - '
                    f"container {users[0][:12]} is using its referenced image {image_id[7:19]}")
        with self.db.tx() as c:
            for name in to_untag:
                c.execute("DELETE FROM refs WHERE name=?", (name,))
                out.append({"Untagged": reference.parse(name).familiar()})
            left = c.execute("SELECT name FROM refs WHERE image_id=? AND kind='tag'",
                             (image_id,)).fetchall()
            delete = not left and (not users or (force and by_id))
            if delete:
                for r in c.execute("SELECT name FROM refs WHERE image_id=? ORDER BY name",
                                   (image_id,)).fetchall():
                    out.append({"Untagged": reference.parse(r["name"]).familiar()})
                c.execute("DELETE FROM refs WHERE image_id=?", (image_id,))
                c.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
                c.execute("DELETE FROM images WHERE id=?", (image_id,))
        if delete:
            out.append({"Deleted": image_id})
            if prune:
                for chain in self.prune_layers():
                    out.append({"Deleted": chain})
        return out

    def prune_images(self, all: bool = False) -> dict:
        """docker image prune: dangling images (no tag), or with all=True every image no
        container uses. Returns {"ImagesDeleted": [...], "SpaceReclaimed": bytes}."""
        deleted: list[dict] = []
        before = sum(r["size"] for r in self.db.query("SELECT size FROM layers"))
        for r in self.db.query("SELECT id FROM images ORDER BY added"):
            iid = r["id"]
            if self.containers_using(iid):
                continue
            tags = self.db.query("SELECT 1 FROM refs WHERE image_id=? AND kind='tag'", (iid,))
            if tags and not all:
                continue
            deleted += self.remove(iid, force=True, prune=False)
        self.prune_layers()
        after = sum(r["size"] for r in self.db.query("SELECT size FROM layers"))
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": before - after}

    # -- container rw layers ------------------------------------------------------------------
    def create_rw_layer(self, container_id: str, image_id: str) -> None:
        """A container's read-write layer on top of its image (kept until remove_rw_layer)."""
        img = self.get(image_id)
        top = self.layer(img.layer_chain[-1]) if img.layer_chain else None
        with self.db.tx() as c:
            if c.execute("SELECT 1 FROM rw_layers WHERE container_id=?",
                         (container_id,)).fetchone():
                raise Conflict(f"rw layer for container {container_id} already exists")
            cache_id = f"{container_id}-rw" if len(container_id) >= 12 else secrets.token_hex(32)
            c.execute("INSERT INTO rw_layers(container_id, image_id, chain_id, cache_id) "
                      "VALUES (?,?,?,?)",
                      (container_id, img.id, top["chain_id"] if top else None, cache_id))
        try:
            self.driver.create(cache_id, top["cache_id"] if top else None)
        except BaseException:
            with self.db.tx() as c:
                c.execute("DELETE FROM rw_layers WHERE container_id=?", (container_id,))
            raise

    def _rw(self, container_id: str) -> dict:
        r = self.db.one("SELECT * FROM rw_layers WHERE container_id=?", (container_id,))
        if r is None:
            raise NotFound(f"no rw layer for container {container_id}")
        return dict(r)

    def mount(self, container_id: str) -> Path:
        """Mount a container's root filesystem (reference counted); returns its path."""
        return self.driver.get(self._rw(container_id)["cache_id"])

    def unmount(self, container_id: str) -> None:
        self.driver.put(self._rw(container_id)["cache_id"])

    def rw_layer_diff(self, container_id: str, out: BinaryIO) -> None:
        """The container's changes as a layer tar (for commit/export of changes)."""
        rw = self._rw(container_id)
        parent = self.layer(rw["chain_id"]) if rw["chain_id"] else None
        self.driver.diff(rw["cache_id"], parent["cache_id"] if parent else None, out)

    def rw_layer_paths(self, container_id: str) -> tuple[str, Path, list[Path]]:
        """(driver name, the rw layer's own dir, the dirs it is judged against, top first):
        what docker diff, ?size=1 and commit read. overlay: the upper dir and the lower diff
        dirs (whiteouts in overlay form); vfs: the full copy and its parent's full copy."""
        rw = self._rw(container_id)
        parent = self.layer(rw["chain_id"]) if rw["chain_id"] else None
        return (self.driver.name, self.driver.layer_dir(rw["cache_id"]),
                self.driver.parent_dirs(rw["cache_id"], parent["cache_id"] if parent else None))

    def rw_layer_chain(self, container_id: str) -> str | None:
        """The chain ID the container's rw layer stands on (its image's top layer)."""
        return self._rw(container_id)["chain_id"]

    def remove_rw_layer(self, container_id: str) -> None:
        """Remove a container's rw layer (idempotent) and the layers only it kept alive."""
        r = self.db.one("SELECT * FROM rw_layers WHERE container_id=?", (container_id,))
        if r is None:
            return
        self.driver.remove(r["cache_id"])
        with self.db.tx() as c:
            c.execute("DELETE FROM rw_layers WHERE container_id=?", (container_id,))
        self.prune_layers()

    def rw_layers(self) -> list[dict]:
        return [dict(r) for r in self.db.query("SELECT * FROM rw_layers")]

    # -- registry, archives (implemented in their own modules) ---------------------------------
    def pull(self, ref: str, *, auth: dict | None = None, progress: Progress | None = None,
             platform: str | None = None, summary: bool = False) -> Image:
        """Pull from a distribution v2 / OCI registry; see engine.registry.distribution."""
        from engine.registry.distribution import pull

        return pull(self, ref, auth=auth, progress=progress, platform=platform, summary=summary)

    def push(self, ref: str, *, auth: dict | None = None, progress: Progress | None = None,
             summary: bool = False) -> dict:
        from engine.registry.distribution import push

        return push(self, ref, auth=auth, progress=progress, summary=summary)

    def load(self, fileobj: BinaryIO, progress: Progress | None = None) -> list[str]:
        from .tarfmt import load

        return load(self, fileobj, progress)

    def save(self, refs: list[str], fileobj: BinaryIO) -> None:
        from .tarfmt import save

        save(self, refs, fileobj)

    def import_tar(self, fileobj: BinaryIO, ref: str | None = None,
                   changes: list[str] | None = None, message: str = "") -> Image:
        from .tarfmt import import_tar

        return import_tar(self, fileobj, ref, changes, message)

    def info(self) -> dict:
        return {"Driver": self.driver.name, "DriverStatus": self.driver.status(),
                "Images": len(self.db.query("SELECT id FROM images"))}


    # last in the class: a method named `list` would shadow the builtin in annotations below
    def list(self) -> list[Image]:
        return [self._image(r["id"]) for r in
                self.db.query("SELECT id FROM images ORDER BY added DESC")]

def chain_ids_from(parent_chain: str | None, diff_id: str) -> str:
    return diff_id if parent_chain is None else chain_ids([parent_chain, diff_id])[1]


def _looks_like_id(ref: str, image_id: str) -> bool:
    s = ref[7:] if ref.startswith("sha256:") else ref
    return bool(re.fullmatch(r"[0-9a-f]{1,64}", s)) and image_id[7:].startswith(s)


