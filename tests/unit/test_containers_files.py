"""The pure parts of docker cp / diff / commit / healthchecks: path resolution inside a root,
tar in and out without leaving it, change detection, the health state machine."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from engine.containers import archive as ar
from engine.containers import changes as ch
from engine.containers import health as hl
from engine.containers.commit import commit_config
from engine.errors import Conflict, Forbidden, InvalidParameter, NotFound

# ---- resolution -------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0\n")
    (r / "tmp").mkdir()
    (r / "tmp" / "abs").symlink_to("/etc")  # absolute: the container's /etc
    (r / "tmp" / "up").symlink_to("../../../../../..")  # climbs: stops at the root
    (r / "tmp" / "loop").symlink_to("loop")
    (r / "tmp" / "file").write_text("x")
    (r / "tmp" / "flink").symlink_to("file")
    return r


def test_resolve_plain_and_dotdot_stay_inside(root: Path) -> None:
    r = ar.resolve(str(root), "/etc/passwd")
    assert r.path == "/etc/passwd" and r.host == str(root / "etc" / "passwd")
    assert ar.resolve(str(root), "/../../../etc/./passwd").host == str(root / "etc/passwd")


def test_resolve_absolute_symlink_is_the_containers(root: Path) -> None:
    r = ar.resolve(str(root), "/tmp/abs/passwd")
    assert r.path == "/etc/passwd" and r.host.startswith(str(root) + "/")


def test_resolve_relative_symlink_cannot_climb_out(root: Path) -> None:
    r = ar.resolve(str(root), "/tmp/up/etc/passwd")
    assert r.path == "/etc/passwd" and r.host == str(root / "etc" / "passwd")
    assert ar.resolve(str(root), "/tmp/up").host == str(root)


def test_resolve_last_component_followed_only_when_asked(root: Path) -> None:
    assert ar.resolve(str(root), "/tmp/flink", follow_last=False).path == "/tmp/flink"
    assert ar.resolve(str(root), "/tmp/flink").path == "/tmp/file"


def test_resolve_symlink_loop_is_400(root: Path) -> None:
    with pytest.raises(InvalidParameter, match="symbolic links"):
        ar.resolve(str(root), "/tmp/loop/x")


def test_resolve_missing_rest_is_literal(root: Path) -> None:
    assert ar.resolve(str(root), "/nope/../etc/x").path == "/etc/x"
    assert ar.resolve(str(root), "/nope/a/b").path == "/nope/a/b"


def test_resolve_mounts_dir_and_file(root: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    (vol / "sub" / "lnk").symlink_to("/etc")  # a link inside a volume is the container's
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    mounts = [ar.Mount("/data", str(vol)), ar.Mount("/etc/hosts", str(hosts), rw=False)]
    r = ar.resolve(str(root), "/data/sub/x", mounts)
    assert r.base == str(vol) and r.parts == ("sub", "x") and r.mount == mounts[0]
    r = ar.resolve(str(root), "/data/sub/lnk/passwd", mounts)
    assert r.host == str(root / "etc" / "passwd") and r.mount is None
    r = ar.resolve(str(root), "/etc/hosts", mounts)
    assert r.host == str(hosts) and r.mount is not None and not r.mount.rw


def test_open_dir_refuses_a_component_swapped_for_a_symlink(root: Path) -> None:
    r = ar.resolve(str(root), "/tmp/sub")
    (root / "tmp" / "sub").symlink_to("/")  # the race: resolved, then swapped
    with pytest.raises(OSError):
        ar.open_dir(r)


def test_stat_header_shapes(root: Path) -> None:
    st = os.lstat(root / "etc")
    d = ar.path_stat("etc", st)
    assert d["mode"] & ar.GO_DIR and d["mode"] & 0o777 == stat.S_IMODE(st.st_mode)
    assert d["mtime"].endswith("Z") and d["name"] == "etc"
    ln = ar.path_stat("abs", os.lstat(root / "tmp" / "abs"), "/etc")
    assert ln["mode"] & ar.GO_SYMLINK and ln["linkTarget"] == "/etc"
    assert ar.rebase_name("/etc/.") == "." and ar.rebase_name("/etc/") == "etc"
    assert ar.rebase_name("/") == "/"  # docker: filepath.Base("/")


# ---- tar out / in -------------------------------------------------------------------------------


def _names(data: bytes) -> list[str]:
    return tarfile.open(fileobj=io.BytesIO(data)).getnames()


def test_tar_path_keeps_links_as_links(root: Path) -> None:
    os.link(root / "tmp" / "file", root / "tmp" / "hard")
    out = io.BytesIO()
    pfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ar.tar_path(pfd, "tmp", "tmp", out)
    finally:
        os.close(pfd)
    t = tarfile.open(fileobj=io.BytesIO(out.getvalue()))
    members = {m.name: m for m in t.getmembers()}
    assert members["tmp/abs"].issym() and members["tmp/abs"].linkname == "/etc"
    assert members["tmp/hard"].islnk() or members["tmp/file"].islnk()
    assert "tmp/abs/passwd" not in members  # never followed


def test_produced_runs_done_once_even_when_never_iterated() -> None:
    calls = []
    p = ar.Produced(lambda out: out.write(b"x" * 10), lambda: calls.append(1))
    p.close()
    assert calls == [1]
    p2 = ar.Produced(lambda out: out.write(b"abc"), lambda: calls.append(2), tick=0.05)
    assert b"".join(c for c in p2 if c) == b"abc"
    assert calls == [1, 2]


def _tar(*members: tuple[str, bytes | None]) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


def _extract(dest: Path, data: bytes, **kw) -> None:
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ar.extract(fd, io.BytesIO(data), **kw)
    finally:
        os.close(fd)


def test_extract_writes_inside_and_refuses_escapes(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    _extract(dest, _tar(("a", None), ("a/b.txt", b"hi")))
    assert (dest / "a" / "b.txt").read_text() == "hi"
    with pytest.raises(InvalidParameter):
        _extract(dest, _tar(("../x", b"x")))
    # docker joins member names to the destination: "/abs" (tar -P) is "abs" there
    _extract(dest, _tar(("/abs", b"x"), ("/a/b.txt", b"again")))
    assert (dest / "abs").read_text() == "x" and (dest / "a" / "b.txt").read_text() == "again"
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        hl_ = tarfile.TarInfo("/hard")
        hl_.type, hl_.linkname = tarfile.LNKTYPE, "/abs"
        t.addfile(hl_)
    _extract(dest, b.getvalue())
    assert os.path.samefile(dest / "hard", dest / "abs")
    (dest / "out").symlink_to(tmp_path)
    with pytest.raises(InvalidParameter, match="symlink"):
        _extract(dest, _tar(("out/pwned", b"x")))
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "x").exists()


def test_extract_no_overwrite_dir_non_dir(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    (dest / "dir").mkdir(parents=True)
    (dest / "file").write_text("f")
    with pytest.raises(InvalidParameter, match="cannot overwrite directory"):
        _extract(dest, _tar(("dir", b"x")), no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidParameter, match="cannot overwrite non-directory"):
        _extract(dest, _tar(("file", None)), no_overwrite_dir_non_dir=True)
    _extract(dest, _tar(("file", b"new")), no_overwrite_dir_non_dir=True)
    assert (dest / "file").read_text() == "new"


def test_extract_refuses_whiteout_names_and_devices(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("k")
    with pytest.raises(InvalidParameter, match=".wh."):
        _extract(tmp_path, _tar((".wh.keep", b"")))
    assert (tmp_path / "keep").exists()
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        ti = tarfile.TarInfo("null")
        ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
        t.addfile(ti)
    with pytest.raises(InvalidParameter, match="archive entry 'null': character device 1:3 is "
                                               "not allowed in a copy into a container"):
        _extract(tmp_path, b.getvalue())


# ---- changes ----------------------------------------------------------------------------------


def _fifo_whiteout(st: os.stat_result) -> bool:  # mknod 0/0 needs root: fifos stand in
    return stat.S_ISFIFO(st.st_mode)


def test_overlay_changes_kinds(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for p in ("etc", "bin", "usr/lib"):
        (lower / p).mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("a")
    (lower / "bin" / "vi").write_text("vi")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "passwd").write_text("b")
    (upper / "bin").mkdir()
    os.mkfifo(upper / "bin" / "vi")
    (upper / "new" / "deep").mkdir(parents=True)
    (upper / "new" / "deep" / "f").write_text("x")
    got = ch.overlay_changes(upper, [lower], _fifo_whiteout)
    assert got == [("/bin", ch.MODIFIED), ("/bin/vi", ch.DELETED), ("/etc", ch.MODIFIED),
                   ("/etc/passwd", ch.MODIFIED), ("/new", ch.ADDED), ("/new/deep", ch.ADDED),
                   ("/new/deep/f", ch.ADDED)]


def test_dir_changes_vfs(tmp_path: Path) -> None:
    parent, layer = tmp_path / "p", tmp_path / "l"
    (parent / "etc").mkdir(parents=True)
    (parent / "etc" / "a").write_text("1")
    (parent / "gone" / "sub").mkdir(parents=True)
    os.system(f"cp -a {parent} {layer}")
    (layer / "etc" / "a").write_text("22")
    (layer / "etc" / "b").write_text("new")
    os.system(f"rm -rf {layer / 'gone'}")
    got = dict(ch.dir_changes(parent, layer))
    assert got["/etc/a"] == ch.MODIFIED and got["/etc/b"] == ch.ADDED
    assert got["/gone"] == ch.DELETED and "/gone/sub" not in got


def test_drop_mountpoints_hides_runtime_files_and_their_parent() -> None:
    changes = [("/etc", ch.MODIFIED), ("/etc/hosts", ch.ADDED), ("/tmp", ch.MODIFIED),
               ("/tmp/f", ch.ADDED)]
    assert ch.drop_mountpoints(changes, ["/etc/hosts"]) == [("/tmp", ch.MODIFIED),
                                                             ("/tmp/f", ch.ADDED)]
    mixed = [("/etc", ch.MODIFIED), ("/etc/hosts", ch.ADDED), ("/etc/motd", ch.ADDED)]
    assert ch.drop_mountpoints(mixed, ["/etc/hosts"]) == [("/etc", ch.MODIFIED),
                                                           ("/etc/motd", ch.ADDED)]


def test_tree_size_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100)
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "c").write_bytes(b"y" * 10)
    assert ch.tree_size(tmp_path) == 110


# ---- health ------------------------------------------------------------------------------------


def _rec(h: dict, cfg: hl.HealthConfig, code: int, since: float = 100.0) -> bool:
    return hl.record(h, cfg, exit_code=code, output="out" * 2000, start="s", end="e",
                     since_start=since)


def test_health_state_machine() -> None:
    cfg = hl.HealthConfig(("true",), retries=2, start_period=10.0)
    h = hl.initial()
    assert not _rec(h, cfg, 1, since=1.0)  # failing inside the start period: not counted
    assert h["Status"] == hl.STARTING and h["FailingStreak"] == 0
    assert _rec(h, cfg, 0) and h["Status"] == hl.HEALTHY
    assert not _rec(h, cfg, 1) and h["FailingStreak"] == 1 and h["Status"] == hl.HEALTHY
    assert _rec(h, cfg, 3) and h["Status"] == hl.UNHEALTHY and h["FailingStreak"] == 2
    assert _rec(h, cfg, 0) and h["FailingStreak"] == 0
    for _ in range(7):
        _rec(h, cfg, 0)
    assert len(h["Log"]) == hl.MAX_LOG and len(h["Log"][-1]["Output"]) == hl.MAX_OUTPUT
    assert not _rec(h, cfg, 1, since=1.0) and h["FailingStreak"] == 1  # healthy: counts


def test_health_stop_is_unhealthy_and_a_restart_starts_over_keeping_the_log() -> None:
    """docker: a stopped container's probing stops and it shows unhealthy; the next run is
    starting with no failing streak, and keeps the last run's Log."""
    cfg = hl.HealthConfig(("true",), retries=1)
    h = hl.initial()
    _rec(h, cfg, 1)
    assert h["Status"] == hl.UNHEALTHY
    hl.stopped(h)
    assert h["Status"] == hl.UNHEALTHY
    h2 = hl.initial(h)
    assert h2["Status"] == hl.STARTING and h2["FailingStreak"] == 0 and len(h2["Log"]) == 1
    _rec(h2, cfg, 0)
    hl.stopped(h2)
    assert h2["Status"] == hl.UNHEALTHY and h2["FailingStreak"] == 0
    hl.stopped(None)  # no healthcheck: nothing to do


