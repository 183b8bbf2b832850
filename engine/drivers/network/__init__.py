"""networkdriver: bridge, IPAM, NAT and published ports (pyroute2 + nftables).

The names are imported on first use (module __getattr__): the client only needs portspec, and
importing the driver pulls in pyroute2 and nftables (~0.2 s) on every `skiff` command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .driver import NetworkDriver, parse_network_mode
    from .portspec import normalize_bindings, parse_expose, parse_port_spec, parse_port_specs

_WHERE = {
    "NetworkDriver": "driver",
    "parse_network_mode": "driver",
    "normalize_bindings": "portspec",
    "parse_expose": "portspec",
    "parse_port_spec": "portspec",
    "parse_port_specs": "portspec",
}

__all__ = [
    "NetworkDriver",
    "normalize_bindings",
    "parse_expose",
    "parse_network_mode",
    "parse_port_spec",
    "parse_port_specs",
]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
