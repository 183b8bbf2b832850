"""Files in and out of a container: `docker cp` (GET/HEAD/PUT archive) and `docker export`.

Paths are resolved the way the container sees them: `..` stops at the container's root,
symlinks are read on the host but interpreted inside the container (an absolute link target
restarts at the container's root, never the host's), and a path under a volume or bind mount
lands in that mount's source. The resolved path is then opened component by component with
O_NOFOLLOW from the base directory (the rootfs or a mount source), so a running container that
swaps a directory for a symlink between resolution and use gets an error, not the host's files
(the race behind CVE-2018-15664). Tars are written from directory fds for the same reason, and
archives are extracted with the graph's fd-relative applier (engine/graph/archive.py).

The root filesystem is taken with the graph's reference-counted mount, so the same code serves
running and stopped containers: a stopped one is mounted for the copy and unmounted after.
Volumes and bind mounts below the copied path are entered both ways, as docker (which mounts
them into the rootfs for cp) does; `cp -a` looks the user up in the container's own
/etc/passwd, read with the same resolution (never a host file, never blocking on a fifo).

Where this differs from docker (known, kept small on purpose):
- tmpfs mounts (--tmpfs, /dev/shm) live only in the container's mount namespace: cp sees the
  empty mount point under them. (Reaching them would mean walking from /proc/<pid>/root.)
- a tar entry naming a file mount (/etc/hosts) is refused (docker: EBUSY), not written
  through; directory mounts are written through.
- a tar member whose parent is a symlink in the container is refused (docker extracts in a
  chroot and follows it there). The docker CLI sends directory entries first, and those
  replace such a symlink (or fail with noOverwriteDirNonDir) in both.
- device nodes and `.wh.` names in a tar copied in are refused (docker creates them).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import posixpath
import queue
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import Conflict, Forbidden, InvalidParameter, NotFound
from engine.graph.archive import LayerError, _Applier, decompressed, split_name

MAX_SYMLINKS = 40
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BASE = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # a rootfs or mount source: the admin's
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
STAT_HEADER = "X-Docker-Container-Path-Stat"

# Go's os.FileMode type bits (what the docker CLI decodes from the path-stat header)
GO_DIR, GO_SYMLINK, GO_DEVICE, GO_PIPE, GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
GO_SETUID, GO_SETGID, GO_CHARDEV, GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


# ---- path resolution (pure: a root directory, a mount table, a path) -----------------------

@dataclass(frozen=True)
class Mount:
    """A mount the daemon can reach on the host: container path -> host path (dir or file)."""

    destination: str
    source: str
    rw: bool = True


@dataclass(frozen=True)
class Resolved:
    """Where a container path lives on the host: `base` (a rootfs or a mount's source
    directory) plus components under it, never `..`, never through a symlink."""

    path: str  # the container path after resolving symlinks
    base: str
    parts: tuple[str, ...]
    mount: Mount | None  # the mount it falls in (None: the root filesystem)

    @property
    def host(self) -> str:
        return os.path.join(self.base, *self.parts) if self.parts else self.base


def _norm(path: str) -> str:
    """A clean absolute container path; `..` never climbs above '/'."""
    out: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if out:
                out.pop()
            continue
        out.append(p)
    return "/" + "/".join(out)


def locate(root: str, cpath: str, mounts: Sequence[Mount] = ()) -> Resolved:
    """The host location of an already resolved container path (longest mount first)."""
    cpath = _norm(cpath)
    best: Mount | None = None
    for m in mounts:
        d = _norm(m.destination)
        if (cpath == d or cpath.startswith(d.rstrip("/") + "/")) and (
                best is None or len(d) > len(_norm(best.destination))):
            best = m
    if best is None:
        return Resolved(cpath, root, tuple(p for p in cpath.split("/") if p), None)
    rest = tuple(p for p in cpath[len(_norm(best.destination)):].split("/") if p)
    src = os.path.normpath(best.source)
    if not rest and not os.path.isdir(src):  # a file mount (/etc/hosts): its directory + name
        return Resolved(cpath, os.path.dirname(src), (os.path.basename(src),), best)
    return Resolved(cpath, src, rest, best)


def resolve(root: str, path: str, mounts: Sequence[Mount] = (), *,
            follow_last: bool = True) -> Resolved:
    """Resolve `path` as the container sees it (symlinks scoped to the container's root).

    Why not os.path.realpath on the joined path: an absolute link target (`/etc -> /`) or
    enough `..` must stay inside the container, and links inside a volume are still the
    container's links. A missing component ends resolution; the rest is taken literally."""
    if "\x00" in path:
        raise InvalidParameter(f"invalid path {path!r}")
    todo = [p for p in path.split("/") if p not in ("", ".")]
    todo.reverse()
    cur = "/"
    links = 0
    missing = False
    while todo:
        comp = todo.pop()
        if comp == "..":
            cur = posixpath.dirname(cur) if cur != "/" else "/"
            continue
        cand = posixpath.join(cur, comp)
        if missing or (not todo and not follow_last):
            cur = cand
            continue
        loc = locate(root, cand, mounts)
        if loc.mount is not None and _norm(loc.mount.destination) == cand:
            cur = cand  # a mount's root is what was mounted there, never a link
            continue
        try:
            st = os.lstat(loc.host)
        except FileNotFoundError:
            missing = True
            cur = cand
            continue
        except NotADirectoryError:
            raise NotFound(f"{cur} is not a directory") from None
        if not stat.S_ISLNK(st.st_mode):
            cur = cand
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise InvalidParameter(f"too many levels of symbolic links in {path!r}")
        target = os.readlink(loc.host)
        if target.startswith("/"):
            cur = "/"
        todo.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
    return locate(root, cur, mounts)


def open_dir(r: Resolved, create: bool = False) -> int:
    """An O_NOFOLLOW fd of the resolved directory (ENOTDIR/ELOOP when it is not one now);
    the base itself is a host path the container cannot change (a bind source may be a link)."""
    fd = os.open(r.base, _BASE)
    try:
        for p in r.parts:
            try:
                nfd = os.open(p, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(p, 0o755, dir_fd=fd)
                nfd = os.open(p, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent(r: Resolved) -> tuple[int, str]:
    """(fd of the parent directory, final name); for the base itself, its parent and name."""
    if r.parts:
        parent = Resolved(r.path, r.base, r.parts[:-1], r.mount)
        return open_dir(parent), r.parts[-1]
    base = os.path.realpath(r.base)  # the mount's own directory, named by its real parent
    return os.open(os.path.dirname(base), _BASE), os.path.basename(base) or "."


# ---- stat header ---------------------------------------------------------------------------

def go_mode(st: os.stat_result) -> int:
    """A stat mode as Go's os.FileMode bits (the docker CLI reads IsDir() etc. from them)."""
    m = stat.S_IMODE(st.st_mode) & 0o777
    fmt = stat.S_IFMT(st.st_mode)
    m |= {stat.S_IFDIR: GO_DIR, stat.S_IFLNK: GO_SYMLINK, stat.S_IFIFO: GO_PIPE,
          stat.S_IFSOCK: GO_SOCKET, stat.S_IFBLK: GO_DEVICE,
          stat.S_IFCHR: GO_DEVICE | GO_CHARDEV}.get(fmt, 0)
    if st.st_mode & stat.S_ISUID:
        m |= GO_SETUID
    if st.st_mode & stat.S_ISGID:
        m |= GO_SETGID
    if st.st_mode & stat.S_ISVTX:
        m |= GO_STICKY
    return m


def rfc3339(t: float) -> str:
    ns = int(t * 1e9)
    base = datetime.fromtimestamp(ns // 10**9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return base + (f".{frac}" if frac else "") + "Z"


def path_stat(name: str, st: os.stat_result, link_target: str = "") -> dict[str, Any]:
    return {"name": name, "size": st.st_size, "mode": go_mode(st), "mtime": rfc3339(st.st_mtime),
            "linkTarget": link_target}


def stat_header(d: dict) -> str:
    return base64.b64encode(json.dumps(d).encode()).decode()


def rebase_name(path: str) -> str:
    """docker's filepath.Base of the path with a trailing '/.' kept ('.' copies contents);
    "/" for the root, whose entries are then "/", "/etc", ... as docker's."""
    if path.endswith("/.") or path == ".":
        return "."
    return posixpath.basename(_norm(path)) or "/"


# ---- tar out (fd-relative, never following links) -------------------------------------------

class _TarWalker:
    """Writes a tree from directory fds. `mounts` maps container paths to the mounts there:
    the walk enters a mount's source instead of the (empty) mount point in the rootfs, as
    docker's cp sees the volumes mounted into the container's root."""

    def __init__(self, tar: tarfile.TarFile, mounts: dict[str, Mount] | None = None) -> None:
        self.tar = tar
        self.inodes: dict[tuple[int, int], str] = {}
        self.mounts = mounts or {}

    def add(self, pfd: int, name: str, arc: str, cpath: str) -> None:
        """Add `name` (in directory fd `pfd`) as `arc`, recursing into directories."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone meanwhile (a running container)
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFSOCK:
            return  # tar has no sockets
        info = tarfile.TarInfo(arc)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        fd = -1
        try:
            if fmt == stat.S_IFDIR:
                info.type = tarfile.DIRTYPE
                fd = os.open(name, _DIR, dir_fd=pfd)
            elif fmt == stat.S_IFLNK:
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(name, dir_fd=pfd)
            elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
                info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif fmt == stat.S_IFIFO:
                info.type = tarfile.FIFOTYPE
            else:
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in self.inodes:
                    info.type, info.linkname = tarfile.LNKTYPE, self.inodes[key]
                else:
                    fd = os.open(name, _FILE, dir_fd=pfd)
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):  # swapped meanwhile
                        return
                    info.size = st.st_size
                    if st.st_nlink > 1:
                        self.inodes[key] = arc
            if fd >= 0:
                self._xattrs(fd, info)
            if info.isreg() and fd >= 0:
                with os.fdopen(os.dup(fd), "rb") as f:
                    self.tar.addfile(info, _Exact(f, info.size))
            else:
                self.tar.addfile(info)
            if info.isdir():
                for child in sorted(os.listdir(fd)):
                    self._child(fd, child, posixpath.join(arc, child) if arc else child,
                                posixpath.join(cpath, child))
        finally:
            if fd >= 0:
                os.close(fd)

    def _child(self, pfd: int, name: str, arc: str, cpath: str) -> None:
        mount = self.mounts.get(cpath)
        if mount is None:
            return self.add(pfd, name, arc, cpath)
        try:
            mfd, mname = open_parent(locate("/", cpath, [mount]))
        except OSError:
            return None  # a mount whose source is gone: nothing to copy
        try:
            return self.add(mfd, mname, arc, cpath)
        finally:
            os.close(mfd)

    @staticmethod
    def _xattrs(fd: int, info: tarfile.TarInfo) -> None:
        pax: dict[str, str] = {}
        with contextlib.suppress(OSError):
            for key in os.listxattr(fd):
                if key.startswith("trusted.overlay."):
                    continue
                pax["SCHILY.xattr." + key] = os.getxattr(fd, key).decode(
                    "utf-8", "surrogateescape")
        if pax:
            info.pax_headers = pax


class _Exact:
    """A file reader that yields exactly `size` bytes (zero-padded if the file shrank while
    a running container wrote to it; tarfile would otherwise fail half-way)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


def tar_path(pfd: int, name: str, arc: str, out: BinaryIO, cpath: str = "/",
             mounts: Sequence[Mount] = ()) -> None:
    """`name` in `pfd` (container path `cpath`) as `arc`, entering the mounts below it."""
    below = {_norm(m.destination): m for m in mounts
             if _norm(m.destination).startswith(cpath.rstrip("/") + "/")}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _TarWalker(tar, below).add(pfd, name, arc, cpath)


def tar_tree(dfd: int, out: BinaryIO) -> None:
    """Every entry under a directory fd, names relative to it (docker export's layout)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        w = _TarWalker(tar)
        for child in sorted(os.listdir(dfd)):
            w.add(dfd, child, child, "/" + child)


class _QueueWriter:
    """The write end of a producer thread: bounded, and fails once the reader is gone."""

    def __init__(self, q: queue.Queue, gone: threading.Event, chunk: int = 1 << 16) -> None:
        self.q, self.gone, self.chunk = q, gone, chunk
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        if len(self.buf) >= self.chunk:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if not self.buf:
            return
        data, self.buf = bytes(self.buf), bytearray()
        while True:
            if self.gone.is_set():
                raise BrokenPipeError("the reader went away")
            try:
                self.q.put(("d", data), timeout=0.5)
                return
            except queue.Full:
                continue


class Produced:
    """Chunks that fn(fileobj) writes in a thread, as an iterator (None on idle ticks).

    Why a thread: tarfile writes synchronously into a file object while the server must send
    chunks as they come and stop when the client leaves. close() (the server calls it, and
    the garbage collector as a last resort) makes the writer fail; `done` (the unmount) runs
    exactly once, also when the answer was never iterated. `ctx` (a Job tracker) is entered
    around fn."""

    def __init__(self, fn: Callable[[BinaryIO], None], done: Callable[[], None],
                 ctx: Any = None, tick: float = 1.0) -> None:
        self.fn, self.done, self.ctx, self.tick = fn, done, ctx, tick
        self.q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=32)
        self.gone = threading.Event()
        self.thread: threading.Thread | None = None
        self._done_lock = threading.Lock()
        self._done = False
        self._ended = False

    def _finish(self) -> None:
        with self._done_lock:
            if self._done:
                return
            self._done = True
        self.done()

    def _run(self) -> None:
        w = _QueueWriter(self.q, self.gone)
        try:
            with self.ctx if self.ctx is not None else contextlib.nullcontext():
                self.fn(w)  # type: ignore[arg-type]
                w.flush()
            self.q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the reader
            if not self.gone.is_set():
                self.q.put(("err", e))
        finally:
            self._finish()

    def __iter__(self) -> Produced:
        return self

    def __next__(self) -> bytes | None:
        if self._ended:
            raise StopIteration
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True, name="skiff-tar")
            self.thread.start()
        try:
            kind, val = self.q.get(timeout=self.tick)
        except queue.Empty:
            return None
        if kind == "d":
            return val
        self._ended = True
        if kind == "end":
            raise StopIteration
        raise val

    def close(self) -> None:
        self.gone.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.q.get_nowait()
        if self.thread is None:
            self._finish()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


# ---- tar in -----------------------------------------------------------------------------------

class _CopyApplier(_Applier):
    """The graph's fd-relative applier, with `docker cp` semantics instead of a layer's: no
    whiteouts, optional owner rewrite (copyUIDGID) and dir/non-dir overwrite refusal."""

    def __init__(self, dest_fd: int, *, owner: tuple[int, int] | None,
                 no_overwrite_dir_non_dir: bool, cpath: str = "/",
                 mounts: Sequence[Mount] = ()) -> None:
        super().__init__(Path("/"), "naive", allow_devices=False)
        os.close(self.root_fd)  # the graph's applier opens its root by path; ours is the fd
        self.root_fd = os.dup(dest_fd)  # resolved component by component (open_dir)
        self.owner = owner
        self.no_overwrite = no_overwrite_dir_non_dir
        # mounts below the destination, by their parts relative to it
        self.mounts: dict[tuple[str, ...], Mount] = {}
        for m in mounts:
            d = _norm(m.destination)
            if d.startswith(cpath.rstrip("/") + "/"):
                self.mounts[tuple(p for p in d[len(cpath):].split("/") if p)] = m

    def open_dir(self, parts: tuple[str, ...], member: str, create: bool = True) -> int:
        """The graph applier's walk, except that a mount point is its mount's source."""
        m = self.mounts.get(parts)
        if m is None or parts in self.dir_cache or not os.path.isdir(m.source):
            return super().open_dir(parts, member, create)
        if not m.rw:
            raise Forbidden(f"archive entry {member!r}: {m.destination} is mounted read-only")
        fd = os.open(m.source, _BASE)
        self.dir_cache[parts] = fd
        return fd

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        """A directory mount is entered; any other entry naming a mount point is refused (a
        file mount like /etc/hosts too: replacing the file under it would be invisible)."""
        parts = split_name(m.name)
        if parts in self.mounts and not (m.isdir() and os.path.isdir(self.mounts[parts].source)):
            raise InvalidParameter(f"archive entry {m.name!r}: cannot replace the mount point "
                                   f"{self.mounts[parts].destination}")
        super().member(tar, m)

    def whiteout(self, pparts: tuple[str, ...], base: str, name: str) -> None:
        raise LayerError(f"archive entry {name!r}: names starting with .wh. are not supported")

    def apply(self, tar: tarfile.TarFile) -> None:
        for m in tar:
            m.name = m.name.lstrip("/")  # docker joins names to the destination: "/x" is "x"
            if m.islnk():
                m.linkname = m.linkname.lstrip("/")
            if self.owner is not None:
                m.uid, m.gid = self.owner
            if self.no_overwrite:
                self._check_overwrite(m)
            self.member(tar, m)
        for parts, mtime_ns in reversed(self.dir_times):
            with contextlib.suppress(FileNotFoundError, LayerError):
                os.utime(self.open_dir(parts, "/".join(parts), create=False),
                         ns=(mtime_ns, mtime_ns))

    def _check_overwrite(self, m: tarfile.TarInfo) -> None:
        parts = split_name(m.name)
        if not parts:
            return
        try:
            pfd = self.open_dir(parts[:-1], m.name, create=False)
            st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
        except (FileNotFoundError, LayerError):
            return
        if stat.S_ISDIR(st.st_mode) and not m.isdir():
            raise InvalidParameter(f"cannot overwrite directory {'/' + '/'.join(parts)!r} "
                                   f"with non-directory {m.name!r}")
        if not stat.S_ISDIR(st.st_mode) and m.isdir():
            raise InvalidParameter(f"cannot overwrite non-directory {'/' + '/'.join(parts)!r} "
                                   f"with directory {m.name!r}")


def extract(dest_fd: int, fileobj: BinaryIO, *,
            owner: tuple[int, int] | None = None, no_overwrite_dir_non_dir: bool = False,
            cpath: str = "/", mounts: Sequence[Mount] = ()) -> None:
    """Extract a (possibly compressed) tar into the directory open as `dest_fd` (container
    path `cpath`; members below a directory mount land in its source)."""
    ap = _CopyApplier(dest_fd, owner=owner, cpath=_norm(cpath), mounts=mounts,
                      no_overwrite_dir_non_dir=no_overwrite_dir_non_dir)
    try:
        try:
            with tarfile.open(fileobj=decompressed(fileobj), mode="r|", errorlevel=2) as tar:
                ap.apply(tar)
        except tarfile.TarError as e:
            raise InvalidParameter(f"invalid tar archive: {e}") from None
        except LayerError as e:
            raise InvalidParameter(str(e).replace("layer entry", "archive entry").replace(
                "the layer directory", "the destination directory").replace(
                "in image layers", "in a copy into a container")) from None
        except (EOFError, OSError) as e:
            if isinstance(e, OSError) and e.errno in (errno.EROFS,):
                raise Forbidden("container rootfs is marked read-only") from None
            if isinstance(e, OSError) and e.errno == errno.EXDEV:
                raise InvalidParameter(f"archive entry: {e.strerror} (a hard link across "
                                       "mounts)") from None
            if isinstance(e, EOFError) or e.errno is None:
                raise InvalidParameter(f"invalid tar archive: {e}") from None
            raise
    finally:
        ap.close()


# ---- the container side ------------------------------------------------------------------------

def container_mounts(m: Any, c: Any) -> list[Mount]:
    """The mounts the daemon can reach on the host: binds, volumes and the /etc files."""
    out = [Mount(mp.destination, mp.source, mp.rw) for mp in c.mounts
           if mp.type in ("bind", "volume") and mp.source]
    cdir = m.cdir_of(c.id)
    dests = {x.destination for x in out}
    for name in ("hostname", "hosts", "resolv.conf"):
        dest = f"/etc/{name}"
        if dest not in dests and (cdir / name).exists():
            out.append(Mount(dest, str(cdir / name), True))
    return out


def read_file(root: str, mounts: Sequence[Mount], cpath: str, limit: int = 1 << 20) -> bytes:
    """The first `limit` bytes of a regular file as the container sees it (b"" otherwise):
    symlinks resolved inside the container, opened O_NOFOLLOW|O_NONBLOCK (a fifo or a host
    path never blocks or leaks the daemon)."""
    try:
        pfd, name = open_parent(resolve(root, cpath, mounts))
    except (OSError, NotFound, InvalidParameter):
        return b""
    try:
        fd = os.open(name, _FILE, dir_fd=pfd)
    except OSError:
        return b""
    finally:
        os.close(pfd)
    with os.fdopen(fd, "rb") as f:
        return f.read(limit) if stat.S_ISREG(os.fstat(fd).st_mode) else b""


def user_dbs(root: str, mounts: Sequence[Mount]) -> tuple[str, str]:
    """The container's /etc/passwd and /etc/group as it sees them (resolved inside its root,
    regular files only, size-capped): what spec.resolve_user reads."""
    passwd, group = (read_file(root, mounts, f"/etc/{db}").decode(errors="replace")
                     for db in ("passwd", "group"))
    return passwd, group


def container_user(root: str, mounts: Sequence[Mount], user: str) -> tuple[int, int]:
    """(uid, gid) of the container's User from its own /etc/passwd and /etc/group (cp -a)."""
    from .spec import resolve_user

    uid, gid, _ = resolve_user(user, *user_dbs(root, mounts))
    return uid, gid


@contextlib.contextmanager
def mounted_rootfs(m: Any, c: Any) -> Iterator[str]:
    """The container's root filesystem, mounted for the duration (running or not)."""
    with c.lock:
        if c.removed or c.state.status in ("removing", "dead"):
            raise Conflict(f"container {c.id} is marked for removal")
        root = str(m.graph.mount(c.id))
    try:
        yield root
    finally:
        with contextlib.suppress(Exception):
            m.graph.unmount(c.id)


class ContainerFS:
    """`docker cp` and `docker export` over a ContainerManager (see the module docstring)."""

    def __init__(self, manager: Any) -> None:
        self.m = manager

    def _path_arg(self, path: str | None) -> str:
        if not path:
            raise InvalidParameter("path is required: ?path= must name a path in the container")
        return path if path.startswith("/") else "/" + path

    def stat(self, ref: str, path: str | None) -> dict[str, Any]:
        c = self.m.get(ref)
        path = self._path_arg(path)
        with mounted_rootfs(self.m, c) as root:
            st, _, info = self._stat(root, c, path)
        return info

    def _stat(self, root: str, c: Any, path: str) -> tuple[os.stat_result, Resolved, dict]:
        mounts = container_mounts(self.m, c)
        follow = path.endswith("/") or path.endswith("/.")
        r = resolve(root, path, mounts, follow_last=follow)
        try:
            pfd, name = open_parent(r)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Could not find the file {path} in container "
                           f"{c.name.lstrip('/')}") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Conflict(f"{path} changed while it was being resolved") from None
            raise
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Could not find the file {path} in container "
                           f"{c.name.lstrip('/')}") from None
        finally:
            os.close(pfd)
        link = ""
        if stat.S_ISLNK(st.st_mode):
            link = resolve(root, r.path, mounts, follow_last=True).path
        return st, r, path_stat(rebase_name(path), st, link)

    def get_archive(self, ref: str, path: str | None, ctx: Any = None
                    ) -> tuple[dict[str, Any], Produced]:
        """(path stat, tar chunks): the path and its contents, named after its base name."""
        c = self.m.get(ref)
        path = self._path_arg(path)
        cm = mounted_rootfs(self.m, c)
        root = cm.__enter__()
        try:
            st, r, info = self._stat(root, c, path)
            pfd, name = open_parent(r)
        except BaseException:
            cm.__exit__(None, None, None)
            raise
        arc = rebase_name(path)
        mounts = container_mounts(self.m, c)

        def write(out: BinaryIO) -> None:
            tar_path(pfd, name, arc, out, r.path, mounts)

        def done() -> None:
            os.close(pfd)
            cm.__exit__(None, None, None)

        return info, Produced(write, done, ctx)

    def put_archive(self, ref: str, path: str | None, body: BinaryIO, *,
                    no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        c = self.m.get(ref)
        path = self._path_arg(path)
        with mounted_rootfs(self.m, c) as root:
            mounts = container_mounts(self.m, c)
            r = resolve(root, path, mounts, follow_last=True)
            try:
                fd = open_dir(r)
            except FileNotFoundError:
                raise NotFound(f"Could not find the file {path} in container "
                               f"{c.name.lstrip('/')}") from None
            except OSError as e:
                if e.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise InvalidParameter(f"extraction point is not a directory: {path}") \
                        from None
                raise
            try:
                if r.mount is not None and not r.mount.rw or r.mount is None and \
                        c.host_config.get("ReadonlyRootfs"):
                    raise Forbidden("container rootfs is marked read-only")
                owner = None
                if copy_uid_gid:
                    owner = container_user(root, mounts, c.config.get("User") or "")
                extract(fd, body, owner=owner, cpath=r.path, mounts=mounts,
                        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir)
            finally:
                os.close(fd)

    def export(self, ref: str, ctx: Any = None) -> Produced:
        c = self.m.get(ref)
        cm = mounted_rootfs(self.m, c)
        root = cm.__enter__()
        try:
            dfd = os.open(root, _DIR)
        except BaseException:
            cm.__exit__(None, None, None)
            raise

        def done() -> None:
            os.close(dfd)
            cm.__exit__(None, None, None)

        return Produced(lambda out: tar_tree(dfd, out), done, ctx)
