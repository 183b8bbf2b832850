"""networkdriver: bridge, IPAM, NAT and published ports (pyroute2 + nftables)."""

from .driver import NetworkDriver, parse_network_mode
from .portspec import normalize_bindings, parse_expose, parse_port_spec, parse_port_specs

__all__ = [
    "NetworkDriver",
    "normalize_bindings",
    "parse_expose",
    "parse_network_mode",
    "parse_port_spec",
    "parse_port_specs",
]