def test_health_instruction_errors_are_400() -> None:
    """A shell command with an apostrophe is fine; a bad --retries is a 400, not a 500."""
    hc = hl.parse_healthcheck_instruction("--timeout=3s CMD echo it's ok")
    assert hc["Test"] == ["CMD-SHELL", "echo it's ok"] and hc["Timeout"] == 3 * 10**9
    with pytest.raises(InvalidParameter, match="retries"):
        hl.parse_healthcheck_instruction("--retries=two CMD true")


def test_health_config_and_suffix() -> None:
    assert hl.config_of({}) is None
    assert hl.config_of({"Healthcheck": {"Test": ["NONE"]}}) is None
    c = hl.config_of({"Healthcheck": {"Test": ["CMD-SHELL", "curl x"], "Interval": 2 * 10**9,
                                      "Retries": 0}})
    assert c is not None and c.argv == ("/bin/sh", "-c", "curl x") and c.interval == 2.0
    assert c.retries == hl.DEFAULT_RETRIES and c.timeout == hl.DEFAULT_TIMEOUT
    assert hl.ps_suffix({"Status": "starting"}) == " (health: starting)"
    assert hl.ps_suffix({"Status": "healthy"}) == " (healthy)"
    assert hl.public({"Status": "x", "_StartedAt": "t"}) == {"Status": "x"}


