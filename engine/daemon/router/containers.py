"""Containers area: create, list, inspect, lifecycle, wait, attach, logs, resize, top, stats,
update, rm. The backend is engine.containers.ContainerManager (CONTRACTS.md)."""

from __future__ import annotations

import json
import os
import re
import signal as _signal
import threading
import time
from typing import Any

from engine.daemon.errors import Conflict, InvalidParameter
from engine.daemon.router import Backends, filters, str_list, terminal_size, ticking, want
from engine.daemon.server import Hijack, Request, Response, Stream

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")
RAW = "application/vnd.docker.raw-stream"
STATS_INTERVAL = 1.0  # docker's stats collector period
# --no-stream's second sample comes this much after the first: half of docker's period, as the
# docker CLI gives up on a first frame after 2 s (a slow machine, e.g. a VM under TCG, needed
# the room); the CPU % is still over a real interval
NO_STREAM_INTERVAL = 0.5
STAT_HEADER = "X-Docker-Container-Path-Stat"
MUX = "application/vnd.docker.multiplexed-stream"


def parse_signal(v: str | None) -> str | None:
    """'9', 'KILL', 'SIGKILL' -> 'SIGKILL'; anything else is a 400."""
    if v is None or v == "":
        return None
    s = v.strip().upper()
    if s.isdigit():
        try:
            return _signal.Signals(int(s)).name
        except ValueError:
            raise InvalidParameter(f"Invalid signal: {v}") from None
    if not s.startswith("SIG"):
        s = "SIG" + s
    if s.startswith("SIGRTMIN") or s.startswith("SIGRTMAX") or s in _signal.Signals.__members__:
        return s
    raise InvalidParameter(f"Invalid signal: {v}")


