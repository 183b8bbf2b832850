"""docker volume basics: local volumes under <root>/volumes/<name>/_data, recorded in SQLite."""

from __future__ import annotations

import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from engine.errors import Conflict, InvalidParameter, NotFound

from .spec import valid_volume_name
from .state import now_iso
from .store import Store


class VolumeStore:
    def __init__(self, root: Path, store: Store, users: Callable[[str], list[str]],
                 emit: Callable[..., None] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.users = users  # name -> ids of containers that mount it
        self.emit = emit or (lambda *a, **k: None)
        self.lock = threading.RLock()

    def _doc(self, d: dict) -> dict:
        return {k: v for k, v in d.items() if not k.startswith("_")}

    def create(self, name: str | None = None, driver: str | None = None,
               driver_opts: dict | None = None, labels: dict | None = None, *,
               anonymous: bool = False, events: bool = False) -> dict:
        """events: emit docker's volume events here (for volumes a container create makes;
        the API router emits its own for `docker volume create`)."""
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f"plugin \"{driver}\" not found")
        if driver_opts:
            raise InvalidParameter("local volume driver options are not supported")
        name = name or secrets.token_hex(32)
        if not valid_volume_name(name):
            raise InvalidParameter(
                f"create {name}: \"{name}\" includes invalid characters for a local volume "
                "name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass "
                "a host directory, use absolute path"
            )
        with self.lock:
            old = self.store.get_volume(name)
            if old is not None:
                return self._doc(old)
            mp = self.root / name / "_data"
            mp.mkdir(parents=True, exist_ok=True)
            labels = dict(labels or {})
            if anonymous:
                labels.setdefault("com.docker.volume.anonymous", "")
            d = {"Name": name, "Driver": driver, "Mountpoint": str(mp), "CreatedAt": now_iso(),
                 "Labels": labels, "Scope": "local", "Options": driver_opts or None,
                 "_anonymous": anonymous}
            self.store.put_volume(name, d)
        if events:
            self.emit("volume", "create", name, {"driver": driver})
        return self._doc(d)

    def get(self, name: str) -> dict:
        d = self.store.get_volume(name)
        if d is None:
            raise NotFound(f"get {name}: no such volume")
        return d

    def inspect(self, name: str) -> dict:
        return self._doc(self.get(name))

    def list(self, filters: dict | None = None) -> list[dict]:
        """docker Volume objects (the router wraps them in {"Volumes", "Warnings"})."""
        out = []
        for d in self.store.volumes():
            if filters:
                if "name" in filters and not any(n in d["Name"] for n in filters["name"]):
                    continue
                if "dangling" in filters:
                    dangling = not self.users(d["Name"])
                    if str(dangling).lower() not in [str(x).lower() for x in filters["dangling"]]:
                        continue
            out.append(self._doc(d))
        return out

    def is_anonymous(self, name: str) -> bool:
        d = self.store.get_volume(name)
        return bool(d and d.get("_anonymous"))

    def remove(self, name: str, force: bool = False, *, events: bool = False) -> None:
        users = self.users(name)  # outside our lock: the manager's lock comes first
        with self.lock:
            d = self.store.get_volume(name)
            if d is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            shutil.rmtree(self.root / name, ignore_errors=True)
            self.store.delete_volume(name)
        if events:
            self.emit("volume", "destroy", name, {"driver": "local"})

    def prune(self) -> dict:
        deleted, space = [], 0
        for d in self.store.volumes():
            if d.get("_anonymous") and not self.users(d["Name"]):
                self.remove(d["Name"], events=True)
                deleted.append(d["Name"])
        return {"VolumesDeleted": deleted, "SpaceReclaimed": space}
