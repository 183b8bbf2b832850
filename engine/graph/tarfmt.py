"""Archives in and out of the graph: `docker save`/`docker load` tars, OCI layouts, `import`.

`save` writes the format docker 25+ writes, which is both at once: an OCI image layout
(oci-layout, index.json, blobs/sha256/...) plus docker's manifest.json and repositories, so
docker 20.10's `load`, skopeo's `oci-archive:` and Skiff's `load` all read it. `load` reads
either (manifest.json first, else index.json). Archive members are spooled into the graph's tmp
dir with the same name checks as layers (no absolute names, no `..`), and symlinks in the
archive (older `docker save` links repeated layers) are only followed inside the archive.
"""

from __future__ import annotations

import io
import json
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from engine.errors import InvalidParameter
from engine.registry import reference

from .archive import LayerError, decompressed, split_name
from .blobs import sha256_bytes
from .image import Image, chain_ids

if TYPE_CHECKING:
    from .graph import Graph, Progress

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ANNOT_REF = "org.opencontainers.image.ref.name"
ANNOT_CONTAINERD_NAME = "io.containerd.image.name"


class _Spool:
    """An archive unpacked (regular files only) into a private temp dir, symlinks remembered."""

    def __init__(self, g: Graph, fileobj: BinaryIO) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="load-", dir=g.blobs.tmp))
        self.links: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=decompressed(fileobj), mode="r|") as tar:
                for m in tar:
                    parts = split_name(m.name, "archive member")
                    if not parts:
                        continue
                    rel = "/".join(parts)
                    if m.isdir():
                        continue
                    if m.issym() or m.islnk():
                        target = m.linkname
                        if m.issym():
                            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel),
                                                                       target))
                        self.links[rel] = "/".join(split_name(target, "archive link"))
                        continue
                    if not m.isreg():
                        continue
                    dest = self.dir.joinpath(*parts)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(m)
                    with open(dest, "wb") as out:
                        if src is not None:
                            shutil.copyfileobj(src, out, 1 << 20)
        except tarfile.TarError as e:
            self.close()
            raise InvalidParameter(f"invalid archive: {e}") from None
        except BaseException:
            self.close()
            raise

    def path(self, rel: str) -> Path:
        parts = split_name(rel, "archive path")
        key = "/".join(parts)
        for _ in range(16):
            if key in self.links:
                key = self.links[key]
            else:
                break
        p = self.dir.joinpath(*key.split("/"))
        if not p.is_file():
            raise InvalidParameter(f"invalid archive: {rel!r} is missing")
        return p

    def has(self, rel: str) -> bool:
        try:
            self.path(rel)
            return True
        except InvalidParameter:
            return False

    def json(self, rel: str) -> object:
        try:
            return json.loads(self.path(rel).read_bytes())
        except ValueError as e:
            raise InvalidParameter(f"invalid archive: {rel}: {e}") from None

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _file_opener(p: Path) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        return open(p, "rb")

    return opener


def _load_image(g: Graph, sp: _Spool, config_rel: str, layer_rels: list[str],
                layer_types: list[str] | None, tags: list[str]) -> Image:
    from .graph import layer_media_type_of

    config_raw = sp.path(config_rel).read_bytes()
    config = json.loads(config_raw)
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layer_rels):
        raise InvalidParameter(f"invalid archive: {len(layer_rels)} layers for "
                               f"{len(diff_ids)} diff IDs in {config_rel}")
    chains = chain_ids(diff_ids)
    with g.pinned(chains):
        parent = None
        for i, (rel, diff_id) in enumerate(zip(layer_rels, diff_ids, strict=True)):
            applied = False
            if not g.has_layer(chains[i]):
                p = sp.path(rel)
                g.register_layer(parent, diff_id, _file_opener(p))
                applied = True  # so the plain tar's bytes were hashed and matched diff_id
            if g.layer_blob(diff_id) is None:
                p = sp.path(rel)
                mt = (layer_types[i] if layer_types else None) or layer_media_type_of(p)
                size = p.stat().st_size
                digest = g.blobs.adopt(p, diff_id if applied and mt.endswith(".tar") else None)
                if mt.endswith(".tar") and digest != diff_id:
                    g.blobs.delete(digest)
                    raise InvalidParameter(f"invalid archive: {rel} does not match {diff_id}")
                g._add_layer_blob(diff_id, (digest, mt, size))
            parent = chains[i]
        refs = []
        for t in tags:
            try:
                refs.append(str(reference.parse(t)))
            except InvalidParameter:
                continue
        return g.register_image(config_raw, refs)


