"""Layer application: what a layer may do (whiteouts, links, modes, compression) and may not.

Every escape attempt must raise LayerError and leave the sentinel directory next to the layer
untouched: no byte outside the layer.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from engine.graph.archive import LayerError, apply_layer, split_name, tar_changes
from tests.images.layers import mk


@pytest.fixture
def box(tmp_path: Path):
    """(layer dir, sentinel dir outside it, snapshot function of the sentinel)."""
    layer = tmp_path / "layer"
    outside = tmp_path / "outside"
    layer.mkdir()
    outside.mkdir()
    (outside / "keep").write_text("untouched")

    def snapshot():
        out = {}
        for root, dirs, files in os.walk(tmp_path):
            if root.startswith(str(layer)):
                continue
            for n in dirs + files:
                p = Path(root) / n
                if p == layer:
                    continue
                st = os.lstat(p)
                out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns,
                               p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        return out

    return layer, outside, snapshot


ESCAPES = {
    "absolute": [("f", "/etc/evil", "x")],
    "dotdot": [("f", "../outside/evil", "x")],
    "dotdot-deep": [("d", "a"), ("f", "a/../../outside/evil", "x")],
    "symlink-abs-dir": [("l", "evil", "/"), ("f", "evil/tmp/skt3-evil", "x")],
    "symlink-rel-out": [("l", "evil", "../outside"), ("f", "evil/keep", "pwned")],
    "symlink-chain": [("l", "a", "b"), ("l", "b", "../outside"), ("f", "a/keep", "pwned")],
    "symlink-then-dir": [("l", "evil", "../outside"), ("d", "evil/sub")],
    "symlink-then-symlink": [("l", "evil", "../outside"), ("l", "evil/link", "/etc/passwd")],
    "symlink-then-hardlink": [("f", "t", "x"), ("l", "evil", "../outside"), ("h", "evil/h", "t")],
    "hardlink-dotdot": [("h", "h", "../outside/keep")],
    "hardlink-absolute": [("h", "h", "/etc/passwd")],
    "hardlink-through-symlink": [("l", "evil", "../outside"), ("h", "h", "evil/keep")],
    "hardlink-missing": [("h", "h", "nope")],
    "char-device": [("c", "dev/mem", (1, 1))],
    "block-device": [("b", "dev/sda", (8, 0))],
    "whiteout-through-symlink": [("l", "evil", "../outside"), ("f", "evil/.wh.keep", "")],
    "opaque-through-symlink": [("l", "evil", "../outside"), ("f", "evil/.wh..wh..opq", "")],
    "file-as-dir": [("f", "a", "x"), ("f", "a/b", "y")],
}


@pytest.mark.parametrize("whiteouts", ["naive", "overlay"])
@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_is_refused_and_nothing_leaks(box, name, whiteouts):
    layer, outside, snapshot = box
    before = snapshot()
    with pytest.raises(LayerError) as e:
        apply_layer(io.BytesIO(mk(ESCAPES[name])), layer, whiteouts=whiteouts)
    assert str(e.value)  # a message that names the entry
    assert snapshot() == before
    assert (outside / "keep").read_text() == "untouched"
    assert not Path("/tmp/skt3-evil").exists()


@pytest.mark.parametrize("name,needle", [
    ("absolute", "absolute"), ("dotdot", "'..'"), ("symlink-rel-out", "symlink"),
    ("char-device", "device"), ("hardlink-missing", "not in the layer"),
])
def test_escape_messages_are_clear(box, name, needle):
    layer, _, _ = box
    with pytest.raises(LayerError, match=needle):
        apply_layer(io.BytesIO(mk(ESCAPES[name])), layer)


def test_devices_allowed_when_asked(box):
    if os.geteuid() != 0:
        pytest.skip("mknod of devices needs root")
    layer, _, _ = box
    apply_layer(io.BytesIO(mk([("c", "null", (1, 3))])), layer, allow_devices=True)
    st = os.lstat(layer / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def test_regular_tree_modes_links_and_diff_id(box):
    layer, _, _ = box
    data = mk([
        ("d", "bin"), ("f", "bin/tool", "#!/bin/sh\n", 0o4755), ("l", "bin/alias", "tool"),
        ("l", "abs", "/bin/tool"), ("h", "bin/hard", "bin/tool"), ("d", "tmp", 0o1777),
        ("p", "fifo"), ("f", "./dot/prefixed", "y"),
    ])
    res = apply_layer(io.BytesIO(data), layer)
    assert res.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stat.S_IMODE(os.lstat(layer / "bin/tool").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(layer / "tmp").st_mode) == 0o1777
    assert os.readlink(layer / "bin/alias") == "tool"
    assert os.readlink(layer / "abs") == "/bin/tool"  # kept verbatim: resolved in the container
    assert os.lstat(layer / "bin/hard").st_ino == os.lstat(layer / "bin/tool").st_ino
    assert stat.S_ISFIFO(os.lstat(layer / "fifo").st_mode)
    assert (layer / "dot/prefixed").read_text() == "y"
    assert int(os.lstat(layer / "bin/tool").st_mtime) == 1700000000
    assert int(os.lstat(layer / "bin").st_mtime) == 1700000000


@pytest.mark.parametrize("codec", ["plain", "gzip", "zstd"])
def test_compressions(box, codec):
    layer, _, _ = box
    data = mk([("f", "hello", "world")])
    blob = {"plain": data, "gzip": gzip.compress(data),
            "zstd": zstandard.ZstdCompressor().compress(data)}[codec]
    res = apply_layer(io.BytesIO(blob), layer, expect_diff_id="sha256:"
                      + hashlib.sha256(data).hexdigest())
    assert (layer / "hello").read_text() == "world"
    assert res.size == 5


def test_diff_id_mismatch(box):
    layer, _, _ = box
    with pytest.raises(LayerError, match="diff ID mismatch"):
        apply_layer(io.BytesIO(mk([("f", "a", "b")])), layer, expect_diff_id="sha256:" + "0" * 64)


def test_corrupt_gzip_is_a_layer_error(box):
    layer, _, _ = box
    blob = bytearray(gzip.compress(mk([("f", "a", "b" * 5000)])))
    blob[30:40] = b"\0" * 10
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(bytes(blob)), layer)


def test_not_a_tar(box):
    layer, _, _ = box
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(b"hello world, not a tar" * 50), layer)


def test_naive_whiteouts_and_opaque(box):
    layer, _, _ = box
    apply_layer(io.BytesIO(mk([("d", "etc"), ("f", "etc/a", "1"), ("f", "etc/b", "2"),
                               ("d", "var"), ("f", "var/old", "o"), ("d", "var/sub"),
                               ("f", "var/sub/x", "x"), ("f", "gone", "g")])), layer)
    apply_layer(io.BytesIO(mk([("f", "etc/.wh.a", ""), ("f", ".wh.gone", ""),
                               ("d", "var"), ("f", "var/.wh..wh..opq", ""),
                               ("f", "var/new", "n"), ("f", ".wh.missing", "")])), layer)
    assert not (layer / "etc/a").exists() and (layer / "etc/b").exists()
    assert not (layer / "gone").exists()
    assert sorted(os.listdir(layer / "var")) == ["new"]


def test_whiteout_of_parent_name_refused(box):
    layer, _, _ = box
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(mk([("f", "a/.wh..", "")])), layer)


def test_replacing_types(box):
    layer, _, _ = box
    apply_layer(io.BytesIO(mk([("d", "x"), ("f", "x/inner", "i"), ("f", "y", "file"),
                               ("l", "z", "somewhere")])), layer)
    apply_layer(io.BytesIO(mk([("f", "x", "now a file"), ("d", "y"), ("f", "z", "real")])), layer)
    assert (layer / "x").read_text() == "now a file"
    assert (layer / "y").is_dir()
    assert not (layer / "z").is_symlink() and (layer / "z").read_text() == "real"


def test_xattrs_where_possible(box):
    layer, _, _ = box
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        info.pax_headers = {"SCHILY.xattr.user.skiff": "yes",
                            "SCHILY.xattr.trusted.overlay.opaque": "y"}
        tar.addfile(info, io.BytesIO(b"1"))
    apply_layer(io.BytesIO(buf.getvalue()), layer)
    try:
        assert os.getxattr(layer / "f", "user.skiff") == b"yes"
    except OSError:
        pytest.skip("filesystem without user xattrs")
    with pytest.raises(OSError):
        os.getxattr(layer / "f", "trusted.overlay.opaque")  # never forged from a tar


def test_split_name():
    assert split_name("./a//b/./c") == ("a", "b", "c")
    assert split_name("./") == ()
    with pytest.raises(LayerError):
        split_name("a/../../b")


def test_tar_changes_roundtrip(tmp_path):
    parent = tmp_path / "p"
    child = tmp_path / "c"
    parent.mkdir()
    apply_layer(io.BytesIO(mk([("f", "keep", "k"), ("f", "drop", "d"), ("d", "dir"),
                               ("f", "dir/x", "x")])), parent)
    import shutil

    shutil.copytree(parent, child, symlinks=True)
    os.unlink(child / "drop")
    shutil.rmtree(child / "dir")
    (child / "new").write_text("n")
    out = io.BytesIO()
    tar_changes(parent, child, out)
    names = sorted(m.name for m in tarfile.open(fileobj=io.BytesIO(out.getvalue())))
    assert names == [".wh.dir", ".wh.drop", "new"]
    again = tmp_path / "again"
    shutil.copytree(parent, again, symlinks=True)
    apply_layer(io.BytesIO(out.getvalue()), again)
    assert sorted(os.listdir(again)) == ["keep", "new"]


def test_modes_survive_the_umask(box):
    layer, _, _ = box
    old = os.umask(0o077)
    try:
        apply_layer(io.BytesIO(mk([("f", "shared", "x", 0o666), ("f", "exe", "x", 0o775),
                                   ("d", "pub", 0o777), ("p", "fifo")])), layer)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(layer / "shared").st_mode) == 0o666
    assert stat.S_IMODE(os.lstat(layer / "exe").st_mode) == 0o775
    assert stat.S_IMODE(os.lstat(layer / "pub").st_mode) == 0o777
    assert stat.S_IMODE(os.lstat(layer / "fifo").st_mode) == 0o644


def test_existing_entries_are_replaced(box):
    layer, _, _ = box
    apply_layer(io.BytesIO(mk([("f", "a", "old"), ("l", "b", "x"), ("d", "c")])), layer)
    apply_layer(io.BytesIO(mk([("f", "a", "new"), ("l", "b", "y"), ("f", "c", "file")])), layer)
    assert (layer / "a").read_text() == "new"
    assert os.readlink(layer / "b") == "y"
    assert (layer / "c").read_text() == "file"


def test_gzip_multi_member_bomb_ratio_and_truncation(box):
    layer, _, _ = box
    data = mk([("f", "zeros", b"\0" * (8 << 20)), ("f", "b", "b")])
    half = len(data) // 2
    multi = gzip.compress(data[:half]) + gzip.compress(data[half:])  # two gzip members
    res = apply_layer(io.BytesIO(multi), layer)
    assert res.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (layer / "zeros").stat().st_size == 8 << 20
    trunc = gzip.compress(data)[:-20]
    other = layer.parent / "other"
    other.mkdir()
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(trunc), other)


def test_gzip_member_ending_on_a_read_boundary(box, monkeypatch):
    import engine.graph.archive as archive

    layer, _, _ = box
    data = mk([("f", "a", "x" * 3000), ("f", "b", "y" * 3000)])
    first = gzip.compress(data[:4096])
    monkeypatch.setattr(archive, "CHUNK", len(first))  # the first read ends with member 1
    apply_layer(io.BytesIO(first + gzip.compress(data[4096:])), layer)
    assert (layer / "b").read_text() == "y" * 3000


def test_hardlink_replacing_the_directory_that_holds_its_target(box):
    """`a/b` hard-linked to `a/b/c` removes `a/b` first: the target is gone, a clear error."""
    layer, _, snapshot = box
    before = snapshot()
    with pytest.raises(LayerError, match="not in the layer"):
        apply_layer(io.BytesIO(mk([("d", "a/b"), ("f", "a/b/c", "x"), ("h", "a/b", "a/b/c")])),
                    layer)
    assert snapshot() == before
