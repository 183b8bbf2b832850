"""`skiff cp`: docker's copy rules between the host and a container, over the archive API.

The daemon only speaks tar at a directory (PUT) or of a path (GET, with a stat header); the
naming rules live in the client, as in docker's CLI: copying onto an existing directory puts
the source inside it, onto a missing path renames the source to it, and `SRC/.` copies a
directory's contents. Local extraction refuses absolute names and `..` and does not change
owners unless -a (docker's NoLchown).
"""

from __future__ import annotations

import base64
import io
import json
import os
import posixpath
import sys
import tarfile
from collections.abc import Iterator
from typing import Any

STAT_HEADER = "x-docker-container-path-stat"
GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27


class CopyError(Exception):
    pass


def split_target(arg: str) -> tuple[str | None, str]:
    """'name:/path' -> ('name', '/path'); local paths (also ./a:b, /a:b) -> (None, path)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path


def decode_stat(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    return json.loads(base64.b64decode(value))


def is_dir(st: dict) -> bool:
    return bool(int(st.get("mode", 0)) & GO_DIR)


def _clean_member(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise CopyError(f"refusing archive entry {name!r}: it would leave the destination")
    return "/".join(parts) or None


def rebase(members: Iterator[tarfile.TarInfo], old: str, new: str) -> Iterator[tarfile.TarInfo]:
    """Rename the archive's top entry `old` (and everything under it) to `new`."""
    for m in members:
        name = m.name
        if old == "/" or old and old != "." and (name == old or name.startswith(old + "/")):
            name = rebase_name(name, old, new)
        elif old == "." and new:
            name = new + "/" + name if _clean_member(name) else new
        cleaned = _clean_member(name)
        if cleaned is None:
            continue
        m.name = cleaned
        yield m


def extract_local(chunks: Iterator[bytes], into: str, old: str, new: str,
                  keep_owner: bool = False) -> None:
    """Extract the daemon's tar into directory `into`, top entry `old` renamed to `new`."""
    raw = _ChunkReader(chunks)
    with tarfile.open(fileobj=raw, mode="r|") as tar:
        if not keep_owner:
            tar.chown = lambda *a, **k: None  # type: ignore[method-assign]
        for m in rebase(iter(tar), old, new):
            if m.islnk():
                m.linkname = _clean_member(rebase_name(m.linkname, old, new)) or m.linkname
            tar.extract(m, into, set_attrs=True)


def rebase_name(name: str, old: str, new: str) -> str:
    if old == "/":  # the root's entries are "/", "/etc", ... (docker's layout)
        return (new.rstrip("/") + "/" if new.strip("/") else "") + name.lstrip("/")
    if old and old != "." and (name == old or name.startswith(old + "/")):
        return new + name[len(old):]
    return name


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.it = iter(chunks)
        self.buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.buf:
            try:
                self.buf = next(self.it)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def tar_local(src: str, arcname: str, keep_owner: bool) -> Iterator[bytes]:
    """A tar of a local path (not following symlinks) as chunks, `src` named `arcname`."""
    out = _Chunks()

    def owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        if not keep_owner:
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
        return ti

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if arcname == ".":
            tar.add(src, ".", recursive=False, filter=owner)
            for n in sorted(os.listdir(src)):
                tar.add(os.path.join(src, n), n, filter=owner)
                yield from out.take()
        else:
            tar.add(src, arcname, filter=owner)
    yield from out.take()


class _Chunks(io.RawIOBase):
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def take(self) -> Iterator[bytes]:
        parts, self.parts = self.parts, []
        yield from parts