@pytest.mark.parametrize("bad,word", [
    ({"Test": "true"}, "Test"), ({"Test": ["RUN", "x"]}, "CMD"), ({"Test": ["CMD"]}, "needs"),
    ({"Interval": 5}, "1ms"), ({"Timeout": "1s"}, "nanoseconds"), ({"Retries": -1}, "negative"),
])
def test_health_validate_names_the_field(bad: dict, word: str) -> None:
    with pytest.raises(InvalidParameter, match=word):
        hl.validate(bad)


def test_parse_duration_and_instruction() -> None:
    assert hl.parse_duration("1m30s") == 90 * 10**9 and hl.parse_duration("250ms") == 25 * 10**7
    with pytest.raises(InvalidParameter):
        hl.parse_duration("5 parsecs")
    hc = hl.parse_healthcheck_instruction("--interval=5s --retries=2 CMD curl -f x || exit 1")
    assert hc == {"Interval": 5 * 10**9, "Retries": 2,
                  "Test": ["CMD-SHELL", "curl -f x || exit 1"]}
    assert hl.parse_healthcheck_instruction('CMD ["true"]')["Test"] == ["CMD", "true"]
    assert hl.parse_healthcheck_instruction("NONE") == {"Test": ["NONE"]}


def test_commit_config_keeps_image_fields_and_applies_changes() -> None:
    cfg = commit_config({"Hostname": "abc", "Cmd": ["sh"], "Env": ["A=1"], "Image": "busybox",
                         "AttachStdout": True}, None,
                        ["ENV B=2", "CMD [\"echo\", \"x\"]", "HEALTHCHECK CMD true"])
    assert "Hostname" not in cfg and "Image" not in cfg and "AttachStdout" not in cfg
    assert cfg["Cmd"] == ["echo", "x"] and "B=2" in cfg["Env"]
    assert cfg["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    with pytest.raises(InvalidParameter):
        commit_config({}, None, ["FROB x"])


# ---- client copy rules -----------------------------------------------------------------------------


def test_client_split_target_and_rebase() -> None:
    from engine.client import copy as cp

    assert cp.split_target("web:/etc") == ("web", "/etc")
    assert cp.split_target("./a:b") == (None, "./a:b")
    assert cp.split_target("/abs:x") == (None, "/abs:x")
    ms = [tarfile.TarInfo(n) for n in ("etc", "etc/passwd")]
    assert [m.name for m in cp.rebase(iter(ms), "etc", "copy")] == ["copy", "copy/passwd"]
    with pytest.raises(cp.CopyError):
        list(cp.rebase(iter([tarfile.TarInfo("../x")]), "x", "y"))


def test_missing_path_is_404_through_container_fs(tmp_path: Path) -> None:
    class C:
        id, name, mounts, removed = "c" * 64, "/c", [], False
        host_config: dict = {}
        config: dict = {}

        class state:
            status = "exited"

        import threading

        lock = threading.RLock()

    class G:
        def mount(self, cid: str) -> Path:
            return tmp_path

        def unmount(self, cid: str) -> None:
            pass

    class M:
        graph = G()

        def get(self, ref: str) -> C:
            return C()

        def cdir_of(self, cid: str) -> Path:
            return tmp_path / "none"

    fs = ar.ContainerFS(M())
    with pytest.raises(NotFound, match="Could not find the file /nope"):
        fs.stat("c", "/nope")
    with pytest.raises(InvalidParameter, match="path is required"):
        fs.stat("c", "")


class _MP:
    def __init__(self, destination: str, source: Path, rw: bool = True) -> None:
        self.type, self.destination, self.source, self.rw = "bind", destination, str(source), rw


def _container_fs(root: Path, mounts: list | tuple = (), user: str = "") -> ar.ContainerFS:
    """ContainerFS over a fake manager whose one container's rootfs is `root`."""
    import threading

    class C:
        id, name, removed = "c" * 64, "/c", False
        host_config: dict = {}

        class state:
            status = "running"

        lock = threading.RLock()

    C.mounts = list(mounts)  # type: ignore[attr-defined]
    C.config = {"User": user}  # type: ignore[attr-defined]

    class M:
        class graph:
            @staticmethod
            def mount(cid: str) -> Path:
                return root

            @staticmethod
            def unmount(cid: str) -> None:
                pass

        def get(self, ref: str) -> C:
            return C()

        def cdir_of(self, cid: str) -> Path:
            return root / "nonexistent-cdir"

    return ar.ContainerFS(M())


def _get(fs: ar.ContainerFS, path: str) -> dict[str, bytes | None]:
    _, chunks = fs.get_archive("c", path)
    data = b"".join(c for c in chunks if c)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: (t.extractfile(m).read() if m.isreg() else None)  # type: ignore[union-attr]
                for m in t}


