"""ContainerManager: docker's container lifecycle over libcontainer, one monitor per container.

The daemon never holds a container's process: each running container has a monitor process
(engine/containers/monitor.py) that the daemon talks to over a unix socket. Everything the
daemon knows is in SQLite (WAL) and in per-container files, so a new ContainerManager on the
same roots (a daemon restart, or a crash) picks every container up again in restore().
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import secrets
import selectors
import shutil
import signal as _signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import (
    Conflict,
    InvalidParameter,
    NotFound,
    NotModified,
    SkiffError,
    SystemError_,
)

from . import logs as logmod
from . import spec as specmod
from . import stats_io
from .restart import RestartManager
from .spec import MountPoint
from .state import (
    CREATED,
    DEAD,
    EXITED,
    PAUSED,
    REMOVING,
    RESTARTING,
    RUNNING,
    ZERO_TIME,
    State,
    connect_unix,
    now_iso,
    parse_iso,
)
from .store import Store
from .volumes import VolumeStore

log = logging.getLogger("skiff.containers")

StrList = list[str]  # `list` is also a method name of ContainerManager
IntList = list[int]
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MONITOR_READY_TIMEOUT = 60.0
NETNS_POOL = 4  # sandboxes the network driver keeps ready (SKIFF_NETNS_POOL overrides, 0: off)
# --init: docker bind-mounts docker-init (tini) at /sbin/docker-init; so do we. It must be a
# static binary: it runs inside any image. Debian's `tini` package ships tini-static.
INIT_CANDIDATES = ("tini-static", "docker-init")

_LEFT = ["admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy",
         "jolly", "keen", "lucid", "modest", "nifty", "optimistic", "quirky", "serene",
         "tender", "upbeat", "vibrant", "wizardly", "zealous"]
_RIGHT = ["turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "dijkstra",
          "hamilton", "liskov", "pike", "kernighan", "mccarthy", "wozniak", "goldberg", "noether",
          "curie", "babbage", "shannon", "cerf", "lamport"]


class Container:
    """The daemon's record of one container (persisted as JSON in the store)."""

    def __init__(self, d: dict) -> None:
        self.id: str = d["Id"]
        self.name: str = d["Name"]  # "/x"
        self.created: str = d["Created"]
        self.config: dict = d["Config"]
        self.host_config: dict = d["HostConfig"]
        self.request: dict = d.get("Request", {})
        self.image_id: str = d["Image"]
        self.state = State(d.get("State"))
        self.mounts = [MountPoint.from_docker(m) for m in d.get("MountPoints", [])]
        self.network_settings: dict = d.get("NetworkSettings") or {}
        self.driver: str = d.get("Driver", "")
        self.rootfs: str = d.get("Rootfs", "")
        self.netns: str = d.get("Netns", "")
        self.restart_timeout: float = d.get("RestartTimeout", 0.0)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.exit_gen = 0  # bumped at every exit, for wait(next-exit)
        self.removed = False
        self.pending_attach: list[dict] = []
        self.watcher: threading.Thread | None = None
        self.restart_timer: threading.Timer | None = None
        self.execs: set[str] = set()
        self.pending_connect: Callable[[], None] | None = None
        self.health: dict | None = d.get("Health")  # State.Health (engine/containers/health.py)

    def to_db(self) -> dict:
        return {
            "Id": self.id, "Name": self.name, "Created": self.created, "Config": self.config,
            "HostConfig": self.host_config, "Request": self.request, "Image": self.image_id,
            "State": self.state.to_db(), "MountPoints": [
                {**m.to_docker(), "_Options": m.options} for m in self.mounts],
            "NetworkSettings": self.network_settings, "Driver": self.driver,
            "Rootfs": self.rootfs, "Netns": self.netns, "RestartTimeout": self.restart_timeout,
            "Health": self.health,
        }

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def short(self) -> str:
        return self.id[:12]


class AttachFn:
    """attach_prepare's result: call it with the upgraded socket to stream; cancel() when the
    upgrade failed, so a registered attacher does not hold the monitor's stream forever."""

    __slots__ = ("_run", "cancel")

    def __init__(self, run: Callable[[socket.socket], None], cancel: Callable[[], None]) -> None:
        self._run = run
        self.cancel = cancel

    def __call__(self, sock: socket.socket) -> None:
        self._run(sock)


