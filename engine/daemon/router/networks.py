"""Networks area: list, inspect, create, remove, connect/disconnect.

The backend is engine.drivers.network.NetworkDriver (CONTRACTS.md); connecting a running
container goes through the ContainerManager when it offers `connect`/`disconnect`."""

from __future__ import annotations

import ipaddress
from typing import Any

from engine.daemon.errors import Conflict, Forbidden, InvalidParameter, NotFound
from engine.daemon.router import Backends, filters, want
from engine.daemon.server import Request, Response


def routes(b: Backends) -> list:
    eng = b.engine

    def nd() -> Any:
        return b.need("networks")

    def list_(req: Request) -> Response:
        flt = filters(req.json_arg("filters"))
        out = list(nd().list_networks())
        for key, field in (("name", "Name"), ("id", "Id"), ("driver", "Driver"),
                           ("scope", "Scope")):
            if flt.get(key):
                out = [n for n in out if any(
                    (str(n.get(field, "")).startswith(v) if key == "id" else
                     v in str(n.get(field, "")) if key == "name" else
                     str(n.get(field, "")) == v) for v in flt[key])]
        if flt.get("type"):
            builtin = {"bridge", "host", "none"}
            out = [n for n in out if ("builtin" if n.get("Name") in builtin else "custom")
                   in flt["type"]]
        return Response.json(out)

    def inspect(req: Request, id: str) -> Response:
        if b.networks is None:  # `docker inspect` falls through on 404, not on 503
            raise NotFound(f"network {id} not found")
        return Response.json(nd().inspect_network(id))

    def create(req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("network config must be a JSON object")
        name = want(body, "Name", str, "", required=True)
        if not name.strip():
            raise InvalidParameter("network name is required")
        driver = want(body, "Driver", str, "", default="bridge") or "bridge"
        if driver != "bridge":
            raise InvalidParameter(f"network driver {driver!r} is not supported (bridge only)")
        ipam = want(body, "IPAM", dict, "") or {}
        cfgs = want(ipam, "Config", list, "IPAM.") or []
        subnet = gateway = None
        for c in cfgs:
            if not isinstance(c, dict):
                raise InvalidParameter(f"invalid IPAM config {c!r}")
            if c.get("Subnet"):
                try:
                    subnet = str(ipaddress.ip_network(c["Subnet"], strict=False))
                except ValueError:
                    raise InvalidParameter(f"invalid subnet {c['Subnet']!r}") from None
            if c.get("Gateway"):
                try:
                    gateway = str(ipaddress.ip_address(c["Gateway"]))
                except ValueError:
                    raise InvalidParameter(f"invalid gateway {c['Gateway']!r}") from None
        try:
            existing = nd().inspect_network(name)
        except NotFound:
            existing = None
        except Exception:  # noqa: BLE001 - let create decide
            existing = None
        if existing:
            raise Conflict(f"network with name {name} already exists")
        kw: dict[str, Any] = {}
        if gateway:
            kw["gateway"] = gateway
        if body.get("Labels"):
            kw["labels"] = want(body, "Labels", dict, "")
        if body.get("Internal"):
            kw["internal"] = True
        options = want(body, "Options", dict, "") or {}
        for k, v in options.items():
            if not isinstance(v, str):
                raise InvalidParameter(f"invalid Options[{k!r}]: {v!r}: expected a string")
        if options:
            kw["options"] = options
        # no TypeError fallback: a driver that silently dropped -o/--label/--gateway would
        # create a different network than the one asked for
        res = eng.run("network.create", nd().create_network, name, subnet=subnet, **kw)
        nid = (res or {}).get("Id", name) if isinstance(res, dict) else str(res)
        eng.emit("network", "create", nid, {"name": name, "type": driver})
        return Response.json({"Id": nid, "Warning": ""}, 201)

    def remove(req: Request, id: str) -> Response:
        if id in ("bridge", "host", "none"):
            raise Forbidden(f"{id} is a pre-defined network and cannot be removed")
        info = nd().inspect_network(id)
        if info.get("Containers"):
            raise Conflict(f"error while removing network: network {id} has active endpoints")
        eng.run("network.remove", nd().remove_network, info.get("Name", id))
        eng.emit("network", "destroy", info.get("Id", id), {"name": info.get("Name", id),
                                                            "type": info.get("Driver", "bridge")})
        return Response(204)

    def connect(req: Request, id: str, action: str) -> Response:
        body = req.json({}) or {}
        container = want(body, "Container", str, "", required=True)
        fn = getattr(b.need("containers"), action, None)
        if fn is None:
            raise InvalidParameter(f"network {action} of an existing container is not "
                                   "supported")
        nd().inspect_network(id)
        eng.run(f"network.{action}", fn, container, id)
        return Response(200)

    def prune(req: Request) -> Response:
        deleted = []
        for n in list(nd().list_networks()):
            if n.get("Name") in ("bridge", "host", "none") or n.get("Containers"):
                continue
            try:
                eng.run("network.remove", nd().remove_network, n["Name"])
                deleted.append(n["Name"])
            except Exception:  # noqa: BLE001 - best effort
                continue
        return Response.json({"NetworksDeleted": deleted})

    return [
        ("POST", "/networks/prune", prune),
        ("GET", "/networks", list_),
        ("GET", "/networks/{id}", inspect),
        ("POST", "/networks/create", create),
        ("DELETE", "/networks/{id}", remove),
        ("POST", "/networks/{id}/connect", lambda req, id: connect(req, id, "connect")),
        ("POST", "/networks/{id}/disconnect",
         lambda req, id: connect(req, id, "disconnect")),
    ]


