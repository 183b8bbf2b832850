"""Containers: the model, its state machine and store, the per-container monitor, and the
ContainerManager the daemon drives (CONTRACTS.md "containers [H7]")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manager import ContainerManager

__all__ = ["ContainerManager"]


def __getattr__(name: str) -> Any:
    # lazy: the monitor process imports engine.containers.monitor without the manager's deps
    if name == "ContainerManager":
        from .manager import ContainerManager

        return ContainerManager
    raise AttributeError(name)
