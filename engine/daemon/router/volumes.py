"""Volumes area: docker volume basics (list, create, inspect, remove) over the
ContainerManager's volume store."""

from __future__ import annotations

import re
from typing import Any

from engine.daemon.errors import InvalidParameter, NotFound
from engine.daemon.router import Backends, filters, want
from engine.daemon.server import Request, Response

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def routes(b: Backends) -> list:
    eng = b.engine

    def list_(req: Request) -> Response:
        flt = filters(req.json_arg("filters"))
        vols = list(b.volumes.list())
        if flt.get("name"):
            vols = [v for v in vols if any(n in v.get("Name", "") for n in flt["name"])]
        return Response.json({"Volumes": vols, "Warnings": []})

    def create(req: Request) -> Response:
        body = req.json({}) or {}
        if not isinstance(body, dict):
            raise InvalidParameter("volume config must be a JSON object")
        name = want(body, "Name", str, "", default="") or None
        if name and not VOLUME_NAME.match(name):
            raise InvalidParameter(f"volume name {name!r} includes invalid characters, only "
                                   "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        driver = want(body, "Driver", str, "", default="local") or "local"
        if driver != "local":
            raise InvalidParameter(f"volume driver {driver!r} is not supported (local only)")
        labels = want(body, "Labels", dict, "", default={}) or {}
        vol = eng.run("volume.create", _create, b.volumes, name, labels,
                      _job_args={"name": name})
        eng.emit("volume", "create", vol.get("Name", name or ""), {"driver": "local"})
        return Response.json(vol, 201)

    def inspect(req: Request, name: str) -> Response:
        if b.containers is None:  # `docker inspect` falls through on 404, not on 503
            raise NotFound(f"get {name}: no such volume")
        return Response.json(b.volumes.inspect(name))

    def remove(req: Request, name: str) -> Response:
        eng.run("volume.remove", _remove, b.volumes, name, req.bool("force"),
                _job_args={"name": name})
        eng.emit("volume", "destroy", name, {"driver": "local"})
        return Response(204)

    def prune(req: Request) -> Response:
        deleted = []
        for v in list(b.volumes.list()):
            try:
                _remove(b.volumes, v["Name"], False)
                deleted.append(v["Name"])
            except Exception:  # noqa: BLE001 - volumes in use stay
                continue
        return Response.json({"VolumesDeleted": deleted, "SpaceReclaimed": 0})

    return [
        ("POST", "/volumes/prune", prune),
        ("GET", "/volumes", list_),
        ("POST", "/volumes/create", create),
        ("GET", "/volumes/{name}", inspect),
        ("DELETE", "/volumes/{name}", remove),
    ]


def _create(store: Any, name: str | None, labels: dict) -> dict:
    try:
        return store.create(name, labels=labels)
    except TypeError:
        return store.create(name)


def _remove(store: Any, name: str, force: bool) -> None:
    try:
        store.remove(name, force=force)
    except TypeError:
        store.remove(name)