def test_cp_reaches_dir_mounts_below_the_path_both_ways(tmp_path: Path) -> None:
    """docker mounts the volumes into the rootfs for cp: `cp c:/data` includes the volume at
    /data/vol, and a tar into /data writes vol/... into the volume, not under its mount point;
    a read-only one refuses, and a member cannot replace a mount point."""
    root = tmp_path / "root"
    (root / "data" / "vol").mkdir(parents=True)
    (root / "data" / "ro").mkdir()
    (root / "data" / "own.txt").write_text("rootfs")
    vol, ro = tmp_path / "vol", tmp_path / "ro"
    vol.mkdir()
    ro.mkdir()
    (vol / "v.txt").write_text("volume")
    fs = _container_fs(root, [_MP("/data/vol", vol), _MP("/data/ro", ro, rw=False)])
    got = _get(fs, "/data")
    assert got["data/vol/v.txt"] == b"volume" and got["data/own.txt"] == b"rootfs"
    fs.put_archive("c", "/data", io.BytesIO(_tar(("vol/sub", None), ("vol/sub/n.txt", b"n"))))
    assert (vol / "sub" / "n.txt").read_text() == "n"
    assert not (root / "data" / "vol" / "sub").exists()
    with pytest.raises(Forbidden):
        fs.put_archive("c", "/data", io.BytesIO(_tar(("ro/x", b"x"))))
    assert not (ro / "x").exists() and not (root / "data" / "ro" / "x").exists()
    with pytest.raises(InvalidParameter, match="mount point"):
        fs.put_archive("c", "/data", io.BytesIO(_tar(("vol", b"not a dir"))))
    assert (vol / "v.txt").exists() and (root / "data" / "vol").is_dir()


