"""System area: _ping, version, info, events, and the Skiff extension /jobs."""

from __future__ import annotations

import os
import platform
import threading
import time
from typing import Any

from engine import __version__
from engine.daemon.errors import InvalidParameter
from engine.daemon.router import Backends, filters, host_info, json_line
from engine.daemon.server import API_VERSION, MIN_API_VERSION, Request, Response, Stream


def _ts(v: str | None, what: str) -> float | None:
    """docker's since/until: unix seconds (with fractions) or RFC 3339."""
    if v is None or v == "":
        return None
    try:
        return float(v)
    except ValueError:
        pass
    try:
        from datetime import datetime

        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidParameter(f"invalid {what} timestamp: {v!r}") from None


def routes(b: Backends) -> list:
    started = time.time()

    def ping(req: Request) -> Response:
        return Response(200, b"OK", "text/plain; charset=utf-8",
                        [("Cache-Control", "no-cache, no-store, must-revalidate"),
                         ("Pragma", "no-cache")])

    def version(req: Request) -> Response:
        h = host_info()
        return Response.json({
            "Platform": {"Name": "Skiff Engine"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                "Arch": h["arch"], "KernelVersion": h["kernel"], "GitCommit": "skiff",
                "GoVersion": "python" + platform.python_version(), "Experimental": "false",
                "BuildTime": ""}}],
            "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "skiff", "GoVersion": "python" + platform.python_version(),
            "Os": "linux", "Arch": h["arch"], "KernelVersion": h["kernel"], "BuildTime": "",
        })

    def info(req: Request) -> Response:
        return Response.json(system_info(b, started))

    def events(req: Request) -> Stream:
        since = _ts(req.arg("since"), "since")
        until = _ts(req.arg("until"), "until")
        flt = filters(req.json_arg("filters"))
        if since is not None and until is not None and until < since:
            raise InvalidParameter("until must be after since")

        def gen():
            # idle ticks (None) let the server notice a reader that went away
            for ev in b.engine.events(since, until, flt, poll=1.0,
                                      stop=req.peer_closed, idle=True):
                yield None if ev is None else json_line(ev)

        return Stream(gen())

    def jobs(req: Request) -> Response:
        return Response.json([j.to_dict() for j in b.engine.jobs(all=req.bool("all"))])

    def df(req: Request) -> Response:
        imgs = [i.to_docker() for i in b.images.list()] if b.images is not None else []
        cts = b.containers.list(all=True, size=True) if b.containers is not None else []
        vols = []
        if b.containers is not None and getattr(b.containers, "volumes", None) is not None:
            vols = [dict(v, UsageData={"Size": -1, "RefCount": -1})
                    for v in b.containers.volumes.list()]
        return Response.json({"LayersSize": sum(i.get("Size", 0) for i in imgs),
                              "Images": imgs, "Containers": cts, "Volumes": vols,
                              "BuildCache": []})

    return [
        ("GET", "/system/df", df),
        ("GET", "/_ping", ping),
        ("HEAD", "/_ping", ping),
        ("GET", "/version", version),
        ("GET", "/info", info),
        ("GET", "/events", events),
        ("GET", "/jobs", jobs),
    ]


def system_info(b: Backends, started: float) -> dict[str, Any]:
    h = host_info()
    cfg = b.config
    counts = {"running": 0, "paused": 0, "stopped": 0}
    n = 0
    if b.containers is not None:
        try:
            for c in b.containers.list(all=True):
                n += 1
                st = c.get("State", "")
                counts["running" if st == "running" else "paused" if st == "paused"
                       else "stopped"] += 1
        except Exception:  # noqa: BLE001 - info must answer even when a backend is ill
            pass
    nimages = 0
    if b.images is not None:
        try:
            nimages = len(b.images.list())
        except Exception:  # noqa: BLE001
            pass
    net: dict[str, Any] = {}
    if b.networks is not None:
        try:
            net = dict(b.networks.info())
        except Exception:  # noqa: BLE001
            pass
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    cgv = cfg.get("cgroup_version", "1")
    osname = "linux"
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "ID": cfg.get("id", "skiff"),
        "Containers": n,
        "ContainersRunning": counts["running"],
        "ContainersPaused": counts["paused"],
        "ContainersStopped": counts["stopped"],
        "Images": nimages,
        "Driver": cfg.get("storage_driver") or "overlay",
        "DriverStatus": [],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"],
                    "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "OomKillDisable": cgv == "1",
        "IPv4Forwarding": bool(net.get("ip_forward", True)),
        "BridgeNfIptables": bool(net.get("br_netfilter", False)),
        "BridgeNfIp6tables": False,
        "Debug": cfg.get("log_level") == "debug",
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": threading.active_count(),
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgv,
        "NEventsListener": 0,
        "KernelVersion": h["kernel"],
        "OperatingSystem": osname,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                           "Mirrors": []},
        "NCPU": os.cpu_count() or 1,
        "MemTotal": mem,
        "DockerRootDir": cfg.get("root", "/var/lib/skiff"),
        "Name": h["hostname"],
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"native": {"path": "skiff-runc"}},
        "DefaultRuntime": "native",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
        "Skiff": {"Bridge": net.get("bridge", cfg.get("bridge")),
                  "Subnet": net.get("subnet", cfg.get("bridge_subnet")),
                  "ExecRoot": cfg.get("exec_root"), "Uptime": round(time.time() - started, 1)},
    }
