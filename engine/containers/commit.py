"""`docker commit`: a container's changes as a new layer on its image, registered as an image.

The layer is the graph driver's own diff of the rw layer (whiteouts included), applied through
the graph like any pulled layer, so the new image's parent chain is the container's image chain
plus one; the config is the image's with the container's runtime config (and --change
instructions) in it, one more diff ID and one more history entry. Everything is undone on
failure: the diff is spooled to a temp blob (kept as the layer's blob, so `docker save` and
push can send the image), and a layer no image stands on is pruned.

A running container is always frozen while its layer is read, also with docker's
`--pause=false`: the graph driver writes the layer tar by path, so a container that swaps a
file for a symlink to a host file meanwhile would get the host's file into the image (the
commit twin of CVE-2018-15664). The freeze lasts only the diff, as with docker's default.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from engine.errors import Conflict, InvalidParameter

from .health import parse_healthcheck_instruction

LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
                     "Entrypoint", "Volumes", "WorkingDir", "Labels", "OnBuild", "StopSignal",
                     "Shell")


def apply_changes(changes: list[str], config: dict) -> None:
    """Dockerfile instructions (CMD, ENV, HEALTHCHECK, ...) onto an image config."""
    from engine.graph.tarfmt import parse_changes

    rest = []
    for ch in changes:
        instr = ch.strip().split(None, 1)
        if instr and instr[0].upper() == "HEALTHCHECK":
            config["Healthcheck"] = parse_healthcheck_instruction(
                instr[1] if len(instr) > 1 else "")
        elif ch.strip():
            rest.append(ch)
    parse_changes(rest, config)


def commit_config(container_config: dict, override: dict | None, changes: list[str]) -> dict:
    cfg = {k: copy.deepcopy(v) for k, v in container_config.items() if k in IMAGE_CONFIG_KEYS}
    for k, v in (override or {}).items():
        if k in IMAGE_CONFIG_KEYS and v not in (None, "", [], {}):
            cfg[k] = copy.deepcopy(v)
    apply_changes(changes, cfg)
    return cfg


@contextlib.contextmanager
def _frozen(m: Any, c: Any) -> Iterator[None]:
    """The container frozen (if it runs) while its layer is read; 409 if it cannot be."""
    if c.state.status != "running":
        yield
        return
    try:
        m.driver.pause(c.id)
    except Exception as e:  # noqa: BLE001 - any failure means no safe diff
        raise Conflict(f"cannot commit container {c.id}: could not freeze it to read its "
                       f"layer ({e})") from None
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            m.driver.resume(c.id)


def commit(m: Any, ref: str, *, repo: str = "", tag: str = "", comment: str = "",
           author: str = "", changes: list[str] | None = None, pause: bool = True,
           config: dict | None = None) -> str:
    """-> the new image ID (sha256:...)."""
    from engine.registry import reference

    c = m.get(ref)
    target = None
    if repo:
        try:
            target = str(reference.parse(f"{repo}:{tag or 'latest'}"))
        except InvalidParameter as e:
            raise InvalidParameter(f"invalid reference format: repo={repo!r} tag={tag!r}: "
                                   f"{e}") from None
        if reference.parse(target).digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
    elif tag:
        raise InvalidParameter(f"tag {tag!r} given without a repository (repo=)")
    if config is not None and not isinstance(config, dict):
        raise InvalidParameter("commit body must be a container Config JSON object")
    if c.state.status in ("removing", "dead"):
        raise Conflict(f"cannot commit container {c.id}: it is marked for removal")
    new_cfg = commit_config(c.config, config, list(changes or []))  # 400s before any work
    g = m.graph
    image = g.get(c.image_id)
    parent_chain = g.rw_layer_chain(c.id)
    del pause  # always frozen: see the module docstring
    w = g.blobs.writer()  # the diff, kept as the layer's blob (docker save and push send it)
    try:
        with _frozen(m, c):
            g.rw_layer_diff(c.id, w)
        w.f.close()
        chain = g.register_layer(parent_chain, None, lambda: open(w.path, "rb"))
        with g.pinned([chain]):
            diff_id = g.layer(chain)["diff_id"]
            if g.layer_blob(diff_id) is None:
                g._add_layer_blob(diff_id, (g.blobs.adopt(w.path, w.digest), LAYER_TAR, w.size))
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            img_cfg = copy.deepcopy(image.config)
            img_cfg["created"] = now
            if author:
                img_cfg["author"] = author
            img_cfg["config"] = new_cfg
            img_cfg["container"] = c.id
            img_cfg["container_config"] = copy.deepcopy(c.config)
            rootfs = img_cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
            rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [diff_id]
            cmd = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
            hist = {"created": now, "created_by": shlex.join(cmd)}
            if comment:
                hist["comment"] = comment
            if author:
                hist["author"] = author
            img_cfg["history"] = list(img_cfg.get("history") or []) + [hist]
            raw = json.dumps(img_cfg, separators=(",", ":")).encode()
            new = g.register_image(raw, [target] if target else [], parent=image.id)
    except BaseException:
        g.prune_layers()  # the layer only this commit stood on
        raise
    finally:
        w.abort()  # the temp file, unless adopted
    m.emit(c, "commit", comment=comment, imageID=new.id,
           imageRef=reference.parse(target).familiar() if target else "")
    return str(new.id)