def load(g: Graph, fileobj: BinaryIO, progress: Progress | None = None) -> list[str]:
    sp = _Spool(g, fileobj)
    messages: list[str] = []
    try:
        if sp.has("manifest.json"):
            manifest = sp.json("manifest.json")
            if not isinstance(manifest, list):
                raise InvalidParameter("invalid archive: manifest.json is not a list")
            for entry in manifest:
                tags = list(entry.get("RepoTags") or [])
                img = _load_image(g, sp, entry["Config"], list(entry.get("Layers") or []),
                                  None, tags)
                messages += ([f"Loaded image: {reference.parse(t).familiar()}" for t in tags]
                             or [f"Loaded image ID: {img.id}"])
        elif sp.has("index.json"):
            for desc, name in _oci_manifests(sp, sp.json("index.json")):
                m = sp.json(_blob_rel(desc["digest"]))
                assert isinstance(m, dict)
                layers = m.get("layers") or []
                img = _load_image(g, sp, _blob_rel(m["config"]["digest"]),
                                  [_blob_rel(la["digest"]) for la in layers],
                                  [la.get("mediaType", "") for la in layers],
                                  [name] if name else [])
                messages.append(f"Loaded image: {reference.parse(name).familiar()}" if name
                                else f"Loaded image ID: {img.id}")
        else:
            raise InvalidParameter("invalid archive: neither manifest.json nor index.json found")
    except (KeyError, TypeError) as e:
        raise InvalidParameter(f"invalid archive: missing field {e}") from None
    except LayerError:
        raise
    finally:
        sp.close()
        g.prune_layers()
    for msg in messages:
        if progress:
            progress({"stream": msg + "\n"})
    return messages


def _blob_rel(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or not hexd.isalnum():
        raise InvalidParameter(f"invalid archive: bad digest {digest!r}")
    return f"blobs/sha256/{hexd}"


def _oci_manifests(sp: _Spool, index: object, name: str = "") -> list[tuple[dict, str]]:
    out: list[tuple[dict, str]] = []
    if not isinstance(index, dict):
        raise InvalidParameter("invalid archive: index.json is not an object")
    for desc in index.get("manifests") or []:
        ann = desc.get("annotations") or {}
        n = ann.get(ANNOT_CONTAINERD_NAME) or ann.get(ANNOT_REF) or name
        if n and ":" not in n and "/" not in n and "@" not in n and n == ann.get(ANNOT_REF):
            n = ""  # a bare tag as ref.name without a repository: no name to give
        mt = desc.get("mediaType", "")
        if mt in (MT_OCI_INDEX, MT_DOCKER_LIST):
            sub = sp.json(_blob_rel(desc["digest"]))
            cands = _oci_manifests(sp, sub, n)
            chosen = [c for c in cands if _is_amd64(c[0])] or cands[:1]
            out += chosen[:1]
        else:
            out.append((desc, n))
    return out


def _is_amd64(desc: dict) -> bool:
    p = desc.get("platform") or {}
    return p.get("os", "linux") == "linux" and p.get("architecture", "amd64") == "amd64"


def save(g: Graph, refs: list[str], fileobj: BinaryIO) -> None:
    """Write images (by reference or ID) as a docker-save + OCI-layout tar."""
    images: dict[str, tuple[Image, list[str]]] = {}
    for r in refs:
        iid = g.resolve(r)
        img, names = images.get(iid) or (g.get(iid), [])
        try:
            parsed = reference.parse(r)
            if not parsed.digest and not _is_id(r, iid):
                names.append(parsed.familiar())
        except InvalidParameter:
            pass
        images[iid] = (img, names)
    members: dict[str, bytes | Path] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    manifest_json = []
    repositories: dict[str, dict[str, str]] = {}
    index = []
    tmpfiles: list[Path] = []
    try:
        for iid, (img, names) in images.items():
            members[_blob_rel(iid)] = img.config_raw
            layer_rels = []
            layer_descs = []
            for diff_id in img.diff_ids:
                rel = _blob_rel(diff_id)
                if rel not in members:
                    members[rel] = _plain_layer(g, diff_id, tmpfiles)
                src = members[rel]
                size = len(src) if isinstance(src, bytes) else src.stat().st_size
                layer_rels.append(rel)
                layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                    "digest": diff_id, "size": size})
            m = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                            "config": {"mediaType": MT_OCI_CONFIG, "digest": iid,
                                       "size": len(img.config_raw)},
                            "layers": layer_descs}, separators=(",", ":")).encode()
            md = sha256_bytes(m)
            members[_blob_rel(md)] = m
            for n in names or [""]:
                desc = {"mediaType": MT_OCI_MANIFEST, "digest": md, "size": len(m)}
                if n:
                    full = reference.parse(n)
                    desc["annotations"] = {ANNOT_CONTAINERD_NAME: str(full),
                                           ANNOT_REF: full.tag or "latest"}
                index.append(desc)
            manifest_json.append({"Config": _blob_rel(iid), "RepoTags": names or None,
                                  "Layers": layer_rels})
            for n in names:
                ref = reference.parse(n)
                if img.diff_ids and ref.tag:
                    repositories.setdefault(ref.familiar_repository, {})[ref.tag] = \
                        img.diff_ids[-1][7:]
        members["index.json"] = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                                            "manifests": index}).encode()
        members["manifest.json"] = json.dumps(manifest_json).encode()
        if repositories:
            members["repositories"] = json.dumps(repositories).encode()
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for d in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            for name in sorted(members):
                data = members[name]
                info = tarfile.TarInfo(name)
                info.mode = 0o644
                if isinstance(data, bytes):
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                else:
                    info.size = data.stat().st_size
                    with open(data, "rb") as f:
                        tar.addfile(info, f)
    finally:
        for p in tmpfiles:
            p.unlink(missing_ok=True)