class ContainerManager:
    """See CONTRACTS.md "containers [H7]"."""

    def __init__(self, root: Path, exec_root: Path, graph: Any, network: Any | None,
                 emit: Callable[..., None] | None = None, cgroup_parent: str = "skiff", *,
                 exec_driver: str = "native", init_path: str | None = None) -> None:
        self.root = Path(root)
        self.exec_root = Path(exec_root)
        self.graph = graph
        self.network = network
        self._emit = emit if emit is not None else (lambda *a, **k: None)
        self.cgroup_parent = cgroup_parent.strip("/") or "skiff"
        self.init_path = init_path
        self.cdir = self.root / "containers"
        self.cdir.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        self.runtime_root = self.exec_root / "runtime"
        self.store = Store(self.root / "containers.db")
        self.volumes = VolumeStore(self.root / "volumes", self.store, self._volume_users,
                                   self._emit_raw)
        self._lock = threading.RLock()
        self.containers: dict[str, Container] = {}
        self.exec_records: dict[str, dict] = {}
        self._closing = False
        self._zlock = threading.Lock()
        self._zygote: tuple[subprocess.Popen, socket.socket] | None = None
        from engine.drivers.exec import load_driver

        self.exec_driver = exec_driver
        self.driver = load_driver(exec_driver, self.runtime_root)
        for d in self.store.all():
            c = Container(d)
            self.containers[c.id] = c
        start_pool = getattr(network, "start_pool", None)
        if callable(start_pool):
            start_pool(int(os.environ.get("SKIFF_NETNS_POOL", NETNS_POOL)))
        # warm the zygote in the background: the first `docker run` should not pay for it
        threading.Thread(target=self._warm_zygote, daemon=True, name="zygote").start()

    def _warm_zygote(self) -> None:
        with self._zlock:
            if self._zygote is None and not self._closing:
                try:
                    self._zygote = self._start_zygote()
                except Exception:  # noqa: BLE001 - monitors fall back to a fresh interpreter
                    log.exception("zygote start failed")

    # ------------------------------------------------------------------ helpers
    def _emit_raw(self, typ: str, action: str, actor: str, attrs: dict) -> None:
        try:
            self._emit(typ, action, actor, attrs)
        except Exception:  # noqa: BLE001 - an event sink must never break the lifecycle
            log.exception("emit failed")

    def emit(self, c: Container, action: str, **extra: Any) -> None:
        attrs = {"name": c.name.lstrip("/"), "image": c.config.get("Image", "")}
        attrs.update({k: str(v) for k, v in (c.config.get("Labels") or {}).items()})
        attrs.update({k: str(v) for k, v in extra.items()})
        self._emit_raw("container", action, c.id, attrs)

    def _save(self, c: Container) -> None:
        if not c.removed:
            self.store.update(c.id, c.to_db(), name=c.name)

    def cdir_of(self, cid: str) -> Path:
        return self.cdir / cid

    def xdir_of(self, cid: str) -> Path:
        return self.exec_root / cid

    def cgroups_path(self, cid: str) -> str:
        """/<daemon --cgroup-parent or the container's --cgroup-parent>/<id>"""
        c = self.containers.get(cid)
        parent = ((c.host_config.get("CgroupParent") if c else "") or self.cgroup_parent)
        return f"/{parent.strip('/')}/{cid}"

    def log_path(self, cid: str) -> Path:
        return self.cdir_of(cid) / f"{cid}-json.log"

    def _volume_users(self, name: str) -> list[str]:
        with self._lock:
            return [c.id for c in self.containers.values()
                    if any(m.type == "volume" and m.name == name for m in c.mounts)]

    def close(self) -> None:
        """Stop watching (monitors and containers keep running)."""
        self._closing = True
        for c in list(self.containers.values()):
            if c.restart_timer is not None:
                c.restart_timer.cancel()
        self._stop_zygote()
        self.store.close()

    # ------------------------------------------------------------------ lookup
    def get(self, ref: str) -> Container:
        if not ref:
            raise NotFound("No such container: ")
        with self._lock:
            c = self.containers.get(ref)
            if c is not None:
                return c
            name = "/" + ref.lstrip("/")
            for c in self.containers.values():
                if c.name == name:
                    return c
            matches = [c for c in self.containers.values() if c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"Multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    # ------------------------------------------------------------------ create
    def create(self, name: str | None, config: dict, host_config: dict | None = None,
               networking_config: dict | None = None) -> tuple[str, list[str]]:
        if not isinstance(config, dict):
            raise InvalidParameter("Config cannot be empty in order to create a container")
        hc = json.loads(json.dumps(host_config or config.get("HostConfig") or {}))
        request = {"Config": config, "HostConfig": host_config or {},
                   "NetworkingConfig": networking_config or {}}
        config = {k: v for k, v in config.items() if k != "HostConfig"}
        if name:
            if not NAME_RE.match(name):
                raise InvalidParameter(
                    f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )
            name = "/" + name.lstrip("/")
        ref = config.get("Image") or ""
        if not ref:
            raise InvalidParameter("No image specified")
        image = self.graph.get(ref)
        merged = specmod.merge_config(config, getattr(image, "config", None))
        warnings = specmod.validate_host_config(hc, merged)
        logmod.parse_log_config(hc.get("LogConfig"))
        if not hc.get("LogConfig"):
            hc["LogConfig"] = {"Type": "json-file", "Config": {}}
        hc.setdefault("NetworkMode", "default")
        hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        if not hc["RestartPolicy"].get("Name"):
            hc["RestartPolicy"]["Name"] = "no"
        mode = self._network_kind(hc.get("NetworkMode"))
        if mode[0] == "container":
            other = self.get(mode[1])
            hc["NetworkMode"] = f"container:{other.id}"
        elif mode[0] == "bridge" and self.network is None and mode[1] != "bridge":
            raise NotFound(f"network {mode[1]} not found")
        elif mode[0] == "bridge" and self.network is None:
            warnings.append("no network driver: the container gets a network namespace with "
                            "only a loopback interface")
        elif mode[0] == "bridge" and self.network is not None and mode[1] != "bridge":
            self.network.inspect_network(mode[1])  # NotFound when it does not exist
        if hc.get("Init") and self.init_binary() is None:
            raise InvalidParameter(
                f"HostConfig.Init: no init binary ({' or '.join(INIT_CANDIDATES)} on PATH): "
                "install Debian's tini package or start skiffd with --init-path")
        cid = secrets.token_hex(32)
        while cid[:12].isdigit():
            cid = secrets.token_hex(32)
        merged["Image"] = ref
        merged["Hostname"] = merged.get("Hostname") or (
            "" if mode[0] in ("host", "container") else cid[:12])
        if mode[0] == "host" and not merged["Hostname"]:
            merged["Hostname"] = socket.gethostname()
        merged.setdefault("Domainname", "")
        undo: list[Callable[[], None]] = []
        try:
            with self._lock:
                if name is None:
                    name = self._random_name()
                other_id = self.store.id_by_name(name)
                if other_id is not None:
                    raise Conflict(
                        f'Conflict. The container name "{name}" is already in use by container '
                        f'"{other_id}". You have to remove (or rename) that container to be able '
                        "to reuse that name."
                    )
                mounts = self._resolve_mounts(cid, merged, hc, undo)
                d = self.cdir_of(cid)
                d.mkdir(parents=True)
                undo.append(lambda: shutil.rmtree(d, ignore_errors=True))
                self.graph.create_rw_layer(cid, image.id)
                undo.append(lambda: self.graph.remove_rw_layer(cid))
                c = Container({
                    "Id": cid, "Name": name, "Created": now_iso(), "Config": merged,
                    "HostConfig": hc, "Request": request, "Image": image.id,
                    "MountPoints": [{**m.to_docker(), "_Options": m.options} for m in mounts],
                    "Driver": self._graph_driver_name(),
                })
                with open(d / "config.v2.json", "w") as f:
                    json.dump(request, f, indent=1)
                with open(d / "hostconfig.json", "w") as f:
                    json.dump(hc, f, indent=1)
                try:
                    self.store.insert(cid, name, c.created, c.to_db())
                except sqlite3.IntegrityError:
                    other_id = self.store.id_by_name(name) or "?"
                    raise Conflict(
                        f'Conflict. The container name "{name}" is already in use by container '
                        f'"{other_id}". You have to remove (or rename) that container to be able '
                        "to reuse that name."
                    ) from None
                self.containers[cid] = c
        except BaseException:
            for fn in reversed(undo):
                with contextlib.suppress(Exception):
                    fn()
            raise
        self.emit(c, "create")
        return cid, warnings

    def _graph_driver_name(self) -> str:
        drv = getattr(self.graph, "driver", None)
        return str(getattr(drv, "name", "") or getattr(self.graph, "driver_name", "") or "")

    def _random_name(self) -> str:
        for _ in range(100):
            n = f"/{random.choice(_LEFT)}_{random.choice(_RIGHT)}"
            if self.store.id_by_name(n) is None:
                return n
        return f"/{random.choice(_LEFT)}_{random.choice(_RIGHT)}{random.randint(0, 9999)}"

    @staticmethod
    def _network_kind(mode: str | None) -> tuple[str, str]:
        m = (mode or "").strip()
        if m in ("", "default", "bridge"):
            return "bridge", "bridge"
        if m in ("none", "host"):
            return m, ""
        if m.startswith("container:"):
            return "container", m.split(":", 1)[1]
        return "bridge", m

    def _resolve_mounts(self, cid: str, config: dict, hc: dict,
                        undo: list[Callable[[], None]]) -> list[MountPoint]:
        """Binds, --mount, --tmpfs and Config.Volumes -> MountPoints (volumes created here)."""
        out: dict[str, MountPoint] = {}

        def volume(name: str, anonymous: bool, labels: dict | None = None) -> str:
            existed = self.store.get_volume(name) is not None if name else False
            v = self.volumes.create(name or None, labels=labels, anonymous=anonymous,
                                    events=True)
            if not existed:
                undo.append(lambda: self.volumes.remove(v["Name"], force=True))
            return v["Name"]

        for b in hc.get("Binds") or []:
            src, dst, mode = specmod.parse_bind(b)
            if dst in out:
                raise InvalidParameter(f"Duplicate mount point: {dst}")
            opts = mode.split(",") if mode else []
            rw = "ro" not in opts
            prop = next((o for o in opts if o in ("shared", "rshared", "slave", "rslave",
                                                   "private", "rprivate")), "rprivate")
            if not src:
                name = volume("", True)
                out[dst] = MountPoint("volume", self.volumes.get(name)["Mountpoint"], dst, rw,
                                      name, mode, copy_up="nocopy" not in opts)
            elif src.startswith("/"):
                src = os.path.normpath(src)
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)  # docker -v creates a missing host dir
                out[dst] = MountPoint("bind", src, dst, rw, "", mode, prop)
            else:
                if not specmod.valid_volume_name(src):
                    raise InvalidParameter(
                        f"create {src}: \"{src}\" includes invalid characters for a local volume "
                        "name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to "
                        "pass a host directory, use absolute path")
                name = volume(src, False)
                out[dst] = MountPoint("volume", self.volumes.get(name)["Mountpoint"], dst, rw,
                                      name, mode, copy_up="nocopy" not in opts)
        for m in hc.get("Mounts") or []:
            typ = m.get("Type") or "volume"
            dst = m.get("Target") or m.get("Destination") or ""
            if not dst.startswith("/"):
                raise InvalidParameter(f"invalid mount config for type \"{typ}\": invalid mount "
                                       f"path: '{dst}' mount path must be absolute")
            dst = os.path.normpath(dst)
            if dst in out:
                raise InvalidParameter(f"Duplicate mount point: {dst}")
            rw = not m.get("ReadOnly")
            if typ == "bind":
                src = m.get("Source") or ""
                if not src.startswith("/"):
                    raise InvalidParameter(f"invalid mount config for type \"bind\": invalid "
                                           f"mount path: '{src}' mount path must be absolute")
                if not os.path.exists(src):
                    raise InvalidParameter(f"invalid mount config for type \"bind\": bind "
                                           f"source path does not exist: {src}")
                prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
                out[dst] = MountPoint("bind", os.path.normpath(src), dst, rw, "", "", prop)
            elif typ == "volume":
                vo = m.get("VolumeOptions") or {}
                name = volume(m.get("Source") or "", not m.get("Source"), vo.get("Labels"))
                out[dst] = MountPoint("volume", self.volumes.get(name)["Mountpoint"], dst, rw,
                                      name, "z" if False else "",
                                      copy_up=not vo.get("NoCopy"))
            elif typ == "tmpfs":
                to = m.get("TmpfsOptions") or {}
                opts = []
                if to.get("SizeBytes"):
                    opts.append(f"size={to['SizeBytes']}")
                if to.get("Mode"):
                    opts.append(f"mode={to['Mode']:o}")
                out[dst] = MountPoint("tmpfs", "", dst, rw, options=opts)
            else:
                raise InvalidParameter(f"mount type unknown: {typ!r}")
        for dst in config.get("Volumes") or {}:
            d = os.path.normpath(dst)
            if d in out or d in (hc.get("Tmpfs") or {}):
                continue
            name = volume("", True)
            out[d] = MountPoint("volume", self.volumes.get(name)["Mountpoint"], d, True, name)
        return list(out.values())

    # ------------------------------------------------------------------ start
    def start(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            st = c.state.status
            if st == PAUSED:
                raise Conflict("cannot start a paused container, try unpause instead")
            if st in (RUNNING,):
                raise NotModified(f"container {c.id} is already started")
            if st in (REMOVING, DEAD):
                raise Conflict(f"cannot start container {c.short}: container is marked for "
                               "removal and cannot be started")
            if c.restart_timer is not None:
                c.restart_timer.cancel()
                c.restart_timer = None
            c.state.manually_stopped = False
            c.state.restart_count = 0 if st != RESTARTING else c.state.restart_count
            self._start_locked(c)

    def _start_locked(self, c: Container) -> None:
        undo: list[Callable[[], None]] = []
        xdir = self.xdir_of(c.id)
        monitor: dict | None = None
        t0 = time.monotonic()
        marks: list[tuple[str, float]] = []
        try:
            shutil.rmtree(xdir, ignore_errors=True)
            (xdir / "execs").mkdir(parents=True)
            (self.cdir_of(c.id) / "exit.json").unlink(missing_ok=True)
            rootfs = Path(self.graph.mount(c.id))
            undo.append(lambda: self.graph.unmount(c.id))
            c.rootfs = str(rootfs)
            marks.append(("mount", time.monotonic()))
            netns, etc, pid_ns, ipc_ns = self._setup_network(c, undo)
            marks.append(("network", time.monotonic()))
            hc = c.host_config
            user = specmod.resolve_user(c.config.get("User") or "", *self._user_dbs(c, rootfs),
                                        hc.get("GroupAdd") or ())
            self._prepare_mounts(c, rootfs)
            init_bin = self.init_binary() if hc.get("Init") else None
            spec = specmod.build_spec(c.config, hc, specmod.SpecInputs(
                cid=c.id, rootfs=str(rootfs), hostname=c.config.get("Hostname") or c.short,
                user=user, mounts=c.mounts, etc_files=etc, netns=netns,
                cgroups_path=self.cgroups_path(c.id), init_binary=init_bin,
                pid_ns=pid_ns, ipc_ns=ipc_ns, uts_host=hc.get("UTSMode") == "host"
                or (self._network_kind(hc.get("NetworkMode"))[0] == "host"
                    and not c.request.get("Config", {}).get("Hostname")),
            ))
            self._ensure_workdir(rootfs, c.config.get("WorkingDir") or "", user)
            bundle = self.cdir_of(c.id)
            with open(bundle / "config.json", "w") as f:
                json.dump(spec, f, indent=1)
            marks.append(("spec", time.monotonic()))
            connector = None

            def connect_meanwhile() -> None:
                """The endpoint is made while the monitor creates the container: started once
                the monitor has its request, so the two threads do not compete for the GIL
                during the hand-off."""
                nonlocal connector
                if c.pending_connect is not None:
                    connector = _Background(c.pending_connect)
                    c.pending_connect = None

            t_spawn = time.time()
            try:
                monitor = self._spawn_monitor(c, bundle, xdir, on_spawned=connect_meanwhile)
            finally:
                if connector is not None:
                    connector.join()  # its undo entries must be in place before any rollback
            undo.append(lambda: self._abort_monitor(c, monitor))
            if connector is not None:
                connector.result()
                marks.append(("connect (overlapped)", time.monotonic()))
            marks.append(("monitor+create", time.monotonic()))
            if "t_begin" in monitor:
                marks.append((f"(fork {1000 * (monitor['t_begin'] - t_spawn):.1f}ms, create "
                               f"{1000 * (monitor['t_created'] - monitor['t_begin']):.1f}ms)",
                               time.monotonic()))
            for pend in c.pending_attach:
                with contextlib.suppress(Exception):
                    pend["conn"] = self._monitor_request(c.id, {"op": "attach", **pend["want"]},
                                                         keep=True)[1]
                pend["ready"].set()
            c.pending_attach.clear()
            reply, _ = self._monitor_request(c.id, {"op": "start"})
            if "error" in reply:
                raise SystemError_(reply["error"])
            marks.append(("start", time.monotonic()))
            if log.isEnabledFor(logging.DEBUG):
                prev, parts = t0, []
                for name, t in marks:
                    parts.append(f"{name} {1000 * (t - prev):.1f}ms")
                    prev = t
                log.debug("start %s: %s", c.short, ", ".join(parts))
        except BaseException as e:
            c.pending_connect = None
            for fn in reversed(undo):
                with contextlib.suppress(Exception):
                    fn()
            for pend in c.pending_attach:
                pend["ready"].set()
            c.pending_attach.clear()
            shutil.rmtree(xdir, ignore_errors=True)
            msg = str(e)
            c.network_settings = _empty_network_settings()
            c.netns = ""
            c.rootfs = ""
            c.exit_gen += 1  # next-exit waiters learn about the failure (with its exit code)
            if c.state.status == CREATED or c.state.status == EXITED:
                c.state.error = msg
                c.state.exit_code = _start_error_code(msg)
            elif c.state.status == RESTARTING:
                c.state.set_exited(_start_error_code(msg), error=msg)
            self._save(c)
            c.cond.notify_all()
            if c.host_config.get("AutoRemove"):  # docker removes a --rm container that failed
                threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()
            if isinstance(e, SkiffError):
                raise
            raise _wrap_start_error(e) from e
        c.state.set_running(int(reply.get("pid") or monitor["pid"]), int(monitor["monitor_pid"]))
        if reply.get("started_at"):
            c.state.started_at = reply["started_at"]
        self._save(c)
        self.emit(c, "start")
        c.cond.notify_all()
        self._watch(c)

    def _ensure_workdir(self, rootfs: Path, workdir: str, user: tuple[int, int, list[int]]) -> None:
        """docker creates a missing WorkingDir (owned by the container's user)."""
        if not workdir or workdir == "/":
            return
        target = Path(os.path.normpath(str(rootfs) + "/" + workdir))
        try:
            target.relative_to(rootfs)
        except ValueError:
            return
        if target.is_symlink() or target.exists():
            return
        with contextlib.suppress(OSError):
            target.mkdir(parents=True, mode=0o755)
            os.chown(target, user[0], user[1])

    def _prepare_mounts(self, c: Container, rootfs: Path) -> None:
        """Copy the image's content into new empty volumes (docker's copy-up)."""
        for m in c.mounts:
            if m.type != "volume" or not m.copy_up:
                continue
            src = Path(os.path.normpath(str(rootfs) + "/" + m.destination))
            dst = Path(m.source)
            dst.mkdir(parents=True, exist_ok=True)
            marker = dst.parent / ".copied"
            if marker.exists():
                continue
            try:
                if src.is_dir() and not src.is_symlink() and not any(dst.iterdir()):
                    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
                    st = src.stat()
                    os.chown(dst, st.st_uid, st.st_gid)
                    os.chmod(dst, st.st_mode & 0o7777)
                marker.touch()
            except OSError as e:
                log.warning("volume copy-up for %s failed: %s", m.destination, e)

    def _setup_network(self, c: Container, undo: list[Callable[[], None]]
                       ) -> tuple[str | None, dict[str, str], str | None, str | None]:
        """Returns (netns: None=new | "host" | path, etc files, pid ns, ipc ns)."""
        hc = c.host_config
        kind, arg = self._network_kind(hc.get("NetworkMode"))
        d = self.cdir_of(c.id)
        hostname = c.config.get("Hostname") or c.short
        pid_ns = ipc_ns = None
        if hc.get("PidMode") == "host":
            pid_ns = "host"
        elif (hc.get("PidMode") or "").startswith("container:"):
            pid_ns = f"/proc/{self._running_pid(hc['PidMode'].split(':', 1)[1])}/ns/pid"
        if hc.get("IpcMode") == "host":
            ipc_ns = "host"
        elif (hc.get("IpcMode") or "").startswith("container:"):
            ipc_ns = f"/proc/{self._running_pid(hc['IpcMode'].split(':', 1)[1])}/ns/ipc"
        c.network_settings = _empty_network_settings()
        if kind == "host":
            etc = self._write_etc(c, d, hostname, host=True)
            c.network_settings["Networks"] = {"host": _endpoint_settings()}
            return "host", etc, pid_ns, ipc_ns
        if kind == "container":
            other = self.get(arg)
            pid = self._running_pid(other.id)
            # docker: a container on another's network shares its names too
            c.config["Hostname"] = other.config.get("Hostname") or other.short
            c.config["Domainname"] = other.config.get("Domainname", "")
            etc = {}
            od = self.cdir_of(other.id)
            for name, dest in (("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"),
                               ("hostname", "/etc/hostname")):
                if (od / name).exists():
                    etc[dest] = str(od / name)
            return other.netns or f"/proc/{pid}/ns/net", etc, pid_ns, ipc_ns
        if kind == "none" or self.network is None:
            etc = self._write_etc(c, d, hostname, host=False)
            if kind == "none":
                c.network_settings["Networks"] = {"none": _endpoint_settings()}
            return None, etc, pid_ns, ipc_ns
        net = self.network
        netns = net.create_sandbox(c.id, network=arg)
        undo.append(lambda: net.delete_sandbox(c.id))
        # placeholders at the paths the driver writes in place once the endpoint exists
        etc = self._write_etc(c, d, hostname, host=False)
        ec = ((c.request.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).get(arg) or {}
        aliases = list(ec.get("Aliases") or [])

        def connect() -> None:
            """Runs while the monitor creates the container (joined to the netns by path)."""
            settings = net.connect(
                c.id, netns, arg, port_bindings=hc.get("PortBindings") or {},
                publish_all=bool(hc.get("PublishAllPorts")),
                exposed_ports=tuple((c.config.get("ExposedPorts") or {}).keys()),
                hostname=hostname, aliases=[c.name.lstrip("/"), *aliases],
            )
            undo.append(lambda: net.disconnect(c.id))
            c.network_settings = {**_empty_network_settings(), **settings}
            c.network_settings["SandboxKey"] = netns
            net.write_etc_files(c.id, d, hostname)
            self._append_extra_hosts(c, d)

        c.netns = netns
        c.pending_connect = connect
        return netns, etc, pid_ns, ipc_ns

    def _running_pid(self, ref: str) -> int:
        other = self.get(ref)
        if other.state.status not in (RUNNING, PAUSED) or not other.state.pid:
            raise Conflict(f"cannot join network of a non running container: {other.id}")
        return other.state.pid

    def _write_etc(self, c: Container, d: Path, hostname: str, host: bool) -> dict[str, str]:
        (d / "hostname").write_text(hostname + "\n")
        if host:
            try:
                hosts = Path("/etc/hosts").read_text()
            except OSError:
                hosts = "127.0.0.1\tlocalhost\n"
        else:
            hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                     "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                     "ff02::2\tip6-allrouters\n")
        (d / "hosts").write_text(hosts)
        self._append_extra_hosts(c, d)
        (d / "resolv.conf").write_text(_resolv_conf(c.host_config, host))
        return {"/etc/hostname": str(d / "hostname"), "/etc/hosts": str(d / "hosts"),
                "/etc/resolv.conf": str(d / "resolv.conf")}

    def _append_extra_hosts(self, c: Container, d: Path) -> None:
        extra = c.host_config.get("ExtraHosts") or []
        if not extra:
            return
        lines = []
        for e in extra:
            hostpart, _, ip = e.partition(":") if e.count(":") == 1 else e.partition("=")
            if not ip:
                hostpart, _, ip = e.partition(":")
            lines.append(f"{ip}\t{hostpart}\n")
        with open(d / "hosts", "a") as f:
            f.write("".join(lines))

    def _teardown(self, c: Container) -> None:
        """After an exit: release the network and the rootfs mount (not the rw layer)."""
        kind, _ = self._network_kind(c.host_config.get("NetworkMode"))
        if kind == "bridge" and self.network is not None:
            with contextlib.suppress(Exception):
                # the kernel objects go just after (the driver's reaper, or its next start)
                self.network.delete_sandbox(c.id, wait=False)
        c.netns = ""
        if c.network_settings:
            for ep in (c.network_settings.get("Networks") or {}).values():
                for k in ("IPAddress", "Gateway", "MacAddress", "EndpointID"):
                    if k in ep:
                        ep[k] = ""
            for k in ("IPAddress", "Gateway", "MacAddress", "EndpointID", "SandboxKey"):
                if k in c.network_settings:
                    c.network_settings[k] = ""
            c.network_settings["Ports"] = {}
        if c.rootfs:
            with contextlib.suppress(Exception):
                self.graph.unmount(c.id)
            c.rootfs = ""
        shutil.rmtree(self.xdir_of(c.id), ignore_errors=True)

    # ------------------------------------------------------------------ monitor plumbing
    def _spawn_monitor(self, c: Container, bundle: Path, xdir: Path,
                       on_spawned: Callable[[], None] | None = None) -> dict:
        driver, max_size, max_file = logmod.parse_log_config(c.host_config.get("LogConfig"))
        cfg = {
            "id": c.id, "bundle": str(bundle), "spec_path": str(bundle / "config.json"),
            "runtime_root": str(self.runtime_root), "exec_dir": str(xdir),
            "sock": str(xdir / "monitor.sock"), "exit_file": str(self.cdir_of(c.id) / "exit.json"),
            "log_path": str(self.log_path(c.id)), "log_driver": driver, "max_size": max_size,
            "max_file": max_file, "tty": c.tty, "open_stdin": bool(c.config.get("OpenStdin")),
            "stdin_once": bool(c.config.get("StdinOnce")),
            "console_size": (c.host_config.get("ConsoleSize") or None),
            "driver": self.exec_driver,
        }
        with open(xdir / "monitor.json", "w") as f:
            json.dump(cfg, f)
        r, w = os.pipe()
        try:
            if not self._spawn_via_zygote(str(xdir / "monitor.json"), w):
                p = subprocess.Popen(
                    [sys.executable, "-m", "engine.containers.monitor",
                     str(xdir / "monitor.json"), str(w)],
                    pass_fds=(w,), start_new_session=True, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                    env=_child_env(), cwd="/",
                )
                os.close(w)
                w = -1
                p.wait()
        except BaseException:
            os.close(r)
            if w >= 0:
                os.close(w)
            raise
        if w >= 0:
            os.close(w)
        if on_spawned is not None:
            try:
                on_spawned()
            except BaseException:
                os.close(r)
                raise
        with os.fdopen(r, "rb") as f:
            line = _read_line_timeout(f, MONITOR_READY_TIMEOUT)
        if not line:
            tail = ""
            with contextlib.suppress(OSError):
                tail = (xdir / "monitor.log").read_text()[-2000:]
            raise SystemError_(f"container monitor failed to start: {tail.strip()}")
        reply = json.loads(line)
        if "error" in reply:
            raise _runtime_error(reply["error"], reply.get("type", ""))
        return reply

    # the zygote: a pre-imported process that forks monitors (no interpreter start per container)
    def _start_zygote(self) -> Any:
        if os.environ.get("SKIFF_NO_ZYGOTE"):
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            log_fd = os.open(self.exec_root / "zygote.log",
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                p = subprocess.Popen(
                    [sys.executable, "-m", "engine.containers.monitor", "--zygote",
                     str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),), start_new_session=True,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_fd,
                    close_fds=True, env=_child_env(), cwd="/",
                )
            finally:
                os.close(log_fd)
        finally:
            theirs.close()
        ours.settimeout(60)
        try:
            ok = _recv_line(ours) == b"ready"
        except OSError:
            ok = False
        if not ok:
            ours.close()
            with contextlib.suppress(OSError):
                p.kill()
            p.wait()
            return None
        ours.settimeout(30)
        return (p, ours)

    def _spawn_via_zygote(self, cfg_path: str, ready_w: int) -> bool:
        import array

        with self._zlock:
            if self._zygote is None or self._zygote[0].poll() is not None:
                self._zygote = self._start_zygote()
            if self._zygote is None:
                return False
            p, sock = self._zygote
            try:
                sock.sendmsg([json.dumps({"cfg": cfg_path}).encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [ready_w]).tobytes())])
                if _recv_line(sock) == b"ok":
                    return True
            except OSError:
                pass
            sock.close()
            with contextlib.suppress(OSError):
                p.kill()
            p.wait()
            self._zygote = None
            return False

    def _stop_zygote(self) -> None:
        with self._zlock:
            if self._zygote is not None:
                p, sock = self._zygote
                sock.close()  # the zygote exits on EOF
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
                self._zygote = None

    def _abort_monitor(self, c: Container, monitor: dict | None) -> None:
        """A start that failed after the monitor created the container: kill and wait."""
        if not monitor:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(monitor["pid"]), _signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _pid_alive(int(monitor["monitor_pid"])):
            time.sleep(0.02)
        (self.cdir_of(c.id) / "exit.json").unlink(missing_ok=True)
        self.driver.destroy(c.id)

    def _connect(self, cid: str, timeout: float = 10.0) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            connect_unix(s, self.xdir_of(cid) / "monitor.sock")
        except OSError:
            s.close()
            raise
        return s

    def _monitor_request(self, cid: str, req: dict, keep: bool = False,
                         timeout: float = 30.0) -> tuple[dict, socket.socket | None]:
        try:
            s = self._connect(cid, timeout)
        except OSError as e:
            raise Conflict(f"Container {cid} is not running") from e
        try:
            s.sendall(json.dumps(req).encode() + b"\n")
            line = _recv_line(s)
        except OSError as e:
            s.close()
            raise Conflict(f"Container {cid} is not running ({e})") from e
        if not line:
            s.close()
            raise Conflict(f"Container {cid} is not running")
        reply = json.loads(line)
        if keep and "error" not in reply:
            s.settimeout(None)
            return reply, s
        s.close()
        return reply, None

    def prune(self, filters: dict | None = None) -> dict:
        """`docker container prune`: remove every stopped container (label filters apply)."""
        flt = _normalize_filters(filters)
        flt.pop("until", None)
        deleted = []
        for c in list(self.containers.values()):
            if c.state.status not in (CREATED, EXITED, DEAD):
                continue
            if not self._match(c, {k: v for k, v in flt.items() if k == "label"}):
                continue
            with contextlib.suppress(SkiffError):
                self.remove(c.id)
                deleted.append(c.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": 0}

    def _watch(self, c: Container) -> None:
        """A thread that waits for the monitor to report the container's exit."""
        t = threading.Thread(target=self._watch_loop, args=(c,), daemon=True,
                             name=f"watch-{c.short}")
        c.watcher = t
        t.start()
        from . import health

        health.start(self, c)  # every path that (re)attaches a live container comes here

    def _watch_loop(self, c: Container) -> None:
        record = None
        try:
            reply, s = self._monitor_request(c.id, {"op": "wait"}, keep=True)
            if s is not None:
                with s:
                    line = _recv_line(s, limit=1 << 16)
                    if line:
                        record = json.loads(line).get("exit")
        except (Conflict, OSError, ValueError):
            pass
        if self._closing:
            return
        if record is None:
            record = self._wait_exit_file(c)
        self._on_exit(c, record, remove_here=True)

    def _wait_exit_file(self, c: Container, pid: int = 0, timeout: float = 10.0) -> dict:
        """The monitor is gone: its exit file says how the container ended."""
        ef = self.cdir_of(c.id) / "exit.json"
        mon = pid or c.state.monitor_pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ef.exists():
                with contextlib.suppress(ValueError, OSError):
                    return json.loads(ef.read_text())
            if mon and not _pid_alive(mon) and not ef.exists():
                break
            time.sleep(0.02)
        if ef.exists():
            with contextlib.suppress(ValueError, OSError):
                return json.loads(ef.read_text())
        # the monitor died without a record (killed, or the machine rebooted)
        if c.state.pid and _pid_alive(c.state.pid):
            with contextlib.suppress(OSError):
                os.kill(c.state.pid, _signal.SIGKILL)
        self.driver.destroy(c.id)
        return {"ExitCode": 255, "OOMKilled": False, "FinishedAt": now_iso(),
                "Error": "container monitor exited unexpectedly"}

    def _on_exit(self, c: Container, record: dict, remove_here: bool = False) -> None:
        """Record an exit; remove_here: a --rm container is removed in this thread (the
        watcher, which has nothing left to do) instead of a new one."""
        with c.lock:
            if c.removed or self._closing:
                return
            code = int(record.get("ExitCode", 255))
            oom = bool(record.get("OOMKilled"))
            ran_for = time.time() - parse_iso(c.state.started_at)
            self._teardown(c)
            if c.state.status == REMOVING:
                c.state.pid = c.state.monitor_pid = 0
                c.state.exit_code = code
                c.state.finished_at = record.get("FinishedAt") or now_iso()
            else:
                c.state.set_exited(code, oom=oom, finished_at=record.get("FinishedAt"),
                                   error=record.get("Error", ""))
            if oom:
                self.emit(c, "oom")
            self.emit(c, "die", exitCode=code)
            c.exit_gen += 1
            from .health import stopped

            stopped(c.health)  # docker: probing stopped -> "unhealthy"
            restart = False
            delay = 0.0
            if c.state.status == EXITED and not self._closing:
                rm = RestartManager.from_host_config(c.host_config, c.state.restart_count,
                                                     c.restart_timeout)
                restart, delay = rm.should_restart(code, c.state.manually_stopped, ran_for)
                c.restart_timeout = rm.timeout
                if restart:
                    c.state.restart_count = rm.restart_count
                    c.state.transition(RESTARTING)
            self._save(c)
            (self.cdir_of(c.id) / "exit.json").unlink(missing_ok=True)  # recorded: consumed
            c.cond.notify_all()
            auto_remove = (not restart and c.host_config.get("AutoRemove")
                           and c.state.status == EXITED)
            if restart:
                t = threading.Timer(delay, self._restart_after_backoff, args=(c,))
                t.daemon = True
                c.restart_timer = t
                t.start()
        if auto_remove and remove_here:
            self._auto_remove(c)
        elif auto_remove:
            threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()

    def _auto_remove(self, c: Container) -> None:
        with contextlib.suppress(Exception):
            self.remove(c.id, force=True, volumes=True)

    def _restart_after_backoff(self, c: Container) -> None:
        with c.lock:
            c.restart_timer = None
            if c.removed or c.state.status != RESTARTING or self._closing:
                return
            try:
                self._start_locked(c)
            except Exception:  # noqa: BLE001 - recorded in State.Error by _start_locked
                log.exception("restart of %s failed", c.short)
                if c.state.status == RESTARTING:
                    c.state.set_exited(c.state.exit_code or 128, error=c.state.error)
                    self._save(c)
                    c.cond.notify_all()

    # ------------------------------------------------------------------ restore
    def restore(self) -> None:
        """Reconcile SQLite with the kernel after a daemon (re)start."""
        for c in list(self.containers.values()):
            try:
                self._restore_one(c)
            except Exception:  # noqa: BLE001 - one broken container must not stop the daemon
                log.exception("restore of %s failed", c.short)

    def _restore_one(self, c: Container) -> None:
        with c.lock:
            st = c.state.status
            if st == REMOVING:
                c.state.status = DEAD
                self._save(c)
                threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()
                return
            if st in (RUNNING, PAUSED):
                alive = False
                try:
                    reply, _ = self._monitor_request(c.id, {"op": "ping"}, timeout=5)
                    alive = "pid" in reply
                except Conflict:
                    alive = False
                if alive:
                    if c.rootfs:
                        with contextlib.suppress(Exception):
                            self.graph.mount(c.id)  # the graph's mount count restarts at zero
                    self._watch(c)
                    return
                # the monitor writes its exit file before it stops answering: no answer and
                # no file means it died with the container (killed, or the machine rebooted)
                record = self._wait_exit_file(c, timeout=0.5)
                self._on_exit(c, record)
                return
            if st == RESTARTING:
                c.state.status = EXITED
                c.state.transition(RESTARTING)
                self._save(c)
                t = threading.Timer(0, self._restart_after_backoff, args=(c,))
                t.daemon = True
                c.restart_timer = t
                t.start()
                return
            if (self.xdir_of(c.id) / "monitor.sock").exists():
                self._adopt_orphan(c)
                return
            ef = self.cdir_of(c.id) / "exit.json"
            if ef.exists():
                ef.unlink(missing_ok=True)

    def _adopt_orphan(self, c: Container) -> None:
        """The daemon died between starting a monitor and recording it: a started container
        is adopted as running, a never-started one is killed (its monitor cleans up)."""
        try:
            reply, _ = self._monitor_request(c.id, {"op": "ping"}, timeout=5)
        except Conflict:
            shutil.rmtree(self.xdir_of(c.id), ignore_errors=True)
            return
        if not reply.get("started"):
            with contextlib.suppress(Conflict):
                self._monitor_request(c.id, {"op": "signal", "signal": int(_signal.SIGKILL)})
            return
        c.state.set_running(int(reply["pid"]), int(reply.get("monitor_pid") or 0))
        if reply.get("started_at"):
            c.state.started_at = reply["started_at"]
        self._save(c)
        if c.rootfs:
            with contextlib.suppress(Exception):
                self.graph.mount(c.id)
        self._watch(c)

    # ------------------------------------------------------------------ stop / kill
    def _signal(self, c: Container, sig: int) -> None:
        try:
            self.driver.kill(c.id, sig, c.state.pid)
        except ProcessLookupError:
            pass
        except Exception as e:  # noqa: BLE001
            if c.state.pid and _pid_alive(c.state.pid):
                os.kill(c.state.pid, sig)
            else:
                log.debug("kill %s: %s", c.short, e)

    def kill(self, ref: str, signal: str | int | None = "SIGKILL") -> None:
        c = self.get(ref)
        sig = specmod.signal_number(signal, _signal.SIGKILL)
        with c.lock:
            if c.state.status == RESTARTING:
                self._cancel_restart(c)
                return
            if c.state.status not in (RUNNING, PAUSED):
                raise Conflict(f"Container {c.id} is not running")
            stop_sig = specmod.signal_number(c.config.get("StopSignal"), _signal.SIGTERM)
            if sig in (_signal.SIGKILL, stop_sig):
                c.state.manually_stopped = True
                self._save(c)
            self._signal(c, sig)
            if c.state.status == PAUSED and sig == _signal.SIGKILL:
                with contextlib.suppress(Exception):
                    self.driver.resume(c.id)
        self.emit(c, "kill", signal=sig)

    def _cancel_restart(self, c: Container) -> None:
        if c.restart_timer is not None:
            c.restart_timer.cancel()
            c.restart_timer = None
        c.state.manually_stopped = True
        c.state.status = EXITED
        self._save(c)
        c.cond.notify_all()

    def _wait_exit(self, c: Container, gen: int, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with c.lock:
            while c.exit_gen == gen and c.state.status in (RUNNING, PAUSED) and not c.removed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                c.cond.wait(remaining)
            return True

    def stop(self, ref: str, timeout: int | None = None, signal: str | int | None = None) -> None:
        c = self.get(ref)
        with c.lock:
            if c.state.status == RESTARTING:
                self._cancel_restart(c)
                self.emit(c, "stop")
                return
            if c.state.status not in (RUNNING, PAUSED):
                raise NotModified(f"container {c.id} is already stopped")
            c.state.manually_stopped = True
            self._save(c)
            sig = specmod.signal_number(signal or c.config.get("StopSignal"), _signal.SIGTERM)
            if timeout is None:
                timeout = c.config.get("StopTimeout")
            if timeout is None:
                timeout = 10
            gen = c.exit_gen
            paused = c.state.status == PAUSED
        self._signal(c, sig)
        self.emit(c, "kill", signal=sig)
        if paused:
            with contextlib.suppress(Exception):
                self.driver.resume(c.id)
        if timeout < 0 or not self._wait_exit(c, gen, timeout if timeout >= 0 else None):
            if timeout >= 0:
                self._signal(c, _signal.SIGKILL)
                self.emit(c, "kill", signal=int(_signal.SIGKILL))
            self._wait_exit(c, gen, None if timeout < 0 else 30)
        self.emit(c, "stop")

    def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        with contextlib.suppress(NotModified):
            self.stop(c.id, timeout)
        with c.lock:
            if c.state.status in (RUNNING, PAUSED):
                raise Conflict(f"Cannot restart container {c.id}: it did not stop")
            if c.restart_timer is not None:
                c.restart_timer.cancel()
                c.restart_timer = None
            if c.state.status == RESTARTING:
                c.state.status = EXITED
            c.state.manually_stopped = False
            self._start_locked(c)
        self.emit(c, "restart")

    def pause(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            if c.state.status == PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != RUNNING:
                raise Conflict(f"Container {c.id} is not running")
            try:
                self.driver.pause(c.id)
            except Exception as e:  # noqa: BLE001
                raise SystemError_(f"cannot pause container {c.id}: {e}") from e
            c.state.transition(PAUSED)
            self._save(c)
        self.emit(c, "pause")

    def unpause(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            if c.state.status != PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            try:
                self.driver.resume(c.id)
            except Exception as e:  # noqa: BLE001
                raise SystemError_(f"cannot unpause container {c.id}: {e}") from e
            c.state.transition(RUNNING)
            self._save(c)
        self.emit(c, "unpause")

    def update(self, ref: str, resources: dict) -> list[str]:
        """`docker update`: resources and the restart policy; live containers get new limits."""
        c = self.get(ref)
        keys = {"Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
                "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight",
                "KernelMemory", "RestartPolicy"}
        # the CLI sends every Resources field (zeros, nulls): only the ones set count, and
        # unsupported ones are refused only when they ask for something
        unsupported = [k for k, v in resources.items()
                       if k not in keys and v not in (None, 0, "", [], {}, False)]
        if unsupported:
            raise InvalidParameter(
                f"updating {', '.join(sorted(unsupported))} is not supported")
        with c.lock:
            if c.state.status in (REMOVING, DEAD):
                raise Conflict(f"Cannot update container {c.id}: container is marked for removal")
            hc = json.loads(json.dumps(c.host_config))
            for k, v in resources.items():
                if k in keys and v is not None and (v != 0 or k == "PidsLimit"
                                                    or k == "RestartPolicy"):
                    hc[k] = v
            if resources.get("Memory") and not resources.get("MemorySwap"):
                old_swap = c.host_config.get("MemorySwap") or 0
                if old_swap > 0 and resources["Memory"] > old_swap:
                    raise InvalidParameter(
                        "Memory limit should be smaller than already set memoryswap limit, "
                        "update the memoryswap at the same time")
            if c.host_config.get("AutoRemove") and "RestartPolicy" in resources:
                rp = resources["RestartPolicy"] or {}
                if rp.get("Name") not in (None, "", "no"):
                    raise InvalidParameter("Restart policy cannot be updated because AutoRemove "
                                           "is enabled for the container")
            warnings = specmod.validate_host_config(hc)
            if c.state.status in (RUNNING, PAUSED):
                from engine.drivers.exec.native import update_resources

                res = specmod.resources(hc, update=True)
                res.pop("devices", None)
                try:
                    update_resources(self.cgroups_path(c.id), res)
                except SkiffError:
                    raise
                except ValueError as e:
                    raise InvalidParameter(f"Cannot update container {c.id}: {e}") from e
                except Exception as e:  # noqa: BLE001
                    raise SystemError_(f"Cannot update container {c.id}: {e}") from e
            c.host_config = hc
            self._save(c)
        self.emit(c, "update")
        return warnings

    # ------------------------------------------------------------------ wait / remove
    def wait_prepare(self, ref: str, condition: str = "not-running"
                     ) -> Callable[[float | None], dict]:
        """Register a waiter now, block later: docker run flushes wait's 200 before start."""
        if condition in ("", None):
            condition = "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: \"{condition}\"")
        c = self.get(ref)
        with c.lock:
            gen = c.exit_gen

        def block(timeout: float | None = None) -> dict:
            deadline = None if timeout is None else time.monotonic() + timeout
            with c.lock:
                while True:
                    if condition == "removed":
                        done = c.removed
                    elif condition == "next-exit":
                        done = c.exit_gen != gen or c.removed
                    else:
                        done = (c.state.status not in (RUNNING, PAUSED, RESTARTING)
                                or c.removed)
                    if done:
                        err = c.state.error
                        return {"StatusCode": c.state.exit_code,
                                "Error": {"Message": err} if err else None}
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("wait timed out")
                    c.cond.wait(remaining)

        return block

    def wait(self, ref: str, condition: str = "not-running", timeout: float | None = None) -> dict:
        return self.wait_prepare(ref, condition)(timeout)

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        with c.lock:
            st = c.state.status
            if st == REMOVING:
                raise Conflict(f"removal of container {c.id} is already in progress")
            if st in (RUNNING, PAUSED, RESTARTING) and not force:
                what = "paused" if st == PAUSED else ("restarting" if st == RESTARTING
                                                      else "running")
                verb = "Unpause and then stop" if st == PAUSED else "Stop"
                raise Conflict(
                    f"You cannot remove a {what} container {c.id}. {verb} the container before "
                    "attempting removal or force remove"
                )
            if c.restart_timer is not None:
                c.restart_timer.cancel()
                c.restart_timer = None
            prev = st
            c.state.status = REMOVING
            c.state.manually_stopped = True
            self._save(c)
            gen = c.exit_gen
        if prev in (RUNNING, PAUSED):
            self._signal(c, _signal.SIGKILL)
            if prev == PAUSED:
                with contextlib.suppress(Exception):
                    self.driver.resume(c.id)
            if not self._wait_removing_exit(c, gen, 30):
                with c.lock:
                    c.state.status = prev
                    self._save(c)
                raise SystemError_(f"Could not kill running container {c.id}, cannot remove")
        t0 = time.monotonic()
        with c.lock:
            try:
                self._teardown(c)
                self.graph.remove_rw_layer(c.id)
            except Exception as e:
                c.state.status = DEAD
                c.state.error = str(e)
                self._save(c)
                raise SystemError_(f"unable to remove filesystem for {c.id}: {e}") from e
            self.driver.destroy(c.id)
            shutil.rmtree(self.cdir_of(c.id), ignore_errors=True)
            shutil.rmtree(self.xdir_of(c.id), ignore_errors=True)
            self.store.delete(c.id)
            c.removed = True
            with self._lock:
                self.containers.pop(c.id, None)
            for eid in list(c.execs):
                self.exec_records.pop(eid, None)
            c.cond.notify_all()
        log.debug("remove %s: %.1fms", c.short, 1000 * (time.monotonic() - t0))
        if volumes:
            for m in c.mounts:
                if m.type == "volume" and self.volumes.is_anonymous(m.name):
                    with contextlib.suppress(Exception):
                        self.volumes.remove(m.name, events=True)
        self.emit(c, "destroy")

    def rename(self, ref: str, new_name: str) -> None:
        """`docker rename` (names stay unique through the store's UNIQUE index)."""
        c = self.get(ref)
        if not new_name or not NAME_RE.match(new_name):
            raise InvalidParameter(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = "/" + new_name.lstrip("/")
        with c.lock, self._lock:  # lock order everywhere: container, then manager
            if name == c.name:
                raise Conflict("Renaming a container with the same name as its current name")
            other = self.store.id_by_name(name)
            if other is not None:
                raise Conflict(
                    f'Conflict. The container name "{name}" is already in use by container '
                    f'"{other}". You have to remove (or rename) that container to be able to '
                    "reuse that name.")
            old = c.name
            c.name = name
            try:
                self._save(c)
            except sqlite3.IntegrityError:
                c.name = old
                raise Conflict(f'Conflict. The container name "{name}" is already in use') from None
        self.emit(c, "rename", oldName=old)

    def _wait_removing_exit(self, c: Container, gen: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with c.lock:
            while c.exit_gen == gen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                c.cond.wait(remaining)
        return True

    # ------------------------------------------------------------------ inspect / list
    def inspect(self, ref: str, size: bool = False) -> dict:
        c = self.get(ref)
        with c.lock:
            cfg = json.loads(json.dumps(c.config))
            args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
            if c.host_config.get("Init"):
                pass
            cdir = self.cdir_of(c.id)
            ns = json.loads(json.dumps(c.network_settings or _empty_network_settings()))
            cfg_out = dict(cfg)
            cfg_out["Entrypoint"] = cfg.get("Entrypoint") or None
            cfg_out["Cmd"] = cfg.get("Cmd") or None
            for k, default in (("AttachStdin", False), ("AttachStdout", False),
                               ("AttachStderr", False), ("Tty", False), ("OpenStdin", False),
                               ("StdinOnce", False), ("Domainname", ""), ("User", ""),
                               ("WorkingDir", ""), ("OnBuild", None)):
                cfg_out.setdefault(k, default)
            d = {
                "Id": c.id,
                "Created": c.created,
                "Path": args[0] if args else "",
                "Args": args[1:],
                "State": c.state.to_docker(),
                "Image": c.image_id,
                "ResolvConfPath": str(cdir / "resolv.conf"),
                "HostnamePath": str(cdir / "hostname"),
                "HostsPath": str(cdir / "hosts"),
                "LogPath": str(self.log_path(c.id)),
                "Name": c.name,
                "RestartCount": c.state.restart_count,
                "Driver": c.driver,
                "Platform": "linux",
                "MountLabel": "",
                "ProcessLabel": "",
                "AppArmorProfile": "",
                "ExecIDs": sorted(c.execs) or None,
                "HostConfig": _docker_host_config(c.host_config),
                "GraphDriver": {"Name": c.driver, "Data": None},
                "Mounts": [m.to_docker() for m in c.mounts],
                "Config": cfg_out,
                "NetworkSettings": ns,
            }
            if c.health is not None and c.config.get("Healthcheck"):
                from .health import public

                d["State"]["Health"] = public(c.health)
        if size:
            from .changes import container_sizes

            d["SizeRw"], d["SizeRootFs"] = container_sizes(self, c)
        return d

    def list(self, all: bool = False, limit: int = -1, filters: dict | None = None,
             size: bool = False) -> list[dict]:
        flt = _normalize_filters(filters)
        with self._lock:
            cs = sorted(self.containers.values(), key=lambda c: c.created, reverse=True)
        if limit and limit > 0:
            all = True
        out = []
        for c in cs:
            with c.lock:
                st = c.state.status
                if not all and st not in (RUNNING, PAUSED, RESTARTING) and "status" not in flt:
                    continue
                if not self._match(c, flt):
                    continue
                out.append(self._summary(c, size))
            if limit and limit > 0 and len(out) >= limit:
                break
        return out

    def _match(self, c: Container, flt: dict[str, StrList]) -> bool:
        for key, values in flt.items():
            if key == "status":
                if c.state.status not in values:
                    return False
            elif key == "name":
                if not any(re.search(v, c.name.lstrip("/")) or re.search(v, c.name)
                           for v in values):
                    return False
            elif key == "id":
                if not any(c.id.startswith(v) for v in values):
                    return False
            elif key == "label":
                labels = c.config.get("Labels") or {}
                for v in values:
                    k, eq, val = v.partition("=")
                    if k not in labels or (eq and labels[k] != val):
                        return False
            elif key == "ancestor":
                ok = False
                for v in values:
                    if v in (c.config.get("Image"), c.image_id, c.image_id.split(":")[-1][:12]):
                        ok = True
                    else:
                        with contextlib.suppress(Exception):
                            ok = ok or self.graph.get(v).id == c.image_id
                if not ok:
                    return False
            elif key == "exited":
                if c.state.status != EXITED or str(c.state.exit_code) not in values:
                    return False
            elif key == "volume":
                if not any(m.name in values or m.destination in values for m in c.mounts):
                    return False
            elif key == "network":
                nets = (c.network_settings.get("Networks") or {}).keys()
                if not any(v in nets for v in values):
                    return False
            elif key in ("before", "since"):
                try:
                    other = self.get(values[0])
                except NotFound:
                    return False
                if key == "before" and not c.created < other.created:
                    return False
                if key == "since" and not c.created > other.created:
                    return False
            elif key == "isTask":
                if "true" in values:
                    return False
            elif key == "health":
                st = (c.health or {}).get("Status") if c.config.get("Healthcheck") else None
                if (st or "none") not in values:
                    return False
            elif key in ("publish", "expose", "is-task"):
                continue
            else:
                raise InvalidParameter(f"invalid filter '{key}'")
        return True

    def _summary(self, c: Container, size: bool) -> dict:
        cfg = c.config
        cmd = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        ports = []
        for cport, binds in ((c.network_settings or {}).get("Ports") or {}).items():
            num, _, proto = cport.partition("/")
            if not binds:
                ports.append({"PrivatePort": int(num), "Type": proto or "tcp"})
            for b in binds or []:
                p = {"PrivatePort": int(num), "Type": proto or "tcp"}
                if b.get("HostPort"):
                    p["PublicPort"] = int(b["HostPort"])
                    p["IP"] = b.get("HostIp") or "0.0.0.0"
                ports.append(p)
        nets = {}
        for n, ep in ((c.network_settings or {}).get("Networks") or {}).items():
            nets[n] = ep
        d = {
            "Id": c.id,
            "Names": [c.name],
            "Image": cfg.get("Image", ""),
            "ImageID": c.image_id,
            "Command": " ".join(cmd),
            "Created": int(parse_iso(c.created)),
            "Ports": ports,
            "Labels": cfg.get("Labels") or {},
            "State": c.state.status,
            "Status": c.state.human() + _health_suffix(c),
            "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": nets},
            "Mounts": [m.to_docker() for m in c.mounts],
        }
        if size:
            from .changes import container_sizes

            d["SizeRw"], d["SizeRootFs"] = container_sizes(self, c)
        return d

    # ------------------------------------------------------------------ attach / logs
    def attach(self, ref: str, sock: socket.socket, *, stdin: bool = False, stdout: bool = True,
               stderr: bool = True, stream: bool = True, logs: bool = False,
               detach_keys: str | None = None) -> None:
        self.attach_prepare(ref, stdin=stdin, stdout=stdout, stderr=stderr, stream=stream,
                            logs=logs, detach_keys=detach_keys)(sock)

    def attach_prepare(self, ref: str, *, stdin: bool = False, stdout: bool = True,
                       stderr: bool = True, stream: bool = True, logs: bool = False,
                       detach_keys: str | None = None) -> AttachFn:
        """Look the container up and register the attacher now, stream later.

        Why: the router answers 101 between the two. Looking up after the 101 made an unknown
        container a broken stream instead of a 404, and `docker run --rm` (attach, then start)
        could lose everything when the container ran and was auto-removed in that gap. The
        returned function streams to the upgraded socket; its .cancel() drops the
        registration when the upgrade never happened."""
        c = self.get(ref)
        if detach_keys:
            parse_detach_keys(detach_keys)  # 400 before anything happens
        keys = self._detach_keys(c.tty and stdin, detach_keys)
        want = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        conn: socket.socket | None = None
        pend: dict[str, Any] | None = None
        if stream:
            with c.lock:
                st = c.state.status
                if st in (CREATED, EXITED) or (st == RESTARTING and c.state.monitor_pid == 0):
                    # docker start -a / docker run attach before the start: wait for it
                    pend = {"want": want, "ready": threading.Event(), "conn": None}
                    c.pending_attach.append(pend)
                else:
                    with contextlib.suppress(Conflict):  # the monitor is already gone
                        conn = self._monitor_request(c.id, {"op": "attach", **want},
                                                     keep=True)[1]
            self.emit(c, "attach")

        def cancel() -> None:
            if pend is not None:
                with c.lock:
                    if pend in c.pending_attach:
                        c.pending_attach.remove(pend)
                if pend["conn"] is not None:
                    pend["conn"].close()
            if conn is not None:
                conn.close()

        def run(sock: socket.socket) -> None:
            nonlocal conn
            try:
                if logs:
                    for chunk in self.logs(c.id, stdout=stdout, stderr=stderr, follow=False):
                        _sendall(sock, chunk)
                if pend is not None:
                    while not pend["ready"].wait(0.5):
                        if c.removed:
                            return
                    conn = pend["conn"]
                if conn is None:
                    return
                _proxy(sock, conn, stdin, keys)
            finally:
                cancel()

        return AttachFn(run, cancel)

    @staticmethod
    def _detach_keys(active: bool, spec: str | None) -> bytes:
        return parse_detach_keys(spec) if active else b""

    def logs(self, ref: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             since: Any = 0, until: Any = 0, timestamps: bool = False, tail: Any = -1
             ) -> Iterator[bytes]:
        c = self.get(ref)
        driver = (c.host_config.get("LogConfig") or {}).get("Type") or "json-file"
        if driver == "none":
            raise InvalidParameter('configured logging driver does not support reading')
        if tail in (None, "", "all"):
            tail_n = -1
        else:
            try:
                tail_n = int(tail)
            except (TypeError, ValueError):
                raise InvalidParameter(f"invalid value for tail: {tail!r}") from None
        since_f = logmod.parse_time_arg(since)
        until_f = logmod.parse_time_arg(until)

        def running() -> bool:
            return not c.removed and c.state.status in (RUNNING, PAUSED, RESTARTING)

        return logmod.read_logs(self.log_path(c.id), stdout=stdout, stderr=stderr,
                                follow=follow, since=since_f, until=until_f,
                                timestamps=timestamps, tail=tail_n, tty=c.tty,
                                running=running)

    def resize(self, ref: str, h: int, w: int) -> None:
        c = self.get(ref)
        if c.state.status not in (RUNNING, PAUSED):
            raise Conflict(f"Container {c.id} is not running")
        if not c.tty:
            return
        reply, _ = self._monitor_request(c.id, {"op": "resize", "h": int(h), "w": int(w)})
        if "error" in reply:
            raise Conflict(reply["error"])
        self.emit(c, "resize", height=h, width=w)

    # ------------------------------------------------------------------ top / stats
    def top(self, ref: str, ps_args: str | None = None) -> dict:
        from engine.drivers.exec.native import cgroup_pids

        c = self.get(ref)
        if c.state.status not in (RUNNING, PAUSED):
            raise Conflict(f"Container {c.id} is not running")
        pids = set(cgroup_pids(self.cgroups_path(c.id)))
        args = (ps_args or "-ef").split()
        try:
            out = subprocess.run(["ps", *args], capture_output=True, text=True, timeout=10)
        except FileNotFoundError:
            return _top_from_proc(pids)
        if out.returncode != 0:
            raise InvalidParameter(f"ps: {out.stderr.strip()}")
        lines = out.stdout.splitlines()
        if not lines:
            return {"Titles": [], "Processes": []}
        titles = lines[0].split()
        try:
            pid_idx = titles.index("PID")
        except ValueError:
            raise InvalidParameter("Couldn't find PID field in ps output") from None
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_idx and fields[pid_idx].isdigit() and int(
                    fields[pid_idx]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

    def stats(self, ref: str) -> dict:
        from engine.drivers.exec.native import cgroup_stats

        c = self.get(ref)
        running = c.state.status in (RUNNING, PAUSED)
        raw = cgroup_stats(self.cgroups_path(c.id)) if running else {}
        mem = raw.get("memory") or {}
        cpu = raw.get("cpu") or {}
        pids = raw.get("pids") or {}
        try:
            with open("/proc/stat") as f:
                fields = f.readline().split()[1:]
            system = sum(int(x) for x in fields) * 10**9 // os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            system = 0
        limit = _memory_limit(mem.get("limit"))
        # docker omits "networks" for host, none and container: modes (no endpoint of its own)
        own_netns = self._network_kind(c.host_config.get("NetworkMode"))[0] == "bridge"
        nets = stats_io.network_stats(c.state.pid) if running and own_netns else {}
        return {
            "read": now_iso(), "preread": ZERO_TIME,
            "name": c.name, "id": c.id,
            "pids_stats": {"current": pids.get("current", 0)} if running else {},
            "blkio_stats": stats_io.blkio_stats(raw.get("io"), raw.get("version")),
            "num_procs": 0, "storage_stats": {},
            "cpu_stats": {
                "cpu_usage": {"total_usage": cpu.get("usage_ns", 0),
                              "percpu_usage": cpu.get("percpu_ns") or None,
                              "usage_in_kernelmode": cpu.get("system_ns", 0),
                              "usage_in_usermode": cpu.get("user_ns", 0)},
                "system_cpu_usage": system, "online_cpus": os.cpu_count() or 1,
                "throttling_data": {"periods": cpu.get("nr_periods", 0),
                                    "throttled_periods": cpu.get("nr_throttled", 0),
                                    "throttled_time": cpu.get("throttled_ns", 0)},
            } if running else {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "memory_stats": {"usage": mem.get("usage", 0), "max_usage": mem.get("max_usage", 0),
                             "limit": limit, "failcnt": mem.get("failcnt", 0),
                             "stats": mem.get("stat") or {}} if running else {},
            **({"networks": nets} if nets else {}),
        }

    # ------------------------------------------------------------------ exec
    def exec_create(self, ref: str, config: dict) -> str:
        c = self.get(ref)
        if c.state.status == PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state.status != RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        cmd = config.get("Cmd") or []
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidParameter("No exec command specified")
        user = config.get("User") or ""
        eid = secrets.token_hex(32)
        rec = {
            "ID": eid, "Running": False, "ExitCode": None, "Pid": 0,
            "ProcessConfig": {"tty": bool(config.get("Tty")), "entrypoint": cmd[0],
                              "arguments": cmd[1:], "privileged": bool(config.get("Privileged")),
                              "user": user},
            "OpenStdin": bool(config.get("AttachStdin")),
            "OpenStderr": bool(config.get("AttachStderr")),
            "OpenStdout": bool(config.get("AttachStdout")),
            "CanRemove": False, "ContainerID": c.id, "DetachKeys": config.get("DetachKeys", ""),
            "_config": config, "_started": False,
        }
        with self._lock:
            self.exec_records[eid] = rec
            c.execs.add(eid)
        self.emit(c, "exec_create: " + " ".join(cmd), execID=eid)
        return eid

    def _exec_rec(self, eid: str) -> dict:
        rec = self.exec_records.get(eid)
        if rec is None:
            raise NotFound(f"No such exec instance: {eid}")
        return rec

    def exec_start(self, exec_id: str, sock: socket.socket | None = None, detach: bool = False,
                   tty: bool | None = None, console_size: IntList | None = None) -> None:
        rec = self._exec_rec(exec_id)
        c = self.get(rec["ContainerID"])
        cfg = rec["_config"]
        with c.lock:
            if rec["_started"]:
                raise Conflict(f"Error: Exec command {exec_id} is already running")
            if c.state.status == PAUSED:
                raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
            if c.state.status != RUNNING:
                raise Conflict(f"Container {c.id} is not running")
            rec["_started"] = True
            if tty is not None:
                rec["ProcessConfig"]["tty"] = bool(tty)
            try:
                process = self._exec_process(c, cfg, rec["ProcessConfig"]["tty"])
            except SkiffError:  # e.g. an unknown user: docker's 126, "OCI runtime exec failed"
                rec["ExitCode"] = 126
                self.emit(c, "exec_die", execID=exec_id, exitCode=126)
                raise
        req: dict[str, Any] = {"op": "exec", "exec_id": exec_id, "process": process,
               "stdin": bool(cfg.get("AttachStdin")) and not detach and sock is not None,
               "stdout": bool(cfg.get("AttachStdout", True)),
               "stderr": bool(cfg.get("AttachStderr", True)),
               "detach": detach or sock is None,
               "console_size": console_size or cfg.get("ConsoleSize")}
        try:
            reply, conn = self._monitor_request(c.id, req, keep=not req["detach"])
        except Exception:
            rec["_started"] = False
            raise
        if "error" in reply:
            rec["ExitCode"] = _start_error_code(reply["error"])
            self.emit(c, "exec_die", execID=exec_id, exitCode=rec["ExitCode"])
            raise _runtime_error(reply["error"], "exec")
        rec["Pid"] = reply.get("pid", 0)
        rec["Running"] = True
        cmdline = " ".join([rec["ProcessConfig"]["entrypoint"],
                            *rec["ProcessConfig"]["arguments"]])
        self.emit(c, "exec_start: " + cmdline, execID=exec_id)
        if conn is None:
            threading.Thread(target=self._exec_watch_detached, args=(c, rec), daemon=True).start()
            return
        detached = False
        try:
            if sock is not None:
                keys = self._detach_keys(bool(rec["ProcessConfig"]["tty"]) and req["stdin"],
                                         cfg.get("DetachKeys"))
                detached = _proxy(sock, conn, req["stdin"], keys)
            else:
                while conn.recv(65536):
                    pass
        finally:
            conn.close()
        if detached:
            threading.Thread(target=self._exec_watch_detached, args=(c, rec), daemon=True).start()
            return
        self._exec_finished(c, rec, wait=5.0)

    def _exec_watch_detached(self, c: Container, rec: dict) -> None:
        while not c.removed and c.state.status in (RUNNING, PAUSED):
            if self._exec_finished(c, rec, wait=0):
                return
            time.sleep(0.1)
        rec["Running"] = False

    def _exec_finished(self, c: Container, rec: dict, wait: float) -> bool:
        f = self.xdir_of(c.id) / "execs" / f"{rec['ID']}.json"
        deadline = time.monotonic() + wait
        while True:
            try:
                data = json.loads(f.read_text())
                break
            except (OSError, ValueError):
                if time.monotonic() >= deadline:
                    if c.state.status not in (RUNNING, PAUSED) and rec["Running"]:
                        rec["Running"] = False
                        rec["ExitCode"] = rec["ExitCode"] if rec["ExitCode"] is not None else 137
                        return True
                    return False
                time.sleep(0.01)
        if rec["Running"]:
            rec["Running"] = False
            rec["ExitCode"] = int(data.get("ExitCode", 255))
            self.emit(c, "exec_die", execID=rec["ID"], exitCode=rec["ExitCode"])
        return True

    def _user_dbs(self, c: Container, rootfs: Path) -> tuple[str, str]:
        from .archive import container_mounts, user_dbs

        return user_dbs(str(rootfs), container_mounts(self, c))

    def _exec_process(self, c: Container, cfg: dict, tty: bool) -> dict:
        try:
            with open(self.cdir_of(c.id) / "config.json") as f:
                spec = json.load(f)
        except OSError as e:
            raise Conflict(f"Container {c.id} is not running") from e
        proc = spec["process"]
        rootfs = Path(c.rootfs or spec["root"]["path"])
        user = cfg.get("User") or ""
        if user:
            uid, gid, extra = specmod.resolve_user(user, *self._user_dbs(c, rootfs))
            u: dict = {"uid": uid, "gid": gid}
            if extra:
                u["additionalGids"] = extra
        else:
            u = proc["user"]
        env = specmod.merge_env(proc.get("env"), cfg.get("Env"))
        if tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        caps = proc.get("capabilities") or {}
        if cfg.get("Privileged"):
            caps = {k: list(specmod.ALL_CAPS) for k in ("bounding", "effective", "permitted")}
        cmd = cfg.get("Cmd") or []
        if isinstance(cmd, str):
            cmd = [cmd]
        out = {
            "terminal": bool(tty), "user": u, "args": list(cmd), "env": env,
            "cwd": cfg.get("WorkingDir") or proc.get("cwd") or "/",
            "capabilities": caps, "noNewPrivileges": proc.get("noNewPrivileges", False),
        }
        if proc.get("rlimits"):
            out["rlimits"] = proc["rlimits"]
        return out

    def exec_resize(self, exec_id: str, h: int, w: int) -> None:
        rec = self._exec_rec(exec_id)
        if not rec["Running"]:
            raise Conflict(f"Exec {exec_id} is not running")
        reply, _ = self._monitor_request(rec["ContainerID"],
                                         {"op": "resize", "exec": exec_id, "h": int(h),
                                          "w": int(w)})
        if "error" in reply:
            raise Conflict(reply["error"])

    def exec_inspect(self, exec_id: str) -> dict:
        rec = self._exec_rec(exec_id)
        try:
            c = self.get(rec["ContainerID"])
            if rec["Running"]:
                self._exec_finished(c, rec, wait=0)
        except NotFound:
            pass
        return {k: v for k, v in rec.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ --init
    def init_binary(self) -> str | None:
        """The static init bind-mounted as /sbin/docker-init: skiffd --init-path, else the first
        of INIT_CANDIDATES on PATH (None: there is none)."""
        if self.init_path:
            return self.init_path if os.access(self.init_path, os.X_OK) else None
        return next((p for p in map(shutil.which, INIT_CANDIDATES) if p), None)


# ---------------------------------------------------------------------- module helpers


class _Background:
    """A function run on its own thread; result() re-raises what it raised."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            self.error = e

    def join(self) -> None:
        self.thread.join()

    def result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _health_suffix(c: Container) -> str:
    """ "(healthy)" etc. after "Up 5 seconds" in `docker ps` (running containers only)."""
    if c.state.status != RUNNING or not c.config.get("Healthcheck"):
        return ""
    from .health import ps_suffix

    return ps_suffix(c.health)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = pkg_root + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _recv_line(s: socket.socket, limit: int = 1 << 20) -> bytes:
    """One line, read byte by byte so that nothing of the stream after it is consumed."""
    buf = bytearray()
    while len(buf) < limit:
        b = s.recv(1)
        if not b:
            break
        if b == b"\n":
            return bytes(buf)
        buf += b
    return bytes(buf)


def _read_line_timeout(f: Any, timeout: float) -> bytes:
    sel = selectors.DefaultSelector()
    sel.register(f, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                break
            chunk = os.read(f.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0]


def _sendall(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)


DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's --detach-keys ("ctrl-p,ctrl-q", "a,ctrl-@") -> the byte sequence."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for part in spec.split(","):
        part = part.strip()
        if len(part) == 1:
            out.append(ord(part))
        elif part.startswith("ctrl-") and len(part) == 6:
            ch = part[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append(ord(ch) - ord("@"))
            else:
                raise InvalidParameter(f"Unknown character: '{part}'")
        else:
            raise InvalidParameter(f"Unknown character: '{part}'")
    return bytes(out)


def _scan_detach(data: bytes, keys: bytes) -> tuple[bytes, bytes, bool]:
    """(bytes to forward, bytes held back as a possible prefix of keys, detach?)."""
    i = data.find(keys)
    if i >= 0:
        return data[:i], b"", True
    for n in range(min(len(keys) - 1, len(data)), 0, -1):
        if data.endswith(keys[:n]):
            return data[:-n], data[-n:], False
    return data, b"", False


def _proxy(client: socket.socket, conn: socket.socket, stdin: bool,
           detach_keys: bytes = b"") -> bool:
    """Copy the monitor's stream to the client (and the client's stdin to the monitor) until
    the monitor closes its side. A client that half-closes only ends stdin; the detach keys
    in stdin (tty only) end the attachment and leave the container running."""
    held = b""
    client_timeout = client.gettimeout()
    client.settimeout(None)
    conn.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(conn, selectors.EVENT_READ, "conn")
    if stdin:
        sel.register(client, selectors.EVENT_READ, "client")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "conn":
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return False
                    try:
                        client.sendall(data)
                    except OSError:
                        return False
                else:
                    try:
                        data = client.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(client)
                        with contextlib.suppress(OSError):
                            if held:
                                conn.sendall(held)
                            conn.shutdown(socket.SHUT_WR)
                        continue
                    detached = False
                    if detach_keys:
                        data, held, detached = _scan_detach(held + data, detach_keys)
                    try:
                        if data:
                            conn.sendall(data)
                    except OSError:
                        return False
                    if detached:
                        return True
    finally:
        sel.close()
        conn.close()
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)  # the stream is over: the client sees EOF
        with contextlib.suppress(OSError):
            client.settimeout(client_timeout)


def _resolv_conf(hc: dict, host: bool) -> str:
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        text = ""
    ns = [line.split()[1] for line in text.splitlines()
          if line.startswith("nameserver") and len(line.split()) > 1]
    search = [w for line in text.splitlines() if line.startswith("search") for w in line.split()[1:]]
    opts = [w for line in text.splitlines() if line.startswith("options")
            for w in line.split()[1:]]
    if not host:
        ns = [n for n in ns if not n.startswith("127.") and n != "::1"]
        if not ns:
            ns = ["8.8.8.8", "8.8.4.4"]
    if hc.get("Dns"):
        ns = list(hc["Dns"])
    if hc.get("DnsSearch"):
        search = list(hc["DnsSearch"])
    if hc.get("DnsOptions"):
        opts = list(hc["DnsOptions"])
    out = "".join(f"nameserver {n}\n" for n in ns)
    if search:
        out += "search " + " ".join(search) + "\n"
    if opts:
        out += "options " + " ".join(opts) + "\n"
    return out


def _empty_network_settings() -> dict:
    return {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {}}


def _endpoint_settings() -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": "", "DriverOpts": None}


_HC_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                                                                     "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None,
    "CapDrop": None, "CgroupnsMode": "private", "Dns": [], "DnsOptions": [], "DnsSearch": [],
    "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None,
    "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
    "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 67108864, "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0,
    "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "CpuPeriod": 0, "CpuQuota": 0,
    "CpusetCpus": "", "CpusetMems": "", "Devices": [], "MemoryReservation": 0,
    "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
    "Ulimits": None, "Init": None, "MaskedPaths": None, "ReadonlyPaths": None,
}


def _docker_host_config(hc: dict) -> dict:
    out = json.loads(json.dumps(_HC_DEFAULTS))
    out.update({k: v for k, v in hc.items() if v is not None or k not in out})
    if not out.get("ShmSize"):
        out["ShmSize"] = 67108864
    return out


def _normalize_filters(filters: dict | str | None) -> dict[str, list[str]]:
    """docker sends {"status": {"running": true}} or {"status": ["running"]} (JSON string)."""
    if not filters:
        return {}
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except ValueError:
            raise InvalidParameter(f"invalid filters: {filters!r}") from None
    out: dict[str, list[str]] = {}
    for k, v in (filters or {}).items():  # type: ignore[union-attr]
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, str):
            out[k] = [v]
        else:
            out[k] = [str(x) for x in v]
    for s in out.get("status", []):
        if s not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
            raise InvalidParameter(f"Invalid filter 'status={s}'")
    return out


def _start_error_code(msg: str) -> int:
    """docker's exit codes for a process that could not be started."""
    m = msg.lower()
    if "executable file not found" in m or "no such file or directory" in m or \
            "not found" in m:
        return 127
    if "permission denied" in m:
        return 126
    return 128


def _memory_limit(limit: object) -> int:
    """stats' memory_stats.limit: the cgroup's limit, or the host's RAM when there is none
    (v2 "max" reads as -1, v1 as ~2**63). Never negative: the docker CLI decodes it into a
    uint64 and fails the whole frame (it printed "EOF") on -1."""
    if not isinstance(limit, int) or limit <= 0 or limit > 1 << 62:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return limit


def _runtime_error(msg: str, typ: str = "") -> SkiffError:
    if typ == "exec":  # after the stream was hijacked: the text the docker CLI prints
        return InvalidParameter(f"OCI runtime exec failed: exec failed: {msg}: unknown")
    if typ in ("ConfigError",) or "invalid" in msg.lower() and typ != "SystemError_":
        return InvalidParameter(f"failed to create task for container: {msg}")
    code = _start_error_code(msg)
    if code in (126, 127):
        return InvalidParameter(
            f"failed to create task for container: OCI runtime create failed: {msg}: unknown")
    return SystemError_(f"failed to create task for container: {msg}")


def _wrap_start_error(e: BaseException) -> SkiffError:
    if isinstance(e, SkiffError):
        return e
    if isinstance(e, ValueError):
        return InvalidParameter(str(e))
    return SystemError_(f"failed to start container: {e}")


def _top_from_proc(pids: set[int]) -> dict:
    procs = []
    for pid in sorted(pids):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            st = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uid = next((line.split()[1] for line in st.splitlines() if line.startswith("Uid:")), "0")
        ppid = next((line.split()[1] for line in st.splitlines() if line.startswith("PPid:")),
                    "0")
        procs.append([uid, str(pid), ppid, cmd])
    return {"Titles": ["UID", "PID", "PPID", "CMD"], "Processes": procs}
