"""Docker's `-p`/`--expose` syntax, parsed in one place that the client and the daemon share.

The shapes follow docker's go-connections/nat: a spec `[ip:][hostPort[-end]:]containerPort[-end]
[/proto]` becomes HostConfig.PortBindings entries (`{"80/tcp": [{"HostIp": "", "HostPort":
"8080"}]}`) plus Config.ExposedPorts keys. Validation here is syntactic (numbers, ranges, IP
literals); whether a host IP is local or a port is free is the driver's business.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from engine.errors import InvalidParameter

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True, order=True)
class PortRange:
    """An inclusive port range; a single port has start == end."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start + 1

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.end + 1))

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def parse_port_range(value: str, field: str, *, allow_zero: bool = False) -> PortRange:
    """`80` or `8000-8010`; bounds are the kernel's (1..65535, 0 only where docker allows it)."""
    text = str(value).strip()
    lo_s, sep, hi_s = text.partition("-")
    try:
        lo = int(lo_s, 10)
        hi = int(hi_s, 10) if sep else lo
    except ValueError:
        raise InvalidParameter(f"invalid {field}: {value!r}: not a port number or range") from None
    minimum = 0 if allow_zero else 1
    for port in (lo, hi):
        if not minimum <= port <= 65535:
            raise InvalidParameter(
                f"invalid {field}: {value!r}: port {port} out of range {minimum}-65535"
            )
    if hi < lo:
        raise InvalidParameter(f"invalid {field}: {value!r}: range end is below its start")
    return PortRange(lo, hi)


def parse_proto(value: str, field: str = "proto") -> str:
    proto = (value or "tcp").strip().lower()
    if proto not in PROTOCOLS:
        raise InvalidParameter(
            f"invalid {field}: {value!r}: expected one of {', '.join(PROTOCOLS)}"
        )
    return proto