def test_cp_archive_owner_reads_the_containers_passwd_not_the_hosts(tmp_path: Path) -> None:
    """`cp -a` looks the container's User up in the container's /etc/passwd: an absolute
    symlink there is the container's path, never a host file (nor a fifo that blocks)."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("evil:x:4242:4242::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to(host / "passwd")
    (root / "etc" / "group").symlink_to(host / "passwd")
    fs = _container_fs(root, user="evil")
    with pytest.raises(InvalidParameter, match="unable to find user evil"):
        fs.put_archive("c", "/", io.BytesIO(_tar(("f", b"x"))), copy_uid_gid=True)
    (root / "etc" / "passwd").unlink()
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(InvalidParameter, match="unable to find user evil"):
        fs.put_archive("c", "/", io.BytesIO(_tar(("f", b"x"))), copy_uid_gid=True)


def test_diff_walk_never_follows_a_directory_swapped_for_a_symlink(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running container can swap a directory of its upper dir for a symlink to / while
    `docker diff` (or ?size=1) walks it: the walk must not list or size the host's files.
    The swap is made deterministic: right after the walk has stat'ed `d` as a directory."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "HOST-SECRET").write_text("x" * 1000)
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "f").write_text("f")
    real_stat, real_lstat = os.stat, os.lstat
    swapped: list[bool] = []

    def swap_after(result: os.stat_result, name: object) -> os.stat_result:
        if str(name).endswith("d") and stat.S_ISDIR(result.st_mode) and not swapped:
            swapped.append(True)
            os.rename(upper / "d", upper / "d.real")
            os.symlink(host, upper / "d")
        return result

    monkeypatch.setattr(os, "stat", lambda p, *a, **k: swap_after(real_stat(p, *a, **k), p))
    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: swap_after(real_lstat(p, *a, **k), p))
    names = [rel for rel, _ in ch._walk(upper)]
    monkeypatch.undo()
    assert swapped and not any("HOST-SECRET" in n for n in names), names


def _commit_fakes(tmp_path: Path, status: str, pause_ok: bool = True):
    """A manager whose rw_layer_diff records whether the container was frozen, then stops."""
    events: list[str] = []

    class Stop(Exception):
        pass

    class C:
        id, name, config, image_id = "c" * 64, "/c", {"Cmd": ["sh"]}, "sha256:" + "i" * 64

        class state:
            pass

    C.state.status = status

    class Driver:
        def pause(self, cid: str) -> None:
            if not pause_ok:
                raise OSError("freezer broken")
            events.append("pause")

        def resume(self, cid: str) -> None:
            events.append("resume")

    from engine.graph.blobs import BlobStore

    class G:
        blobs = BlobStore(tmp_path)

        def prune_layers(self) -> None:
            events.append("prune")

        def get(self, iid: str) -> object:
            return object()

        def rw_layer_chain(self, cid: str) -> None:
            return None

        def rw_layer_diff(self, cid: str, out: object) -> None:
            events.append("diff")
            raise Stop

    class M:
        graph, driver = G(), Driver()

        def get(self, ref: str) -> C:
            return C()

    return M(), events, Stop


@pytest.mark.parametrize("pause", [True, False])
def test_commit_freezes_a_running_container_while_reading_its_layer(
        tmp_path: Path, pause: bool) -> None:
    """The graph writes the layer tar by path: a running container swapping a file for a
    symlink to a host file meanwhile would put the host's file in the image. So the diff is
    always taken frozen (pause=false too), and a failed freeze is a 409, not a silent race."""
    from engine.containers.commit import commit

    m, events, stop = _commit_fakes(tmp_path, "running")
    with pytest.raises(stop):
        commit(m, "c", pause=pause)
    assert events == ["pause", "diff", "resume", "prune"]
    m, events, stop = _commit_fakes(tmp_path, "exited")
    with pytest.raises(stop):
        commit(m, "c", pause=pause)
    assert events == ["diff", "prune"]
    m, events, stop = _commit_fakes(tmp_path, "running", pause_ok=False)
    with pytest.raises(Conflict, match="freeze"):
        commit(m, "c", pause=pause)
    assert events == ["prune"]
    assert not list((tmp_path / "tmp").iterdir())  # the spooled diff is gone


def test_cp_of_the_root_uses_dockers_layout(tmp_path: Path) -> None:
    """GET archive of "/" names entries "/", "/etc", ... (docker's rebase of "." to "/"): the
    docker CLI puts them under the destination by prefixing its name ("out" + "/etc"), so
    "./etc" made it write "out./etc". The skiff client takes the same layout."""
    from engine.client import copy as cp

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    info, chunks = _container_fs(root).get_archive("c", "/")
    data = b"".join(c for c in chunks if c)
    assert info["name"] == "/"
    assert _names(data) == ["", "/etc", "/etc/passwd"]  # tarfile reads "/" back as ""
    ms = list(tarfile.open(fileobj=io.BytesIO(data)))
    assert [m.name for m in cp.rebase(iter(ms), "/", "out")] == ["out", "out/etc",
                                                                 "out/etc/passwd"]
    ms = list(tarfile.open(fileobj=io.BytesIO(data)))
    assert [m.name for m in cp.rebase(iter(ms), "/", "/")] == ["etc", "etc/passwd"]


def test_cp_onto_a_file_mount_is_refused_not_hidden(tmp_path: Path) -> None:
    """A tar entry for /etc/hosts (a bind-mounted file) would replace the rootfs's file under
    the mount, where nobody sees it, and report success; docker fails there (EBUSY)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    fs = _container_fs(root, [_MP("/etc/hosts", hosts)])
    with pytest.raises(InvalidParameter, match="mount point"):
        fs.put_archive("c", "/etc", io.BytesIO(_tar(("hosts", b"evil"))))
    with pytest.raises(InvalidParameter, match="mount point"):
        fs.put_archive("c", "/", io.BytesIO(_tar(("etc", None), ("etc/hosts", b"evil"))))
    assert hosts.read_text() == "127.0.0.1 localhost\n" and (root / "etc" / "hosts").exists()


def test_a_bind_source_that_is_a_host_symlink_is_the_mount_not_a_link(tmp_path: Path) -> None:
    (tmp_path / "root" / "data").mkdir(parents=True)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    fs = _container_fs(tmp_path / "root", [_MP("/data", tmp_path / "link")])
    r = ar.resolve(str(tmp_path / "root"), "/data/x", [ar.Mount("/data", str(tmp_path / "link"))])
    assert r.path == "/data/x" and r.parts == ("x",)
    fs.put_archive("c", "/data", io.BytesIO(_tar(("in.txt", b"i"))))
    assert (tmp_path / "real" / "in.txt").read_text() == "i"
    assert _get(fs, "/data") == {"data": None, "data/in.txt": b"i"}


def test_health_start_period_is_judged_at_the_probe_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker compares the probe's *start* with the start period: a failing probe that began
    inside it does not count, even when it ends after it."""
    import threading

    from engine.containers.state import now_iso

    class C:
        id, removed, exit_gen, lock = "c" * 64, False, 0, threading.RLock()
        health = hl.initial()

        class state:
            status = "running"
            started_at = now_iso()

    class M:
        _closing = False

        def _save(self, c: C) -> None:
            c.removed = True  # one probe is enough

        def emit(self, c: C, what: str) -> None:
            pass

    def slow_failing_probe(m: M, c: C, cfg: hl.HealthConfig) -> tuple[int, str]:
        import time

        time.sleep(0.4)
        return 1, "down"

    monkeypatch.setattr(hl, "probe", slow_failing_probe)
    cfg = hl.HealthConfig(("false",), interval=0.01, retries=1, start_period=0.3)
    c = C()
    hl._loop(M(), c, cfg, 0)
    assert c.health["Status"] == hl.STARTING and c.health["FailingStreak"] == 0
    assert len(c.health["Log"]) == 1
