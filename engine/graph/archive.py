"""Safe layer application: tar (plain, gzip, zstd) into a directory, and layer tars out again.

Python 3.11.2 has no tarfile extraction filters, so every member is checked here and every
filesystem operation is relative to an already-open directory fd, opened component by
component with O_NOFOLLOW. A name with `..`, an absolute name, a write through a symlink, a
hard link to something outside the layer or a device node (unless allowed) raises LayerError
before anything is written for that member; the caller then removes the half-applied layer
directory, so no byte ever lands outside it.

Whiteouts come in two flavours: "overlay" keeps them as overlayfs expects (a 0/0 character
device for `.wh.NAME`, the `trusted.overlay.opaque` xattr for `.wh..wh..opq`) because the
layer directory is an overlay lower dir; "naive" applies them to a full copy of the parent (vfs).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import queue
import shutil
import stat
import tarfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.errors import InvalidParameter

WH_PREFIX = ".wh."
WH_META_PREFIX = ".wh..wh."
WH_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20


class LayerError(InvalidParameter):
    """A layer tar that is malformed or tries to reach outside its directory."""


def decompressed(f: BinaryIO) -> BinaryIO:
    """A reader of the uncompressed tar, whatever compression (none, gzip, zstd) `f` has."""
    buf = f if isinstance(f, io.BufferedReader) else io.BufferedReader(_Raw(f), CHUNK)
    head = buf.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buf, mode="rb")  # type: ignore[return-value]
    if head == ZSTD_MAGIC:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buf, read_across_frames=True)
    return buf


class _Raw(io.RawIOBase):
    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.f.read(len(b))
        b[: len(data)] = data
        return len(data)


class _Pipeline(io.RawIOBase):
    """The uncompressed layer, decompressed and hashed in a helper thread.

    zlib, zstd and hashlib release the GIL, so decompression and the diff-ID hash run on
    another core while this thread parses tar headers and creates files (what dockerd gets
    from unpigz). zlib's own gzip mode checks the CRC in C. Errors surface on read().
    """

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.q: queue.Queue = queue.Queue(maxsize=16)
        self.hash = hashlib.sha256()
        self.count = 0
        self.buf = memoryview(b"")
        self.done = False
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, name="skiff-unpack", daemon=True)
        self.t.start()

    def readable(self) -> bool:
        return True

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _emit(self, data: bytes) -> bool:
        if not data:
            return True
        self.hash.update(data)
        self.count += len(data)
        return self._put(data)

    def _run(self) -> None:
        try:
            first = self.f.read(CHUNK)
            if first.startswith(GZIP_MAGIC):
                self._gunzip(first)
            elif first[:4] == ZSTD_MAGIC:
                self._unzstd(first)
            else:
                chunk = first
                while chunk:
                    if not self._emit(chunk):
                        return
                    chunk = self.f.read(CHUNK)
            self._put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the reading thread
            self._put(e)

    def _gunzip(self, first: bytes) -> None:
        d = zlib.decompressobj(wbits=31)
        data = first
        while True:
            if not data:
                data = self.f.read(CHUNK)
                if not data:
                    break
            # bounded output per call: a small compressed chunk can inflate a lot
            if not self._emit(d.decompress(data, CHUNK)):
                return
            if d.eof:  # (unconsumed_tail is stale then: the rest is in unused_data)
                rest = d.unused_data or self.f.read(CHUNK)  # a member may end a chunk
                if not rest.strip(b"\0"):
                    break  # end of the last member (zero padding may follow)
                d = zlib.decompressobj(wbits=31)  # another gzip member follows
                data = rest
                continue
            data = d.unconsumed_tail  # output limit reached, or b"": read on
        if not d.eof:
            raise EOFError("compressed data ended before the end-of-stream marker")

    def _unzstd(self, first: bytes) -> None:
        import zstandard

        src = io.BufferedReader(_Prefixed(first, self.f), CHUNK)
        r = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
        while chunk := r.read(CHUNK):
            if not self._emit(chunk):
                return

    def readinto(self, b) -> int:
        if not self.buf:
            if self.done:
                return 0
            item = self.q.get()
            if item is None:
                self.done = True
                return 0
            if isinstance(item, BaseException):
                self.done = True
                raise item
            self.buf = memoryview(item)
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

    def drain(self) -> None:
        while self.readinto(bytearray(CHUNK)):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass
        self.t.join(5)
        super().close()


class _Prefixed(io.RawIOBase):
    """`head` followed by the rest of `f` (the bytes read to sniff the compression)."""

    def __init__(self, head: bytes, f: BinaryIO) -> None:
        self.head = memoryview(head)
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.f.read(len(b))
        b[: len(data)] = data
        return len(data)


@dataclass
class ApplyResult:
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of regular file content


def split_name(name: str, what: str = "entry") -> tuple[str, ...]:
    """Normalized path components of a member name; refuses absolute names and `..`."""
    if name.startswith("/"):
        raise LayerError(f"layer {what} {name!r}: absolute paths are not allowed")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(f"layer {what} {name!r}: '..' would leave the layer directory")
    return parts


class _Applier:
    def __init__(self, dest: Path, whiteouts: str, allow_devices: bool) -> None:
        if whiteouts not in ("overlay", "naive"):
            raise ValueError(whiteouts)
        self.overlay = whiteouts == "overlay"
        self.allow_devices = allow_devices
        self.root_fd = os.open(dest, _DIR_FLAGS)
        self.dir_cache: dict[tuple[str, ...], int] = {}
        self.as_root = os.geteuid() == 0
        self.owner_is_root = self.as_root and os.getegid() == 0
        self.umask = _umask()
        self.written: set[tuple[str, ...]] = set()
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        self.size = 0

    def close(self) -> None:
        self._flush_cache()
        os.close(self.root_fd)

    def _flush_cache(self) -> None:
        for fd in self.dir_cache.values():
            os.close(fd)
        self.dir_cache.clear()

    def open_dir(self, parts: tuple[str, ...], member: str, create: bool = True) -> int:
        """An fd of directory `parts` under the root, never following a symlink on the way."""
        if not parts:
            return self.root_fd
        fd = self.dir_cache.get(parts)
        if fd is not None:
            return fd
        parent = self.open_dir(parts[:-1], member, create)
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise LayerError(
                    f"layer entry {member!r}: path component {'/'.join(parts)!r} is {kind}; "
                    "writing through it could leave the layer directory"
                ) from None
            raise
        if len(self.dir_cache) > 512:
            self._flush_cache()
        self.dir_cache[parts] = fd
        return fd

    def _forget(self, parts: tuple[str, ...]) -> None:
        """Close cached fds of `parts` and everything below it (about to be removed)."""
        n = len(parts)
        for key in [k for k in self.dir_cache if k[:n] == parts]:
            os.close(self.dir_cache.pop(key))

    def _remove(self, pfd: int, name: str, pparts: tuple[str, ...]) -> bool:
        """Remove whatever `name` is (a directory recursively, never following links)."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            self._forget(pparts + (name,))
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)
        return True

    def _meta(self, target: int | str, m: tarfile.TarInfo, pfd: int | None = None,
              fresh: bool = True, symlink: bool = False) -> None:
        """Owner, mode and xattrs of an fd, or of a name in `pfd` (never followed if a link)."""
        if isinstance(target, str):
            if self.as_root and (m.uid or m.gid or not self.owner_is_root or not fresh):
                os.chown(target, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            if not symlink:  # a fifo or device node just made here: chmod through its name
                os.chmod(target, m.mode & 0o7777, dir_fd=pfd)
            return
        if self.as_root and (m.uid or m.gid or not self.owner_is_root or not fresh):
            os.chown(target, m.uid, m.gid)  # new files are root's already
        os.chmod(target, m.mode & 0o7777)
        self._xattrs(target, m)

    def _xattrs(self, fd: int, m: tarfile.TarInfo) -> None:
        for k, v in m.pax_headers.items():
            if k.startswith("SCHILY.xattr."):
                key = k[len("SCHILY.xattr."):]
                if key.startswith("trusted.overlay."):
                    continue  # a layer must not forge overlayfs metadata
                raw = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
                try:
                    os.setxattr(fd, key, raw)
                except OSError:
                    pass  # xattrs where possible (tmpfs/user namespaces refuse some)

    def _utime(self, target: int | str, mtime: float, pfd: int | None = None) -> None:
        ns = int(mtime * 1_000_000_000)
        if isinstance(target, str):
            os.utime(target, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
        else:
            os.utime(target, ns=(ns, ns))

    def apply(self, tar: tarfile.TarFile) -> None:
        for m in tar:
            self.member(tar, m)
        for parts, mtime_ns in reversed(self.dir_times):
            try:
                fd = self.open_dir(parts, "/".join(parts), create=False)
            except (FileNotFoundError, LayerError):
                continue
            os.utime(fd, ns=(mtime_ns, mtime_ns))

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = split_name(m.name)
        if not parts:
            return  # the layer root itself
        base = parts[-1]
        pparts = parts[:-1]
        if base.startswith(WH_PREFIX):
            self.whiteout(pparts, base, m.name)
            return
        pfd = self.open_dir(pparts, m.name)
        self.written.add(parts)
        if m.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    self._remove(pfd, base, pparts)
                    os.mkdir(base, 0o700, dir_fd=pfd)
            fd = self.open_dir(parts, m.name)
            self._meta(fd, m, fresh=False)
            self.dir_times.append((parts, int(m.mtime * 1_000_000_000)))
            return
        if m.islnk():
            self.hardlink(pfd, base, m, pparts)
            return
        if m.issym():
            try:
                os.symlink(m.linkname, base, dir_fd=pfd)
            except FileExistsError:
                self._remove(pfd, base, pparts)
                os.symlink(m.linkname, base, dir_fd=pfd)
            self._meta(base, m, pfd, symlink=True)
            self._utime(base, m.mtime, pfd)
            return
        if m.ischr() or m.isblk():
            if not self.allow_devices:
                kind = "character" if m.ischr() else "block"
                raise LayerError(
                    f"layer entry {m.name!r}: {kind} device {m.devmajor}:{m.devminor} "
                    "is not allowed in image layers"
                )
            self._remove(pfd, base, pparts)
            fmt = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, fmt | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            self._meta(base, m, pfd)
            return
        if m.isfifo():
            self._remove(pfd, base, pparts)
            os.mkfifo(base, m.mode & 0o7777, dir_fd=pfd)
            self._meta(base, m, pfd)
            return
        if not m.isreg():
            raise LayerError(f"layer entry {m.name!r}: unsupported tar entry type {m.type!r}")
        # Regular file: created first try (a replaced entry is removed on EEXIST), with its
        # permission bits when the umask keeps them, so most files cost open, write, utime
        # and close.
        perm = m.mode & 0o777
        try:
            fd = os.open(base, _FILE_FLAGS, perm, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, base, pparts)
            fd = os.open(base, _FILE_FLAGS, perm, dir_fd=pfd)
        try:
            src = tar.extractfile(m)
            if src is not None and m.size:
                remaining = m.size
                while remaining:
                    chunk = src.read(min(CHUNK, remaining))
                    if not chunk:
                        raise LayerError(f"layer entry {m.name!r}: truncated tar")
                    _write_all(fd, chunk)
                    remaining -= len(chunk)
            self.size += m.size
            if self.as_root and (m.uid or m.gid or not self.owner_is_root):
                os.chown(fd, m.uid, m.gid)
            if (m.mode & 0o7777) != (perm & ~self.umask):
                os.chmod(fd, m.mode & 0o7777)  # after chown, which clears set-id bits
            if m.pax_headers:
                self._xattrs(fd, m)
            self._utime(fd, m.mtime)
        finally:
            os.close(fd)

    def hardlink(self, pfd: int, base: str, m: tarfile.TarInfo,
                 pparts: tuple[str, ...]) -> None:
        tparts = split_name(m.linkname, "hard link target")
        if not tparts:
            raise LayerError(f"layer entry {m.name!r}: hard link to the layer root")
        missing = LayerError(
            f"layer entry {m.name!r}: hard link target {m.linkname!r} is not in the layer"
        )
        # Own duplicates: opening the target's directory may evict cached fds, and replacing
        # `base` may remove the target's directory (closing its cached fd) when the target
        # lies below the entry being replaced.
        pfd = os.dup(pfd)
        tfd = -1
        try:
            try:
                tfd = os.dup(self.open_dir(tparts[:-1], m.name, create=False))
                st = os.stat(tparts[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise missing from None
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(f"layer entry {m.name!r}: hard link to a directory")
            try:
                cur = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino):
                    return
            except FileNotFoundError:
                pass
            self._remove(pfd, base, pparts)
            try:
                os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                raise missing from None
        finally:
            os.close(pfd)
            if tfd >= 0:
                os.close(tfd)

    def whiteout(self, pparts: tuple[str, ...], base: str, name: str) -> None:
        pfd = self.open_dir(pparts, name)
        if base == WH_OPAQUE:
            if self.overlay:
                os.setxattr(pfd, OVERLAY_OPAQUE_XATTR, b"y")
            else:
                for child in os.listdir(pfd):
                    if pparts + (child,) not in self.written:
                        self._remove(pfd, child, pparts)
            return
        if base.startswith(WH_META_PREFIX):
            return  # other AUFS metadata (.wh..wh.plnk, ...) means nothing here
        target = base[len(WH_PREFIX):]
        if target in ("", ".", "..") or "/" in target:
            raise LayerError(f"layer entry {name!r}: bad whiteout name")
        self._remove(pfd, target, pparts)
        if self.overlay:
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)


_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: always chmod


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def apply_layer(
    f: BinaryIO,
    dest: Path,
    *,
    whiteouts: str = "naive",
    allow_devices: bool = False,
    expect_diff_id: str | None = None,
) -> ApplyResult:
    """Apply a (possibly compressed) layer tar onto `dest`; checks the diff ID when given."""
    reader = _Pipeline(f)
    ap = _Applier(dest, whiteouts, allow_devices)
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|", errorlevel=2) as tar:
                ap.apply(tar)
            reader.drain()
        except tarfile.TarError as e:
            raise LayerError(f"layer is not a valid tar archive: {e}") from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise LayerError(f"layer data is corrupt: {e}") from None
        except Exception as e:
            if type(e).__name__ == "ZstdError":
                raise LayerError(f"layer data is corrupt: {e}") from None
            raise
    finally:
        ap.close()
        reader.close()
    if expect_diff_id and reader.digest != expect_diff_id:
        raise LayerError(f"layer diff ID mismatch: expected {expect_diff_id}, got {reader.digest}")
    return ApplyResult(reader.digest, ap.size)


# -- layer tars out of directories ------------------------------------------------------------


def _tarinfo(root: Path, rel: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(root / rel)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        info.size = st.st_size
    pax: dict[str, str] = {}
    try:
        for key in os.listxattr(root / rel, follow_symlinks=False):
            if key.startswith("trusted.overlay."):
                continue
            val = os.getxattr(root / rel, key, follow_symlinks=False)
            pax["SCHILY.xattr." + key] = val.decode("utf-8", "surrogateescape")
    except OSError:
        pass
    if pax:
        info.pax_headers = pax
    return info


def _walk_sorted(root: Path) -> list[str]:
    out: list[str] = []

    def rec(rel: str) -> None:
        d = root / rel if rel else root
        for n in sorted(os.listdir(d)):
            child = f"{rel}/{n}" if rel else n
            out.append(child)
            p = d / n
            if p.is_dir() and not p.is_symlink():
                rec(child)

    rec("")
    return out


def _add(tar: tarfile.TarFile, root: Path, rel: str, st: os.stat_result,
         inodes: dict[tuple[int, int], str]) -> None:
    info = _tarinfo(root, rel, st)
    if info.isreg() and st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in inodes:
            info.type = tarfile.LNKTYPE
            info.linkname = inodes[key]
            info.size = 0
            tar.addfile(info)
            return
        inodes[key] = rel
    if info.isreg():
        with open(root / rel, "rb") as fh:
            tar.addfile(info, fh)
    else:
        tar.addfile(info)


def tar_overlay_diff(upper: Path, out: BinaryIO) -> None:
    """A layer tar of an overlay upper dir: 0/0 char devices and opaque dirs become whiteouts."""
    inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in _walk_sorted(upper):
            st = os.lstat(upper / rel)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                parent, _, name = rel.rpartition("/")
                wh = tarfile.TarInfo(f"{parent}/{WH_PREFIX}{name}" if parent else WH_PREFIX + name)
                wh.mtime = int(st.st_mtime)
                tar.addfile(wh)
                continue
            _add(tar, upper, rel, st, inodes)
            if stat.S_ISDIR(st.st_mode):
                try:
                    opaque = os.getxattr(upper / rel, OVERLAY_OPAQUE_XATTR) == b"y"
                except OSError:
                    opaque = False
                if opaque:
                    wh = tarfile.TarInfo(f"{rel}/{WH_OPAQUE}")
                    wh.mtime = int(st.st_mtime)
                    tar.addfile(wh)


def tar_changes(parent: Path | None, layer: Path, out: BinaryIO) -> None:
    """A layer tar of what differs between two full trees (vfs): changed files and whiteouts."""
    inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        new = _walk_sorted(layer)
        new_set = set(new)
        for rel in new:
            st = os.lstat(layer / rel)
            if parent is not None:
                try:
                    pst = os.lstat(parent / rel)
                except FileNotFoundError:
                    pst = None
                if pst is not None and _same(parent / rel, pst, layer / rel, st):
                    continue
            _add(tar, layer, rel, st, inodes)
        if parent is None:
            return
        removed_dirs: list[str] = []
        for rel in _walk_sorted(parent):
            if rel in new_set or any(rel.startswith(d + "/") for d in removed_dirs):
                continue
            p, _, n = rel.rpartition("/")
            wh = tarfile.TarInfo(f"{p}/{WH_PREFIX}{n}" if p else WH_PREFIX + n)
            wh.mtime = 0
            tar.addfile(wh)
            if os.path.isdir(parent / rel) and not os.path.islink(parent / rel):
                removed_dirs.append(rel)


def _same(pa: Path, a: os.stat_result, pb: Path, b: os.stat_result) -> bool:
    if (stat.S_IFMT(a.st_mode), stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) != (
        stat.S_IFMT(b.st_mode), stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid
    ):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) == os.readlink(pb)
    if stat.S_ISREG(a.st_mode):
        return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)
    return a.st_rdev == b.st_rdev