def validate_create(body: Any) -> tuple[dict, dict, dict]:
    """Split and type-check docker's create body -> (config, host_config, networking_config)."""
    if not isinstance(body, dict):
        raise InvalidParameter("container config must be a JSON object")
    cfg = dict(body)
    hc = cfg.pop("HostConfig", None)
    nc = cfg.pop("NetworkingConfig", None)
    hc = {} if hc is None else hc
    nc = {} if nc is None else nc
    if not isinstance(hc, dict):
        raise InvalidParameter("HostConfig must be a JSON object")
    if not isinstance(nc, dict):
        raise InvalidParameter("NetworkingConfig must be a JSON object")
    image = want(cfg, "Image", str, "", default="")
    if not image.strip():
        raise InvalidParameter("no image specified: Config.Image is required")
    for k in ("Cmd", "Entrypoint"):
        if k in cfg and cfg[k] is not None:
            cfg[k] = str_list(cfg[k], k)
    for k in ("Env", "Shell"):
        str_list(cfg.get(k), k)
    for k in ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr",
              "NetworkDisabled"):
        want(cfg, k, bool, "")
    for k in ("Hostname", "Domainname", "User", "WorkingDir", "StopSignal"):
        want(cfg, k, str, "")
    for k in ("Labels", "ExposedPorts", "Volumes"):
        want(cfg, k, dict, "")
    if cfg.get("StopSignal"):
        parse_signal(cfg["StopSignal"])
    wd = cfg.get("WorkingDir")
    if wd and not wd.startswith("/"):
        raise InvalidParameter(f"the working directory '{wd}' is invalid, it needs to be an "
                               "absolute path")
    for k, v in (cfg.get("Labels") or {}).items():
        if not isinstance(v, str):
            raise InvalidParameter(f"label {k!r}: value must be a string")
    for port in (cfg.get("ExposedPorts") or {}):
        _check_port(port)
    # HostConfig
    ints = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod",
            "CpuQuota", "PidsLimit", "ShmSize", "BlkioWeight", "OomScoreAdj")
    for k in ints:
        want(hc, k, int, "HostConfig.")
    for k in ("AutoRemove", "Privileged", "ReadonlyRootfs", "PublishAllPorts", "Init"):
        want(hc, k, bool, "HostConfig.")
    for k in ("Binds", "CapAdd", "CapDrop", "SecurityOpt", "Dns", "DnsSearch", "DnsOptions",
              "ExtraHosts", "VolumesFrom", "Links", "GroupAdd"):
        str_list(hc.get(k), f"HostConfig.{k}")
    for k in ("NetworkMode", "CpusetCpus", "CpusetMems", "IpcMode", "PidMode", "UTSMode",
              "CgroupParent"):
        want(hc, k, str, "HostConfig.")
    mem = hc.get("Memory") or 0
    if mem < 0:
        raise InvalidParameter(f"invalid memory limit {mem}: must be positive")
    if 0 < mem < 6 * 1024 * 1024:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = hc.get("MemorySwap") or 0
    if swap > 0 and mem and swap < mem:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, "
                               "see usage")
    if swap > 0 and not mem:
        raise InvalidParameter("You should always set the Memory limit when using Memoryswap "
                               "limit, see usage")
    ncpu = os.cpu_count() or 1
    if (hc.get("NanoCpus") or 0) < 0 or (hc.get("NanoCpus") or 0) > ncpu * 10**9:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                               f"{ncpu} CPUs available")
    for k in ("ShmSize", "CpuPeriod", "CpuQuota", "BlkioWeight"):
        if (hc.get(k) or 0) < 0 and not (k == "CpuQuota" and hc.get(k) == -1):
            raise InvalidParameter(f"invalid HostConfig.{k} {hc[k]}: must not be negative")
    if hc.get("OomScoreAdj") is not None and not -1000 <= hc["OomScoreAdj"] <= 1000:
        raise InvalidParameter(f"Invalid value {hc['OomScoreAdj']}, range for oom score adj "
                               "is [-1000, 1000]")
    if (hc.get("CpuShares") or 0) < 0:
        raise InvalidParameter(f"invalid CPU shares {hc['CpuShares']}: must be positive")
    if hc.get("NanoCpus") and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be "
                               "set")
    rp = want(hc, "RestartPolicy", dict, "HostConfig.") or {}
    pname = want(rp, "Name", str, "HostConfig.RestartPolicy.", default="")
    if pname not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy '{pname}'")
    retries = want(rp, "MaximumRetryCount", int, "HostConfig.RestartPolicy.", default=0)
    if retries < 0:
        raise InvalidParameter("maximum retry count cannot be negative")
    if retries and pname != "on-failure":
        raise InvalidParameter(f"maximum retry count cannot be used with restart policy "
                               f"'{pname}'")
    if hc.get("AutoRemove") and pname not in ("", "no"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    pb = want(hc, "PortBindings", dict, "HostConfig.") or {}
    for port, binds in pb.items():
        _check_port(port)
        if binds is not None and not isinstance(binds, list):
            raise InvalidParameter(f"invalid port bindings for {port}: {binds!r}")
        for bnd in binds or []:
            if not isinstance(bnd, dict):
                raise InvalidParameter(f"invalid port binding for {port}: {bnd!r}")
            hp = bnd.get("HostPort") or ""
            if hp:
                lo, _, hi = str(hp).partition("-")
                for p in (lo, hi or lo):
                    if not p.isdigit() or not 0 <= int(p) <= 65535:
                        raise InvalidParameter(f"invalid host port {hp!r} for {port}")
    want(nc, "EndpointsConfig", dict, "NetworkingConfig.")
    from engine.containers.health import validate as validate_health

    validate_health(cfg.get("Healthcheck"), "Config.Healthcheck")
    return cfg, hc, nc


def _check_port(port: Any) -> None:
    if not isinstance(port, str):
        raise InvalidParameter(f"invalid port {port!r}")
    num, _, proto = port.partition("/")
    lo, _, hi = num.partition("-")
    if proto and proto not in ("tcp", "udp", "sctp"):
        raise InvalidParameter(f"invalid proto: {proto}")
    for p in (lo, hi or lo):
        if not p.isdigit() or not 1 <= int(p) <= 65535:
            raise InvalidParameter(f"invalid containerPort: {num}")


def stat_header(info: dict) -> str:
    """The X-Docker-Container-Path-Stat value: base64 of the path-stat JSON."""
    import base64

    return base64.b64encode(json.dumps(info).encode()).decode()


def _tty(cm: Any, name: str) -> tuple[str, bool]:
    """-> (full id, Config.Tty); raises NotFound before any stream is opened."""
    info = cm.inspect(name)
    return info.get("Id", name), bool((info.get("Config") or {}).get("Tty"))


def routes(b: Backends) -> list:
    eng = b.engine

    def cm() -> Any:
        return b.need("containers")

    def create(req: Request) -> Response:
        name = req.arg("name") or None
        if name is not None and not NAME_RE.match(name):
            raise InvalidParameter(f"Invalid container name ({name}), only "
                                   "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        cfg, hc, nc = validate_create(req.json())
        if name:
            name = name.lstrip("/")
        cid, warnings = eng.run("container.create", cm().create, name, cfg, hc, nc,
                                _job_args={"name": name, "image": cfg.get("Image")})
        return Response.json({"Id": cid, "Warnings": list(warnings or [])}, 201)

    def list_(req: Request) -> Response:
        limit = req.int("limit", -1)
        if req.arg("last") and limit == -1:  # old clients
            limit = req.int("last", -1)
        out = cm().list(all=req.bool("all"), limit=limit if limit is not None else -1,
                        filters=filters(req.json_arg("filters")), size=req.bool("size"))
        return Response.json(out)

    def inspect(req: Request, name: str) -> Response:
        if req.bool("size"):  # SizeRw/SizeRootFs (the fakes' inspect takes no size)
            return Response.json(cm().inspect(name, size=True))
        return Response.json(cm().inspect(name))

    def start(req: Request, name: str) -> Response:
        if req.arg("checkpoint"):
            raise InvalidParameter("checkpoints are not supported")
        eng.run("container.start", cm().start, name)
        return Response(204)

    def stop(req: Request, name: str) -> Response:
        t = req.int("t")
        if t is None and req.arg("timeout"):
            t = req.int("timeout")
        sig = parse_signal(req.arg("signal"))
        eng.run("container.stop", cm().stop, name, timeout=t, signal=sig)
        return Response(204)

    def kill(req: Request, name: str) -> Response:
        sig = parse_signal(req.arg("signal")) or "SIGKILL"
        eng.run("container.kill", cm().kill, name, signal=sig)
        return Response(204)

    def restart(req: Request, name: str) -> Response:
        t = req.int("t")
        eng.run("container.restart", cm().restart, name, timeout=t)
        return Response(204)

    def pause(req: Request, name: str) -> Response:
        eng.run("container.pause", cm().pause, name)
        return Response(204)

    def unpause(req: Request, name: str) -> Response:
        eng.run("container.unpause", cm().unpause, name)
        return Response(204)

    def wait(req: Request, name: str) -> Stream:
        cond = req.arg("condition") or "not-running"
        if cond not in WAIT_CONDITIONS:
            raise InvalidParameter(f"invalid condition: {cond!r} (one of "
                                   f"{', '.join(WAIT_CONDITIONS)})")
        m = cm()
        cid = getattr(m.get(name), "id", name)  # 404 before the 200 goes out
        result: dict[str, Any] = {}
        done = threading.Event()
        # a backend may offer two-phase waiting (register now, block later) so the waiter
        # provably exists before the client sends start
        prepare = getattr(m, "wait_prepare", None)
        gone = threading.Event()  # the client hung up: stop waiting (docker cancels too)

        if prepare:
            block_once = prepare(cid, cond)

            def block() -> Any:
                while True:
                    try:
                        return block_once(1.0)
                    except TimeoutError:
                        if gone.is_set():
                            raise ConnectionResetError("the client went away") from None
        else:
            def block() -> Any:
                return m.wait(cid, condition=cond)

        def worker() -> None:
            try:
                result["v"] = eng.run("container.wait", block, _job_args={"id": cid,
                                                                          "condition": cond})
            except Exception as e:  # noqa: BLE001 - reported in the body
                result["e"] = e
            finally:
                done.set()

        threading.Thread(target=worker, daemon=True).start()

        def gen():
            try:
                while not done.wait(1.0):
                    yield None
            finally:
                gone.set()  # also on close(): the server closes us when the peer left
            if "e" in result:
                yield json.dumps({"Error": {"Message": str(result["e"])},
                                  "StatusCode": -1}).encode() + b"\n"
                return
            v = dict(result.get("v") or {})
            err = v.get("Error")
            if isinstance(err, str):
                err = {"Message": err} if err else None
            yield json.dumps({"Error": err, "StatusCode": int(v.get("StatusCode", 0))}
                             ).encode() + b"\n"

        return Stream(gen())

    def attach(req: Request, name: str) -> Hijack:
        m = cm()
        cid, tty = _tty(m, name)
        if req.bool("logs") is False and not req.bool("stream"):
            pass  # docker allows this: nothing to stream, the connection just ends
        kw = dict(stdin=req.bool("stdin"), stdout=req.bool("stdout"),
                  stderr=req.bool("stderr"), stream=req.bool("stream"), logs=req.bool("logs"),
                  detach_keys=req.arg("detachKeys") or None)

        # look up and register before the 101: an unknown container is a 404, and a container
        # that runs and is auto-removed before the stream starts still delivers its output
        stream = m.attach_prepare(cid, **kw)

        def run(sock) -> None:
            eng.run("container.attach", stream, sock, _job_args={"id": cid, **kw})

        return Hijack(run, multiplexed=not tty, cancel=getattr(stream, "cancel", None))

    def logs(req: Request, name: str) -> Stream:
        stdout, stderr = req.bool("stdout"), req.bool("stderr")
        if not (stdout or stderr):
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        tail = req.arg("tail", "all") or "all"
        if tail != "all":
            try:
                tail_n: int | str = int(tail)
            except ValueError:
                tail_n = "all"  # docker treats garbage as all
        else:
            tail_n = "all"
        from engine.daemon.router.system import _ts

        since, until = _ts(req.arg("since"), "since"), _ts(req.arg("until"), "until")
        m = cm()
        cid, tty = _tty(m, name)
        it = m.logs(cid, stdout=stdout, stderr=stderr, follow=req.bool("follow"),
                    since=since or 0, until=until or 0, timestamps=req.bool("timestamps"),
                    tail=tail_n)
        ctype = RAW if tty or not req.version_at_least("1.42") else MUX
        return Stream(ticking(it) if req.bool("follow") else it, content_type=ctype)

    def resize(req: Request, name: str) -> Response:
        h, w = terminal_size(req)
        cm().resize(name, h, w)
        return Response(200)

    def remove(req: Request, name: str) -> Response:
        if req.bool("link"):
            raise InvalidParameter("legacy links are not supported")
        eng.run("container.remove", cm().remove, name, force=req.bool("force"),
                volumes=req.bool("v"))
        return Response(204)

    def top(req: Request, name: str) -> Response:
        return Response.json(cm().top(name, req.arg("ps_args") or "-ef"))

    def stats(req: Request, name: str) -> Response | Stream:
        m = cm()
        stream = req.bool("stream", True)
        if not stream:
            first = m.stats(name)
            if req.bool("one-shot") or not (first.get("cpu_stats") or {}).get(
                    "system_cpu_usage"):
                return Response.json(first)
            # docker's --no-stream: a second sample a collector interval later, so that
            # precpu_stats make a CPU % (the CLI divides the two deltas)
            time.sleep(NO_STREAM_INTERVAL)
            s = dict(m.stats(name))
            s["precpu_stats"], s["preread"] = first.get("cpu_stats", {}), first.get("read")
            return Response.json(s)
        m.get(name)

        def gen():
            prev: dict | None = None
            while True:
                s = dict(m.stats(name))
                if prev is not None:
                    s["precpu_stats"] = prev.get("cpu_stats", {})
                    s["preread"] = prev.get("read")
                prev = s
                yield json.dumps(s).encode() + b"\n"
                for _ in range(10):
                    time.sleep(0.1)
                    yield None

        return Stream(gen())

    def update(req: Request, name: str) -> Response:
        body = req.json({})
        if not isinstance(body, dict):
            raise InvalidParameter("update body must be a JSON object")
        for k in ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "PidsLimit", "CpuQuota",
                  "CpuPeriod", "MemoryReservation"):
            want(body, k, int, "")
        for k in ("CpusetCpus", "CpusetMems"):
            want(body, k, str, "")
        if "RestartPolicy" in body:
            rp = want(body, "RestartPolicy", dict, "") or {}
            if rp.get("Name", "") not in RESTART_POLICIES:
                raise InvalidParameter(f"invalid restart policy '{rp.get('Name')}'")
        warnings = eng.run("container.update", cm().update, name, body)
        return Response.json({"Warnings": list(warnings or []) if isinstance(warnings, list)
                              else []})

    def rename(req: Request, name: str) -> Response:
        new = req.arg("name") or ""
        if not NAME_RE.match(new):
            raise InvalidParameter(f"Invalid container name ({new}), only "
                                   "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        fn = getattr(cm(), "rename", None)
        if fn is None:
            raise Conflict("rename is not supported by this daemon")
        eng.run("container.rename", fn, name, new.lstrip("/"))
        return Response(204)

    def prune(req: Request) -> Response:
        m = cm()
        deleted = []
        for ct in m.list(all=True, filters=filters(req.json_arg("filters"))):
            if ct.get("State") in ("exited", "created", "dead"):
                try:
                    eng.run("container.remove", m.remove, ct["Id"])
                    deleted.append(ct["Id"])
                except Exception:  # noqa: BLE001 - prune is best effort, like docker's
                    continue
        eng.emit("container", "prune", "", {"reclaimed": "0"})
        return Response.json({"ContainersDeleted": deleted, "SpaceReclaimed": 0})

    def fs() -> Any:
        from engine.containers.archive import ContainerFS

        return ContainerFS(cm())

    def archive_get(req: Request, name: str) -> Response | Stream:
        path = req.arg("path")
        if req.method == "HEAD":
            info = eng.run("container.archive.stat", fs().stat, name, path)
            return Response(200, headers=[(STAT_HEADER, stat_header(info))])
        job = eng.job("container.archive.get", id=name, path=path)
        info, chunks = fs().get_archive(name, path, ctx=eng.track(job))
        return Stream(chunks, content_type="application/x-tar",
                      headers=[(STAT_HEADER, stat_header(info))])

    def archive_put(req: Request, name: str) -> Response:
        path = req.arg("path")
        eng.run("container.archive.put", fs().put_archive, name, path, req.body,
                no_overwrite_dir_non_dir=req.bool("noOverwriteDirNonDir"),
                copy_uid_gid=req.bool("copyUIDGID"),
                _job_args={"id": name, "path": path})
        return Response(200)

    def export(req: Request, name: str) -> Stream:
        job = eng.job("container.export", id=name)
        return Stream(fs().export(name, ctx=eng.track(job)), content_type="application/x-tar")

    def changes(req: Request, name: str) -> Response:
        from engine.containers.changes import container_changes

        return Response.json(eng.run("container.changes", container_changes, cm(), name))

    def commit(req: Request) -> Response:
        from engine.containers.commit import commit as do_commit

        name = req.arg("container") or ""
        if not name:
            raise InvalidParameter("container is required: ?container= names the container "
                                   "to commit")
        body = req.json(None)
        if body is not None and not isinstance(body, dict):
            raise InvalidParameter("commit body must be a container Config JSON object")
        if body:
            from engine.containers.health import validate as validate_health

            validate_health(body.get("Healthcheck"), "Healthcheck")
        changes_ = [line for v in req.query.get("changes", []) for line in v.splitlines()
                    if line.strip()]
        iid = eng.run("container.commit", do_commit, cm(), name, repo=req.arg("repo") or "",
                      tag=req.arg("tag") or "", comment=req.arg("comment") or "",
                      author=req.arg("author") or "", changes=changes_,
                      pause=req.bool("pause", True), config=body,
                      _job_args={"container": name, "repo": req.arg("repo"),
                                 "tag": req.arg("tag")})
        return Response.json({"Id": iid}, 201)

    n = "{name}"
    return [
        ("POST", "/commit", commit),
        ("GET", f"/containers/{n}/archive", archive_get),
        ("PUT", f"/containers/{n}/archive", archive_put),
        ("GET", f"/containers/{n}/export", export),
        ("GET", f"/containers/{n}/changes", changes),
        ("POST", "/containers/prune", prune),
        ("POST", "/containers/create", create),
        ("GET", "/containers/json", list_),
        ("GET", f"/containers/{n}/json", inspect),
        ("POST", f"/containers/{n}/start", start),
        ("POST", f"/containers/{n}/stop", stop),
        ("POST", f"/containers/{n}/kill", kill),
        ("POST", f"/containers/{n}/restart", restart),
        ("POST", f"/containers/{n}/pause", pause),
        ("POST", f"/containers/{n}/unpause", unpause),
        ("POST", f"/containers/{n}/wait", wait),
        ("POST", f"/containers/{n}/attach", attach),
        ("GET", f"/containers/{n}/logs", logs),
        ("POST", f"/containers/{n}/resize", resize),
        ("DELETE", f"/containers/{n}", remove),
        ("GET", f"/containers/{n}/top", top),
        ("GET", f"/containers/{n}/stats", stats),
        ("POST", f"/containers/{n}/update", update),
        ("POST", f"/containers/{n}/rename", rename),
    ]
