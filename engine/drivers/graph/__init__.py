"""Graphdrivers: overlay (default) and vfs (fallback), behind engine.drivers.graph.base."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.errors import InvalidParameter, Unavailable

from .base import GraphDriver

log = logging.getLogger(__name__)
DRIVERS = ("overlay", "vfs")


def new_driver(name: str | None, root: Path) -> GraphDriver:
    """The named driver under root/<name>; None picks overlay and falls back to vfs."""
    from .overlay import OverlayDriver
    from .vfs import VfsDriver

    if name in ("overlay2",):
        name = "overlay"
    if name is None:
        try:
            return OverlayDriver(Path(root) / "overlay")
        except Unavailable as e:
            log.info("%s; using vfs", e)
            return VfsDriver(Path(root) / "vfs")
    if name == "overlay":
        return OverlayDriver(Path(root) / "overlay")
    if name == "vfs":
        return VfsDriver(Path(root) / "vfs")
    raise InvalidParameter(f"unknown storage driver {name!r} (known: {', '.join(DRIVERS)})")


__all__ = ["GraphDriver", "new_driver", "DRIVERS"]
