"""Hypothesis: whatever a layer tar contains, nothing outside the layer directory changes.

Entries are drawn from a small, hostile vocabulary (`..`, absolute names, symlinks to `/` and
`..`, hard links, whiteouts, opaque markers, names reused with other types) so that the
interesting collisions happen often. Each example applies the tar to a fresh layer dir next to
a sentinel tree and compares a snapshot of everything outside the layer before and after.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.graph.archive import LayerError, apply_layer
from tests.images.layers import mk

NAMES = ["a", "b", "a/b", "a/b/c", "../x", "../outside/keep", "/abs", "./a", "a/../../x",
         "link", "link/x", "link/keep", ".wh.a", "a/.wh.b", "a/.wh..wh..opq", ".wh..wh..opq",
         "link/.wh.keep", "link/.wh..wh..opq", "dir", "dir/f"]
TARGETS = ["/", "..", "../outside", "../..", "a", "/etc", "link", "dir", "../outside/keep"]

entry = st.one_of(
    st.tuples(st.just("f"), st.sampled_from(NAMES), st.binary(max_size=8)),
    st.tuples(st.just("d"), st.sampled_from(NAMES)),
    st.tuples(st.just("l"), st.sampled_from(NAMES), st.sampled_from(TARGETS)),
    st.tuples(st.just("h"), st.sampled_from(NAMES), st.sampled_from(NAMES + TARGETS)),
    st.tuples(st.just("p"), st.sampled_from(NAMES)),
)


def snapshot(root: Path, skip: Path) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            if p == skip or skip in p.parents:
                continue
            s = os.lstat(p)
            out[str(p)] = (s.st_mode, s.st_size, s.st_mtime_ns, s.st_nlink,
                           p.read_bytes() if p.is_file() and not p.is_symlink() else None)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=st.lists(st.lists(entry, min_size=1, max_size=8), min_size=1, max_size=3),
       whiteouts=st.sampled_from(["naive", "overlay"]))
def test_nothing_outside_the_layer_changes(layers, whiteouts):
    if whiteouts == "overlay" and os.geteuid() != 0:
        whiteouts = "naive"  # overlay whiteouts are device nodes: root only
    top = Path(tempfile.mkdtemp(prefix="skt3-fuzz-"))
    try:
        layer = top / "layer"
        outside = top / "outside"
        layer.mkdir()
        outside.mkdir()
        (outside / "keep").write_text("keep")
        os.symlink("/etc", outside / "etc-link")
        before = snapshot(top, layer)
        for entries in layers:
            try:
                apply_layer(io.BytesIO(mk(entries)), layer, whiteouts=whiteouts)
            except LayerError:
                pass
        assert snapshot(top, layer) == before
    finally:
        shutil.rmtree(top)