def _is_id(r: str, iid: str) -> bool:
    s = r[7:] if r.startswith("sha256:") else r
    return iid[7:].startswith(s) and all(c in "0123456789abcdef" for c in s)


def _plain_layer(g: Graph, diff_id: str, tmpfiles: list[Path]) -> Path:
    """The uncompressed layer tar: the stored blob when plain, else decompressed to a temp file."""
    if g.blobs.exists(diff_id):
        return g.blobs.path(diff_id)
    b = g.layer_blob(diff_id)
    if b is None:
        raise InvalidParameter(f"layer {diff_id} has no stored data to save")
    fd, name = tempfile.mkstemp(prefix="save-", dir=g.blobs.tmp)
    p = Path(name)
    tmpfiles.append(p)
    with g.blobs.open(b["digest"]) as src, open(fd, "wb") as out:
        shutil.copyfileobj(decompressed(src), out, 1 << 20)
    return p


# -- import ----------------------------------------------------------------------------------


def parse_changes(changes: list[str] | None, config: dict) -> None:
    """Apply Dockerfile-style --change instructions (CMD, ENV, ...) to a container config."""
    for ch in changes or []:
        ch = ch.strip()
        if not ch:
            continue
        instr, _, arg = ch.partition(" ")
        instr = instr.upper()
        arg = arg.strip()

        def as_list(a: str) -> list[str]:
            if a.startswith("["):
                try:
                    v = json.loads(a)
                    if isinstance(v, list) and all(isinstance(x, str) for x in v):
                        return v
                except ValueError:
                    pass
            return ["/bin/sh", "-c", a]

        if instr == "CMD":
            config["Cmd"] = as_list(arg)
        elif instr == "ENTRYPOINT":
            config["Entrypoint"] = as_list(arg)
        elif instr == "ENV":
            env = config.setdefault("Env", [])
            pairs = ([arg] if "=" in arg.split(" ")[0] and " " not in arg
                     else [arg.replace(" ", "=", 1)] if "=" not in arg.split(" ")[0] else
                     arg.split())
            for kv in pairs:
                k = kv.split("=", 1)[0]
                env[:] = [e for e in env if e.split("=", 1)[0] != k] + [kv]
        elif instr == "WORKDIR":
            config["WorkingDir"] = arg
        elif instr == "USER":
            config["User"] = arg
        elif instr == "EXPOSE":
            for p in arg.split():
                config.setdefault("ExposedPorts", {})[p if "/" in p else p + "/tcp"] = {}
        elif instr == "VOLUME":
            vols = json.loads(arg) if arg.startswith("[") else arg.split()
            for v in vols:
                config.setdefault("Volumes", {})[v] = {}
        elif instr == "LABEL":
            k, _, v = arg.partition("=")
            config.setdefault("Labels", {})[k.strip()] = v.strip().strip('"')
        elif instr == "STOPSIGNAL":
            config["StopSignal"] = arg
        else:
            raise InvalidParameter(f"{instr} is not a valid change command")


def import_tar(g: Graph, fileobj: BinaryIO, ref: str | None, changes: list[str] | None,
               message: str = "") -> Image:
    """A rootfs tarball (plain/gzip/zstd) as a one-layer image (`docker import`)."""
    from .graph import layer_media_type_of

    target = str(reference.parse(ref)) if ref else None
    cfg: dict = {}
    parse_changes(changes, cfg)
    w = g.blobs.writer()
    try:
        shutil.copyfileobj(fileobj, w, 1 << 20)
        w.f.close()
        path = w.path
        mt = layer_media_type_of(path)
        chain = g.register_layer(None, None, lambda: open(path, "rb"))
        diff_id = chain
        with g.pinned([chain]):
            if g.layer_blob(diff_id) is None:
                size = path.stat().st_size
                digest = g.blobs.adopt(path, w.digest)
                g._add_layer_blob(diff_id, (digest, mt, size))
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: UP017
            config = {
                "architecture": "amd64", "os": "linux", "created": now,
                "config": cfg,
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": now, "comment": message or "Imported from -"}],
            }
            raw = json.dumps(config, separators=(",", ":")).encode()
            img = g.register_image(raw, [target] if target else [])
    finally:
        w.path.unlink(missing_ok=True)
        if not w.f.closed:
            w.f.close()
    return img
