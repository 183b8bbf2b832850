"""execdrivers: "native" (libcontainer) for skiffd; "fake" (plain processes) for unit tests."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

DRIVERS = {
    "native": "engine.drivers.exec.native:NativeDriver",
    "fake": "engine.drivers.exec.fake:FakeDriver",
}


def load_driver(name: str, root: Path) -> Any:
    """A driver by short name or "module:Class" path."""
    target = DRIVERS.get(name, name)
    mod, _, cls = target.partition(":")
    return getattr(importlib.import_module(mod), cls)(Path(root))
