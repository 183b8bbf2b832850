"""/etc/hosts, /etc/resolv.conf and /etc/hostname contents for a container.

Files are rewritten in place (same inode) because the container sees them through file bind
mounts; a rename would leave the container looking at the old inode.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")  # docker's defaults when the host has none usable


def render_hosts(own: tuple[str, list[str]] | None, peers: list[tuple[str, list[str]]]) -> str:
    """own: (ip, names) of the container itself; peers: other members of its user network."""
    out = HOSTS_BASE
    if own:
        out += f"{own[0]}\t{' '.join(own[1])}\n"
    for ip, names in sorted(peers, key=lambda p: ipaddress.ip_address(p[0])):
        if names:
            out += f"{ip}\t{' '.join(names)}\n"
    return out


def render_resolv_conf(host_resolv: str) -> str:
    """The host's resolv.conf minus loopback nameservers (unreachable from a netns)."""
    kept: list[str] = []
    servers = 0
    for line in host_resolv.splitlines():
        words = line.split()
        if words and words[0] == "nameserver" and len(words) > 1:
            try:
                addr = ipaddress.ip_address(words[1].split("%")[0])
            except ValueError:
                continue
            if addr.is_loopback:
                continue
            servers += 1
        kept.append(line)
    if servers == 0:
        kept += [f"nameserver {ns}" for ns in FALLBACK_NAMESERVERS]
    return "\n".join(kept).strip("\n") + "\n"


def write_in_place(path: Path, content: str) -> None:
    with open(path, "w") as f:  # O_TRUNC keeps the inode that a bind mount pins
        f.write(content)