def copy_from(c: Any, container: str, src: str, dst: str, *, keep_owner: bool = False,
              follow: bool = False) -> None:
    if not src:
        raise CopyError("empty source path")
    path = src if src.startswith("/") else "/" + src
    if follow:
        st = _stat(c, container, path)
        if st and int(st.get("mode", 0)) & GO_SYMLINK and st.get("linkTarget"):
            path = st["linkTarget"]
    r = c.raw("GET", f"/containers/{container}/archive", {"path": path})
    st = decode_stat(r.headers.get(STAT_HEADER))
    chunks = r.iter_body()
    try:
        if dst == "-":
            for ch in chunks:
                sys.stdout.buffer.write(ch)
            sys.stdout.buffer.flush()
            return
        old = st.get("name") or posixpath.basename(path.rstrip("/")) or "."
        contents = path.endswith("/.")
        if os.path.isdir(dst):
            if contents:
                extract_local(chunks, dst, ".", "", keep_owner)
            else:
                extract_local(chunks, dst, old, old, keep_owner)
            return
        if os.path.exists(dst) and is_dir(st):
            raise CopyError(f"cannot copy directory to a file: {dst}")
        if dst.endswith("/") or dst.endswith("/."):
            raise CopyError(f"destination directory {dst!r} does not exist")
        parent = os.path.dirname(os.path.abspath(dst))
        if not os.path.isdir(parent):
            raise CopyError(f"no such directory: {parent}")
        name = os.path.basename(os.path.abspath(dst))
        if contents:
            os.makedirs(dst, exist_ok=True)
            extract_local(chunks, dst, ".", "", keep_owner)
        else:
            extract_local(chunks, parent, old, name, keep_owner)
    finally:
        r.sock.close()


def _stat(c: Any, container: str, path: str) -> dict | None:
    """HEAD archive: the path's stat, None when it does not exist. (Not Client.raw: a HEAD
    answer has a Content-Length but no body, which raw() would wait for on an error.)"""
    from engine.client.api import APIError, RawResponse

    s = c.connect()
    try:
        c._send(s, "HEAD", c.url(f"/containers/{container}/archive", {"path": path}), None,
                None)
        r = RawResponse(s)
    finally:
        s.close()
    if r.status == 404:
        return None
    if r.status >= 400:
        raise APIError(r.status, f"cannot stat {container}:{path} (HTTP {r.status})")
    return decode_stat(r.headers.get(STAT_HEADER))


def copy_to(c: Any, src: str, container: str, dst: str, *, keep_owner: bool = False,
            follow: bool = False) -> None:
    if not dst:
        raise CopyError("empty destination path")
    dst_path = dst if dst.startswith("/") else "/" + dst
    params = {"noOverwriteDirNonDir": "true", "copyUIDGID": "true" if keep_owner else None}
    if src == "-":
        data = iter(lambda: sys.stdin.buffer.read(1 << 20), b"")
        c.request("PUT", f"/containers/{container}/archive", {"path": dst_path, **params},
                  data=data, headers={"Content-Type": "application/x-tar"})
        return
    if not os.path.lexists(src):
        raise CopyError(f"could not find the file {src}: no such file or directory")
    if follow:
        src = os.path.realpath(src)
    src_is_dir = os.path.isdir(src) and not os.path.islink(src)
    contents = src.endswith("/.")
    st = _stat(c, container, dst_path)
    if st and int(st.get("mode", 0)) & GO_SYMLINK and st.get("linkTarget"):
        dst_path = st["linkTarget"]
        st = _stat(c, container, dst_path)
    if st and is_dir(st):
        target, name = dst_path, ("." if contents else os.path.basename(src.rstrip("/")))
    elif st:
        if src_is_dir:
            raise CopyError(f"cannot copy a directory to a file: {dst}")
        target, name = posixpath.dirname(dst_path) or "/", posixpath.basename(dst_path)
    else:
        if dst.endswith("/") and not src_is_dir:
            raise CopyError(f"destination directory {dst!r} does not exist")
        target = posixpath.dirname(dst_path.rstrip("/")) or "/"
        name = posixpath.basename(dst_path.rstrip("/"))
        if contents:
            contents = False  # a/. onto a new path: the directory itself, renamed
    src_path = src[:-2] if src.endswith("/.") else src
    c.request("PUT", f"/containers/{container}/archive", {"path": target, **params},
              data=tar_local(src_path, name, keep_owner),
              headers={"Content-Type": "application/x-tar"})