def normalize_host_ip(value: str | None, field: str = "HostIp") -> str:
    """'' and '0.0.0.0' mean every IPv4 address; an IPv4 literal is kept. IPv6 is refused."""
    text = (value or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text in ("", "0.0.0.0"):
        return "0.0.0.0"
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidParameter(f"invalid {field}: {value!r}: not an IP address") from None
    if addr.version != 4:
        raise InvalidParameter(
            f"invalid {field}: {value!r}: IPv6 host addresses are not supported (no IPv6 on host)"
        )
    return str(addr)


def _split_spec(spec: str) -> tuple[str, str, str]:
    """Split `ip:host:container` with IPv6 literals in brackets, like nat.ParsePortSpec."""
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise InvalidParameter(f"invalid port spec {spec!r}: unbalanced '['")
        ip = spec[: close + 1]
        rest = spec[close + 1 :]
        if not rest.startswith(":"):
            raise InvalidParameter(f"invalid port spec {spec!r}: expected ':' after the address")
        parts = rest[1:].split(":")
        if len(parts) != 2:
            raise InvalidParameter(f"invalid port spec {spec!r}: too many colons")
        return ip, parts[0], parts[1]
    parts = spec.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    # an unbracketed IPv6 literal: everything before the last two fields is the address
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def parse_port_spec(spec: str) -> list[tuple[str, dict[str, str]]]:
    """One `-p` value -> [("80/tcp", {"HostIp": "", "HostPort": "8080"}), ...].

    A container-port range with a host range of the same length maps pairwise; with a single
    host port range of another length it is an error; with no host port each gets a free one.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidParameter(f"invalid port spec {spec!r}: empty")
    body, slash, proto_s = spec.strip().partition("/")
    proto = parse_proto(proto_s if slash else "tcp", field=f"protocol in port spec {spec!r}")
    raw_ip, host_s, cont_s = _split_spec(body)
    if raw_ip:
        host_ip = raw_ip
        normalize_host_ip(raw_ip, field=f"host IP in port spec {spec!r}")
    else:
        host_ip = ""
    if not cont_s:
        raise InvalidParameter(f"invalid port spec {spec!r}: no container port")
    cont = parse_port_range(cont_s, f"container port in port spec {spec!r}")
    host = (
        parse_port_range(host_s, f"host port in port spec {spec!r}", allow_zero=True)
        if host_s
        else None
    )
    if host is not None and host.start == 0 and len(host) == 1:
        host = None  # docker: host port 0 means "any free port"
    if host_ip.startswith("[") and host_ip.endswith("]"):
        host_ip = host_ip[1:-1]
    out: list[tuple[str, dict[str, str]]] = []
    if host is not None and len(cont) > 1 and len(host) != len(cont):
        raise InvalidParameter(
            f"invalid port spec {spec!r}: invalid ranges specified for container and host ports"
        )
    for i, cport in enumerate(cont):
        if host is None:
            hp = ""
        elif len(cont) > 1:
            hp = str(host.start + i)
        else:
            hp = str(host)
        out.append((f"{cport}/{proto}", {"HostIp": host_ip, "HostPort": hp}))
    return out


def parse_port_specs(
    specs: list[str] | tuple[str, ...],
) -> tuple[dict[str, None], dict[str, list[dict[str, str]]]]:
    """All `-p` values of a command line -> (ExposedPorts, PortBindings) as the docker CLI sends."""
    exposed: dict[str, None] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        for key, binding in parse_port_spec(spec):
            exposed.setdefault(key, None)
            lst = bindings.setdefault(key, [])
            if binding not in lst:
                lst.append(binding)
    return exposed, bindings


def parse_expose(spec: str) -> list[str]:
    """`--expose 80`, `--expose 7000-7002/udp` -> ["80/tcp"], ["7000/udp", "7001/udp", ...]."""
    body, slash, proto_s = str(spec).strip().partition("/")
    proto = parse_proto(proto_s if slash else "tcp", field=f"protocol in exposed port {spec!r}")
    rng = parse_port_range(body, f"exposed port {spec!r}")
    return [f"{p}/{proto}" for p in rng]


def parse_port_key(key: str) -> tuple[int, str]:
    """An API key like `80/tcp` or `80` -> (80, "tcp")."""
    body, slash, proto_s = str(key).partition("/")
    proto = parse_proto(proto_s if slash else "tcp", field=f"protocol of port {key!r}")
    rng = parse_port_range(body, f"port {key!r}")
    if len(rng) != 1:
        raise InvalidParameter(f"invalid port {key!r}: a single port is expected here")
    return rng.start, proto


@dataclass(frozen=True)
class BindingRequest:
    """One validated PortBindings entry: what the driver must reserve and map."""

    proto: str
    container_port: int
    host_ip: str  # normalized; "0.0.0.0" is the wildcard
    host_range: PortRange | None  # None: any free port from the ephemeral range


def normalize_bindings(
    port_bindings: dict | None, exposed_ports=(), publish_all: bool = False
) -> list[BindingRequest]:
    """HostConfig.PortBindings (+ -P over exposed ports) from the API -> validated requests.

    Exact duplicates collapse (the CLI may repeat a `-p`); everything else is kept, so two
    requests for one host port conflict later like in docker.
    """
    out: list[BindingRequest] = []
    seen: set[BindingRequest] = set()
    bound_keys: set[tuple[int, str]] = set()
    if port_bindings is not None and not isinstance(port_bindings, dict):
        raise InvalidParameter(f"invalid PortBindings: {port_bindings!r}: expected an object")
    for key, blist in (port_bindings or {}).items():
        cport, proto = parse_port_key(key)
        bound_keys.add((cport, proto))
        if blist is None:
            blist = [{}]
        if not isinstance(blist, list):
            raise InvalidParameter(f"invalid PortBindings[{key!r}]: {blist!r}: expected a list")
        if not blist:
            blist = [{}]
        for b in blist:
            if b is None:
                b = {}
            if not isinstance(b, dict):
                raise InvalidParameter(f"invalid PortBindings[{key!r}] entry: {b!r}")
            host_ip = normalize_host_ip(b.get("HostIp"), field=f"PortBindings[{key!r}].HostIp")
            hp = str(b.get("HostPort") or "").strip()
            rng = (
                parse_port_range(hp, f"PortBindings[{key!r}].HostPort", allow_zero=True)
                if hp
                else None
            )
            if rng is not None and rng.start == 0:
                if rng.end != 0:
                    raise InvalidParameter(
                        f"invalid PortBindings[{key!r}].HostPort: {hp!r}: port 0 out of range 1-65535"
                    )
                rng = None
            req = BindingRequest(proto, cport, host_ip, rng)
            if req not in seen:
                seen.add(req)
                out.append(req)
    if publish_all:
        keys = list(exposed_ports.keys() if isinstance(exposed_ports, dict) else exposed_ports)
        for key in keys:
            cport, proto = parse_port_key(key)
            if (cport, proto) in bound_keys:
                continue
            req = BindingRequest(proto, cport, "0.0.0.0", None)
            if req not in seen:
                seen.add(req)
                out.append(req)
    return out
