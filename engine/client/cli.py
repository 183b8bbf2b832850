"""`skiff`: docker's verbs and flags over the Engine API (engine/client/api.py).

Exit codes follow docker's: 125 when the daemon (or the command line) fails, 126 when the
container's command cannot be invoked, 127 when it is not found, otherwise the container's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from engine.client import format as fmt
from engine.client.api import APIError, Client, ConnectError

EXIT_DAEMON, EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND = 125, 126, 127


class CLIError(Exception):
    def __init__(self, msg: str, code: int = EXIT_DAEMON) -> None:
        super().__init__(msg)
        self.code = code


# ---- parsing helpers ------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(v: str) -> int:
    """docker's RAMInBytes: 512m, 1g, 100k, 1024 (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*", v.lower())
    if not m:
        raise CLIError(f"invalid size: '{v}'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def resource_flags(a: argparse.Namespace) -> dict[str, Any]:
    """--memory/--cpus/... -> HostConfig resource fields; run/create and update share the flags
    (docker's update takes the same names), so they share the translation."""
    r: dict[str, Any] = {}
    if a.memory:
        r["Memory"] = parse_bytes(a.memory)
    if a.memory_swap:
        r["MemorySwap"] = -1 if a.memory_swap == "-1" else parse_bytes(a.memory_swap)
    if a.memory_reservation:
        r["MemoryReservation"] = parse_bytes(a.memory_reservation)
    if a.cpus is not None:
        r["NanoCpus"] = int(a.cpus * 1e9)
    for k, v in (("CpuShares", a.cpu_shares), ("CpusetCpus", a.cpuset_cpus),
                 ("CpusetMems", a.cpuset_mems), ("CpuPeriod", a.cpu_period),
                 ("CpuQuota", a.cpu_quota), ("PidsLimit", a.pids_limit)):
        if v is not None:
            r[k] = v
    return r


def parse_ports(specs: list[str], expose: list[str] | None = None) -> tuple[dict, dict]:
    """-p and --expose values -> (Config.ExposedPorts, HostConfig.PortBindings) as docker's CLI
    sends them.

    Why the network driver's parser: the client and the daemon must agree on one syntax
    (ranges, IPv6 brackets, host port 0); the daemon re-validates with the same module.
    """
    from engine.drivers.network import portspec
    from engine.errors import InvalidParameter

    try:
        exposed_keys, bindings = portspec.parse_port_specs(list(specs))
        keys = list(exposed_keys)
        for e in expose or ():
            keys.extend(portspec.parse_expose(e))
        portspec.normalize_bindings(bindings, keys)
    except InvalidParameter as e:
        raise CLIError(str(e)) from None
    # docker sends ExposedPorts values as empty objects (Go struct{}), not null
    return {k: {} for k in dict.fromkeys(keys)}, bindings


def parse_env(items: list[str], files: list[str]) -> list[str]:
    out: list[str] = []
    for f in files:
        with open(f) as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(line if "=" in line else _env_from_host(line))
    for e in items:
        out.append(e if "=" in e else _env_from_host(e))
    return [e for e in out if e]


def _env_from_host(name: str) -> str:
    return f"{name}={os.environ[name]}" if name in os.environ else ""


def parse_labels(items: list[str]) -> dict[str, str]:
    return {k: v for k, _, v in (i.partition("=") for i in items)}


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in items:
        k, sep, v = f.partition("=")
        if not sep:
            raise CLIError(f'bad format of filter (expected name=value): "{f}"')
        out.setdefault(k.strip().lower(), []).append(v)
    return out


def parse_restart(v: str) -> dict:
    name, _, n = v.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise CLIError(f"invalid restart policy: {v}")
    if n and name != "on-failure":
        raise CLIError(f"invalid restart policy format: maximum retry count cannot be used "
                       f"with restart policy '{name}'")
    try:
        return {"Name": name, "MaximumRetryCount": int(n or 0)}
    except ValueError:
        raise CLIError(f"invalid restart policy format: {v}") from None


def ts_arg(v: str | None) -> str | None:
    """--since/--until: unix time, RFC 3339, or a duration like 10m relative to now."""
    if not v:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)", v)
    if m:
        sec = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
        return f"{time.time() - sec:.9f}"
    return v


# ---- the parser -----------------------------------------------------------------------------

def _resource_flags(p: argparse.ArgumentParser) -> None:
    """The flags resource_flags() reads: run/create and update take the same ones."""
    a = p.add_argument
    a("-m", "--memory")
    a("--memory-swap")
    a("--memory-reservation")
    a("--cpus", type=float)
    a("-c", "--cpu-shares", type=int)
    a("--cpuset-cpus")
    a("--cpuset-mems")
    a("--cpu-period", type=int)
    a("--cpu-quota", type=int)
    a("--pids-limit", type=int)


def _ps_flags(p: argparse.ArgumentParser) -> None:
    """`ps` and its management spelling `container ls`."""
    a = p.add_argument
    a("-a", "--all", action="store_true")
    a("-q", "--quiet", action="store_true")
    a("-s", "--size", action="store_true")
    a("-n", "--last", type=int, default=-1)
    a("-l", "--latest", action="store_true")
    a("-f", "--filter", action="append", default=[])
    a("--format")
    a("--no-trunc", action="store_true")


def _images_flags(p: argparse.ArgumentParser) -> None:
    """`images` and its management spelling `image ls`."""
    a = p.add_argument
    a("-a", "--all", action="store_true")
    a("-q", "--quiet", action="store_true")
    a("--digests", action="store_true")
    a("--no-trunc", action="store_true")
    a("-f", "--filter", action="append", default=[])
    a("--format")
    a("reference", nargs="?")


def _container_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("-d", "--detach", action="store_true")
    a("-i", "--interactive", action="store_true")
    a("-t", "--tty", action="store_true")
    a("--rm", action="store_true")
    a("--name")
    a("-e", "--env", action="append", default=[])
    a("--env-file", action="append", default=[])
    a("-w", "--workdir")
    a("-u", "--user")
    a("-h", "--hostname")
    a("--domainname")
    a("-p", "--publish", action="append", default=[])
    a("-P", "--publish-all", action="store_true")
    a("--expose", action="append", default=[])
    a("-v", "--volume", action="append", default=[])
    a("--mount", action="append", default=[])
    a("--network", "--net", dest="network")
    a("--network-alias", action="append", default=[])
    a("--restart", default="no")
    _resource_flags(p)
    a("--init", action="store_true")
    a("--read-only", action="store_true")
    a("--privileged", action="store_true")
    a("--cap-add", action="append", default=[])
    a("--cap-drop", action="append", default=[])
    a("--security-opt", action="append", default=[])
    a("--entrypoint")
    a("-l", "--label", action="append", default=[])
    a("--dns", action="append", default=[])
    a("--dns-search", action="append", default=[])
    a("--add-host", action="append", default=[])
    a("--stop-signal")
    a("--stop-timeout", type=int)
    a("--detach-keys")
    a("--pull", choices=["missing", "always", "never"], default="missing")
    a("--platform")
    a("--tmpfs", action="append", default=[])
    a("--shm-size")
    a("--ulimit", action="append", default=[])
    a("--group-add", action="append", default=[])
    a("--health-cmd")
    a("--health-interval")
    a("--health-timeout")
    a("--health-retries", type=int)
    a("--health-start-period")
    a("--health-start-interval")
    a("--no-healthcheck", action="store_true")
    a("-q", "--quiet", action="store_true")
    a("image")
    a("command", nargs=argparse.REMAINDER)


def _cp_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--archive", action="store_true", help="keep uid/gid")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("src")
    p.add_argument("dest")


def _export_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output")
    p.add_argument("container")


def _commit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--author", default="")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("-p", "--pause", default="true", nargs="?", const="true")
    p.add_argument("container")
    p.add_argument("reference", nargs="?")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skiff", description="A container engine in Python "
                                "(docker-compatible client)")
    p.add_argument("-H", "--host", help="daemon socket (default: $SKIFF_HOST, $DOCKER_HOST, "
                   "unix:///run/skiff/skiff.sock)")
    p.add_argument("-D", "--debug", action="store_true")
    p.add_argument("-v", "--version", action="store_true", help="print the client version")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    def cmd(name: str, fn: Callable | None, help: str, aliases: tuple[str, ...] = ()
            ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, aliases=list(aliases), add_help=True,
                            conflict_handler="resolve")
        sp.set_defaults(fn=fn)
        return sp

    sp = cmd("run", cmd_run, "create and run a new container from an image")
    _container_flags(sp)
    sp = cmd("create", cmd_create, "create a new container")
    _container_flags(sp)

    sp = cmd("start", cmd_start, "start stopped containers")
    sp.add_argument("-a", "--attach", action="store_true")
    sp.add_argument("-i", "--interactive", action="store_true")
    sp.add_argument("--detach-keys")
    sp.add_argument("containers", nargs="+")

    for name, fn, h in (("stop", cmd_stop, "stop running containers"),
                        ("restart", cmd_restart, "restart containers")):
        sp = cmd(name, fn, h)
        sp.add_argument("-t", "--timeout", "--time", type=int, dest="timeout")
        sp.add_argument("-s", "--signal")
        sp.add_argument("containers", nargs="+")

    sp = cmd("kill", cmd_kill, "kill running containers")
    sp.add_argument("-s", "--signal", default="KILL")
    sp.add_argument("containers", nargs="+")

    sp = cmd("rm", cmd_rm, "remove containers")
    sp.add_argument("-f", "--force", action="store_true")
    sp.add_argument("-v", "--volumes", action="store_true")
    sp.add_argument("-l", "--link", action="store_true")
    sp.add_argument("containers", nargs="+")

    for name, fn in (("pause", cmd_pause), ("unpause", cmd_unpause)):
        sp = cmd(name, fn, f"{name} containers")
        sp.add_argument("containers", nargs="+")

    sp = cmd("wait", cmd_wait, "block until containers stop, print their exit codes")
    sp.add_argument("containers", nargs="+")

    sp = cmd("ps", cmd_ps, "list containers")
    _ps_flags(sp)

    sp = cmd("logs", cmd_logs, "fetch the logs of a container")
    sp.add_argument("-f", "--follow", action="store_true")
    sp.add_argument("-t", "--timestamps", action="store_true")
    sp.add_argument("-n", "--tail", default="all")
    sp.add_argument("--since")
    sp.add_argument("--until")
    sp.add_argument("--details", action="store_true")
    sp.add_argument("container")

    sp = cmd("exec", cmd_exec, "execute a command in a running container")
    sp.add_argument("-d", "--detach", action="store_true")
    sp.add_argument("-i", "--interactive", action="store_true")
    sp.add_argument("-t", "--tty", action="store_true")
    sp.add_argument("-e", "--env", action="append", default=[])
    sp.add_argument("--env-file", action="append", default=[])
    sp.add_argument("-u", "--user")
    sp.add_argument("-w", "--workdir")
    sp.add_argument("--privileged", action="store_true")
    sp.add_argument("--detach-keys")
    sp.add_argument("container")
    sp.add_argument("command", nargs=argparse.REMAINDER)

    sp = cmd("attach", cmd_attach, "attach to a running container")
    sp.add_argument("--no-stdin", action="store_true")
    sp.add_argument("--sig-proxy", default="true")
    sp.add_argument("--detach-keys")
    sp.add_argument("container")

    sp = cmd("cp", cmd_cp, "copy files between a container and the local filesystem")
    _cp_flags(sp)
    sp = cmd("export", cmd_export, "export a container's filesystem as a tar archive")
    _export_flags(sp)
    sp = cmd("diff", cmd_diff, "inspect changes to files on a container's filesystem")
    sp.add_argument("container")
    sp = cmd("commit", cmd_commit, "create a new image from a container's changes")
    _commit_flags(sp)

    sp = cmd("top", cmd_top, "display the running processes of a container")
    sp.add_argument("container")
    sp.add_argument("ps_args", nargs=argparse.REMAINDER)

    sp = cmd("stats", cmd_stats, "display resource usage statistics")
    sp.add_argument("--no-stream", action="store_true")
    sp.add_argument("--format")
    sp.add_argument("-a", "--all", action="store_true")
    sp.add_argument("containers", nargs="*")

    sp = cmd("update", cmd_update, "update the resources of containers")
    _resource_flags(sp)
    sp.add_argument("--restart")
    sp.add_argument("containers", nargs="+")

    sp = cmd("rename", cmd_rename, "rename a container")
    sp.add_argument("container")
    sp.add_argument("new_name")

    sp = cmd("pull", cmd_pull, "download an image from a registry")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("-a", "--all-tags", action="store_true")
    sp.add_argument("--platform")
    sp.add_argument("image")

    sp = cmd("push", cmd_push, "upload an image to a registry")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("image")

    sp = cmd("images", cmd_images, "list images")
    _images_flags(sp)

    sp = cmd("rmi", cmd_rmi, "remove images")
    sp.add_argument("-f", "--force", action="store_true")
    sp.add_argument("--no-prune", action="store_true")
    sp.add_argument("images", nargs="+")

    sp = cmd("tag", cmd_tag, "create a tag TARGET that refers to SOURCE")
    sp.add_argument("source")
    sp.add_argument("target")

    sp = cmd("inspect", cmd_inspect, "low-level information on objects")
    sp.add_argument("-f", "--format")
    sp.add_argument("--type", choices=["container", "image", "network", "volume"])
    sp.add_argument("-s", "--size", action="store_true")
    sp.add_argument("names", nargs="+")

    sp = cmd("load", cmd_load, "load images from a tar archive")
    sp.add_argument("-i", "--input")
    sp.add_argument("-q", "--quiet", action="store_true")

    sp = cmd("save", cmd_save, "save images to a tar archive")
    sp.add_argument("-o", "--output")
    sp.add_argument("images", nargs="+")

    sp = cmd("import", cmd_import, "create an image from a root filesystem tarball")
    sp.add_argument("-c", "--change", action="append", default=[])
    sp.add_argument("-m", "--message")
    sp.add_argument("file")
    sp.add_argument("reference", nargs="?")

    sp = cmd("version", cmd_version, "show client and daemon versions")
    sp.add_argument("-f", "--format")
    sp = cmd("info", cmd_info, "system-wide information")
    sp.add_argument("-f", "--format")

    sp = cmd("events", cmd_events, "real-time events from the daemon")
    sp.add_argument("--since")
    sp.add_argument("--until")
    sp.add_argument("-f", "--filter", action="append", default=[])
    sp.add_argument("--format")

    sp = cmd("jobs", cmd_jobs, "running jobs of the daemon (Skiff extension)")
    sp.add_argument("-a", "--all", action="store_true", help="also recently finished jobs")
    sp.add_argument("--format")

    # network
    np_ = cmd("network", None, "manage networks")
    nsub = np_.add_subparsers(dest="subcmd", metavar="COMMAND")
    s = nsub.add_parser("ls", aliases=["list"])
    s.set_defaults(fn=cmd_network_ls)
    s.add_argument("-q", "--quiet", action="store_true")
    s.add_argument("-f", "--filter", action="append", default=[])
    s.add_argument("--format")
    s.add_argument("--no-trunc", action="store_true")
    s = nsub.add_parser("create")
    s.set_defaults(fn=cmd_network_create)
    s.add_argument("-d", "--driver", default="bridge")
    s.add_argument("--subnet")
    s.add_argument("--gateway")
    s.add_argument("--internal", action="store_true")
    s.add_argument("--label", action="append", default=[])
    s.add_argument("name")
    s = nsub.add_parser("rm", aliases=["remove"])
    s.set_defaults(fn=cmd_network_rm)
    s.add_argument("-f", "--force", action="store_true")
    s.add_argument("networks", nargs="+")
    s = nsub.add_parser("inspect")
    s.set_defaults(fn=cmd_network_inspect)
    s.add_argument("-f", "--format")
    s.add_argument("networks", nargs="+")
    for verb in ("connect", "disconnect"):
        s = nsub.add_parser(verb)
        s.set_defaults(fn=cmd_network_connect, verb=verb)
        s.add_argument("network")
        s.add_argument("container")

    # volume
    vp = cmd("volume", None, "manage volumes")
    vsub = vp.add_subparsers(dest="subcmd", metavar="COMMAND")
    s = vsub.add_parser("ls", aliases=["list"])
    s.set_defaults(fn=cmd_volume_ls)
    s.add_argument("-q", "--quiet", action="store_true")
    s.add_argument("-f", "--filter", action="append", default=[])
    s.add_argument("--format")
    s = vsub.add_parser("create")
    s.set_defaults(fn=cmd_volume_create)
    s.add_argument("-d", "--driver", default="local")
    s.add_argument("--label", action="append", default=[])
    s.add_argument("name", nargs="?")
    s = vsub.add_parser("rm", aliases=["remove"])
    s.set_defaults(fn=cmd_volume_rm)
    s.add_argument("-f", "--force", action="store_true")
    s.add_argument("volumes", nargs="+")
    s = vsub.add_parser("inspect")
    s.set_defaults(fn=cmd_volume_inspect)
    s.add_argument("-f", "--format")
    s.add_argument("volumes", nargs="+")

    # docker's management-command spellings for the common verbs
    cp = cmd("container", None, "manage containers")
    csub = cp.add_subparsers(dest="subcmd", metavar="COMMAND")
    for verb, fn in (("ls", cmd_ps), ("list", cmd_ps)):
        s = csub.add_parser(verb)
        s.set_defaults(fn=fn)
        _ps_flags(s)
    for verb, fn, flags in (("cp", cmd_cp, _cp_flags), ("export", cmd_export, _export_flags),
                            ("commit", cmd_commit, _commit_flags)):
        s = csub.add_parser(verb)
        s.set_defaults(fn=fn)
        flags(s)
    s = csub.add_parser("diff")
    s.set_defaults(fn=cmd_diff)
    s.add_argument("container")
    ip = cmd("image", None, "manage images")
    isub = ip.add_subparsers(dest="subcmd", metavar="COMMAND")
    s = isub.add_parser("ls", aliases=["list"])
    s.set_defaults(fn=cmd_images)
    _images_flags(s)
    return p


# ---- output helpers -------------------------------------------------------------------------

def out(s: str = "") -> None:
    sys.stdout.write(s + ("\n" if not s.endswith("\n") else ""))
    sys.stdout.flush()


def err(s: str) -> None:
    sys.stderr.write(s.rstrip("\n") + "\n")
    sys.stderr.flush()


def short_id(i: str) -> str:
    return i.split(":", 1)[-1][:12]


def _each(names: list[str], fn: Callable[[str], Any]) -> int:
    """docker's multi-target verbs: act on each, print errors, exit 1 if any failed."""
    rc = 0
    for n in names:
        try:
            fn(n)
            out(n)
        except APIError as e:
            if isinstance(e, ConnectError):
                raise
            err(f"Error response from daemon: {e.message}")
            rc = 1
    return rc


class Progress:
    """Pull/push/load progress: rich bars on a terminal, docker-like lines otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self._bars: dict[str, Any] = {}
        self._rich: Any = None

    def __enter__(self) -> Progress:
        if self.tty:
            try:
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    TextColumn,
                )
                from rich.progress import (
                    Progress as RichProgress,
                )

                self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                          DownloadColumn(), transient=False,
                                          console=None)
                self._rich.start()
            except ImportError:
                self._rich = None
        return self

    def __exit__(self, *a: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def update(self, msg: dict) -> None:
        if "error" in msg:
            raise APIError(500, msg.get("error") or str(msg.get("errorDetail")))
        if self.quiet:
            return
        if "stream" in msg:
            if self._rich is not None:
                self._rich.console.print(msg["stream"].rstrip("\n"), highlight=False)
            else:
                sys.stdout.write(msg["stream"])
                sys.stdout.flush()
            return
        status, lid = msg.get("status", ""), msg.get("id")
        det = msg.get("progressDetail") or {}
        if self._rich is not None and lid:
            bar = self._bars.get(lid)
            desc = f"{lid}: {status}"
            if bar is None:
                bar = self._bars[lid] = self._rich.add_task(desc, total=det.get("total"))
            self._rich.update(bar, description=desc, completed=det.get("current", 0),
                              total=det.get("total") or None)
            return
        if self._rich is not None:
            self._rich.console.print(status, highlight=False)
            return
        if det.get("current") and not status.endswith("complete"):
            return  # one line per state change, not per chunk, when not on a terminal
        line = f"{lid}: {status}" if lid else status
        if msg.get("aux") or not line:
            return
        out(line)


def _pull(c: Client, image: str, quiet: bool = False, platform: str | None = None) -> None:
    repo, tag = split_tag(image)
    params = {"fromImage": repo, "tag": tag, "platform": platform}
    with Progress(quiet) as pr:
        for msg in c.stream_json("POST", "/images/create", params,
                                 headers=Client.auth_header()):
            pr.update(msg)


def split_tag(ref: str) -> tuple[str, str]:
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


# ---- containers -----------------------------------------------------------------------------

def container_body(a: argparse.Namespace) -> tuple[dict, str | None]:
    exposed, bindings = parse_ports(a.publish, a.expose)
    hc: dict[str, Any] = {
        "AutoRemove": a.rm,
        "NetworkMode": a.network or "default",
        "PortBindings": bindings,
        "PublishAllPorts": a.publish_all,
        "RestartPolicy": parse_restart(a.restart),
        "Binds": [v for v in a.volume if ":" in v] or None,
        "Init": a.init or None,
        "ReadonlyRootfs": a.read_only,
        "Privileged": a.privileged,
        "CapAdd": a.cap_add or None,
        "CapDrop": a.cap_drop or None,
        "SecurityOpt": a.security_opt or None,
        "Dns": a.dns or None,
        "DnsSearch": a.dns_search or None,
        "ExtraHosts": a.add_host or None,
        "GroupAdd": a.group_add or None,
    }
    hc.update(resource_flags(a))
    if a.shm_size:
        hc["ShmSize"] = parse_bytes(a.shm_size)
    if a.tmpfs:
        hc["Tmpfs"] = {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "")
                       for t in a.tmpfs}
    mounts = []
    for m in a.mount:
        kv = dict(p.split("=", 1) if "=" in p else (p, "true") for p in m.split(","))
        mounts.append({"Type": kv.get("type", "volume"),
                       "Source": kv.get("source") or kv.get("src", ""),
                       "Target": kv.get("target") or kv.get("dst") or kv.get("destination", ""),
                       "ReadOnly": kv.get("readonly", kv.get("ro", "false")) in ("true", "1")})
    if mounts:
        hc["Mounts"] = mounts
    volumes: dict[str, dict] = {v: {} for v in a.volume if ":" not in v}
    interactive = a.interactive
    body: dict[str, Any] = {
        "Hostname": a.hostname or "",
        "Domainname": a.domainname or "",
        "User": a.user or "",
        "AttachStdin": interactive and not a.detach,
        "AttachStdout": not a.detach,
        "AttachStderr": not a.detach,
        "ExposedPorts": exposed,
        "Tty": a.tty,
        "OpenStdin": interactive,
        "StdinOnce": interactive and not a.detach,
        "Env": parse_env(a.env, a.env_file),
        "Cmd": a.command or None,
        "Image": a.image,
        "Volumes": volumes or None,
        "WorkingDir": a.workdir or "",
        "Entrypoint": ([a.entrypoint] if a.entrypoint else [""]) if a.entrypoint is not None
        else None,
        "Labels": parse_labels(a.label),
        "HostConfig": {k: v for k, v in hc.items() if v is not None},
        "NetworkingConfig": {"EndpointsConfig": {
            a.network: {"Aliases": a.network_alias}} if a.network and a.network_alias else {}},
    }
    if a.stop_signal:
        body["StopSignal"] = a.stop_signal
    if a.stop_timeout is not None:
        body["StopTimeout"] = a.stop_timeout
    health = health_flags(a)
    if health is not None:
        body["Healthcheck"] = health
    return body, a.name


def health_flags(a: argparse.Namespace) -> dict | None:
    """--health-* / --no-healthcheck -> Config.Healthcheck (durations in ns), as docker's CLI."""
    timing = {"Interval": a.health_interval, "Timeout": a.health_timeout,
              "StartPeriod": a.health_start_period, "StartInterval": a.health_start_interval}
    if a.no_healthcheck:
        if a.health_cmd or any(v for v in timing.values()) or a.health_retries:
            raise CLIError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not (a.health_cmd or any(v for v in timing.values()) or a.health_retries):
        return None
    from engine.containers.health import parse_duration
    from engine.errors import InvalidParameter

    hc: dict[str, Any] = {"Test": ["CMD-SHELL", a.health_cmd] if a.health_cmd else None}
    try:
        for k, v in timing.items():
            if v:
                hc[k] = parse_duration(v)
    except InvalidParameter as e:
        raise CLIError(str(e)) from None
    if a.health_retries is not None:
        if a.health_retries < 0:
            raise CLIError("--health-retries cannot be negative")
        hc["Retries"] = a.health_retries
    return hc


def _create(c: Client, a: argparse.Namespace) -> str:
    body, name = container_body(a)
    params = {"name": name} if name else None
    if a.pull == "always":
        _pull(c, a.image, quiet=a.quiet)
    try:
        res = c.post("/containers/create", body, **(params or {}))
    except APIError as e:
        if e.status != 404 or "image" not in e.message.lower() or a.pull == "never":
            raise
        err(f"Unable to find image '{a.image}' locally")
        _pull(c, a.image, quiet=a.quiet)
        res = c.post("/containers/create", body, **(params or {}))
    for w in res.get("Warnings") or []:
        err(f"WARNING: {w}")
    return res["Id"]


def cmd_create(c: Client, a: argparse.Namespace) -> int:
    out(_create(c, a))
    return 0


def _start_error(e: APIError) -> CLIError:
    m = e.message
    code = EXIT_DAEMON
    low = m.lower()
    if "not found" in low and ("executable" in low or "exec" in low or "no such file" in low) \
            or "no such file or directory" in low:
        code = EXIT_NOT_FOUND
    elif "permission denied" in low or "cannot invoke" in low or "is a directory" in low:
        code = EXIT_CANNOT_INVOKE
    return CLIError(f"Error response from daemon: {m}", code)


class _Waiter:
    """POST /wait on its own connection; headers first (so the waiter exists), body later."""

    def __init__(self, c: Client, cid: str, condition: str) -> None:
        self.r = c.raw("POST", f"/containers/{cid}/wait", {"condition": condition})
        self.result: dict | None = None
        self.error: str | None = None
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        try:
            body = self.r.read()
            self.result = json.loads(body or b"{}")
        except (OSError, ValueError) as e:
            self.error = str(e)

    def wait(self, timeout: float | None = None) -> int:
        self._t.join(timeout)
        if self.result is None:
            raise CLIError(f"error waiting for container: {self.error or 'no answer'}")
        e = self.result.get("Error")
        if e and e.get("Message"):
            raise CLIError(f"error waiting for container: {e['Message']}")
        return int(self.result.get("StatusCode", 0))

    def close(self) -> None:
        """Shut the socket down before closing it: close() alone neither wakes the reader
        thread blocked in recv() nor tells the daemon we left (its wait job would run until
        the container exits), and the freed fd number could be reused under that reader."""
        try:
            self.r.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._t.join(5)
        try:
            self.r.sock.close()
        except OSError:
            pass


def cmd_run(c: Client, a: argparse.Namespace) -> int:
    from engine.client import stream

    if a.detach and a.rm and False:
        pass
    detach_keys = stream.parse_detach_keys(a.detach_keys)
    if a.tty and a.interactive and not os.isatty(sys.stdin.fileno()):
        raise CLIError("the input device is not a TTY", 1)
    cid = _create(c, a)
    if a.detach:
        waiter = _Waiter(c, cid, "next-exit")
        try:
            c.post(f"/containers/{cid}/start")
        except APIError as e:
            raise _start_error(e) from None
        finally:
            waiter.close()
        out(cid)
        return 0
    sock, leftover = c.hijack(f"/containers/{cid}/attach",
                              {"stream": 1, "stdout": 1, "stderr": 1,
                               "stdin": 1 if a.interactive else None})
    waiter = _Waiter(c, cid, "removed" if a.rm else "next-exit")
    try:
        c.post(f"/containers/{cid}/start")
    except APIError as e:
        sock.close()
        waiter.close()
        if a.rm:
            try:
                c.delete(f"/containers/{cid}", force=True)
            except APIError:
                pass
        raise _start_error(e) from None
    with stream.raw_terminal(a.tty and a.interactive), \
            stream.on_resize(lambda h, w: c.post(f"/containers/{cid}/resize", h=h, w=w),
                             a.tty):
        detached = stream.pump(sock, leftover, tty=a.tty, stdin=a.interactive,
                               detach_keys=detach_keys)
    if detached:
        err("")
        waiter.close()
        return 0
    code = waiter.wait()
    return code


def cmd_start(c: Client, a: argparse.Namespace) -> int:
    from engine.client import stream

    if not a.attach:
        return _each(a.containers, lambda n: c.post(f"/containers/{n}/start"))
    if len(a.containers) > 1:
        raise CLIError("you cannot start and attach multiple containers at once", 1)
    name = a.containers[0]
    info = c.get(f"/containers/{name}/json")
    tty = bool(info["Config"].get("Tty"))
    sock, leftover = c.hijack(f"/containers/{name}/attach", {
        "stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if a.interactive else None})
    waiter = _Waiter(c, info["Id"], "next-exit")
    try:
        c.post(f"/containers/{name}/start")
    except APIError as e:
        raise _start_error(e) from None
    with stream.raw_terminal(tty and a.interactive):
        detached = stream.pump(sock, leftover, tty=tty, stdin=a.interactive,
                               detach_keys=stream.parse_detach_keys(a.detach_keys))
    return 0 if detached else waiter.wait()


def cmd_attach(c: Client, a: argparse.Namespace) -> int:
    from engine.client import stream

    info = c.get(f"/containers/{a.container}/json")
    tty = bool(info["Config"].get("Tty"))
    stdin = not a.no_stdin and bool(info["Config"].get("OpenStdin"))
    sock, leftover = c.hijack(f"/containers/{a.container}/attach", {
        "stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if stdin else None})
    with stream.raw_terminal(tty and stdin):
        detached = stream.pump(sock, leftover, tty=tty, stdin=stdin,
                               detach_keys=stream.parse_detach_keys(a.detach_keys))
    if detached:
        return 0
    try:
        return int(c.get(f"/containers/{info['Id']}/json")["State"].get("ExitCode", 0))
    except APIError:
        return 0


def cmd_stop(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda n: c.post(f"/containers/{n}/stop", t=a.timeout,
                                                signal=a.signal))


def cmd_restart(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda n: c.post(f"/containers/{n}/restart", t=a.timeout,
                                                signal=a.signal))


def cmd_kill(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda n: c.post(f"/containers/{n}/kill", signal=a.signal))


def cmd_rm(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda n: c.delete(f"/containers/{n}", force=a.force or None,
                                                  v=a.volumes or None))


def cmd_pause(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda n: c.post(f"/containers/{n}/pause"))


def cmd_unpause(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda n: c.post(f"/containers/{n}/unpause"))


def cmd_wait(c: Client, a: argparse.Namespace) -> int:
    rc = 0
    for n in a.containers:
        try:
            res = c.post(f"/containers/{n}/wait")
            out(str(res.get("StatusCode", 0)))
        except APIError as e:
            err(f"Error response from daemon: {e.message}")
            rc = 1
    return rc


def cmd_rename(c: Client, a: argparse.Namespace) -> int:
    c.post(f"/containers/{a.container}/rename", name=a.new_name)
    return 0


def _ports(ports: list[dict] | None) -> str:
    out_ = []
    for p in ports or []:
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            out_.append(f"{ip}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}")
        else:
            out_.append(f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}")
    return ", ".join(out_)


def ps_row(ct: dict, no_trunc: bool) -> dict:
    cmd = ct.get("Command", "")
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    names = ",".join(n.lstrip("/") for n in ct.get("Names") or [])
    created = ct.get("Created", 0)
    size = ""
    if "SizeRw" in ct:
        size = f"{fmt.human_size(ct.get('SizeRw') or 0)} (virtual " \
               f"{fmt.human_size(ct.get('SizeRootFs') or 0)})"
    return {
        "ID": ct["Id"] if no_trunc else ct["Id"][:12],
        "Image": ct.get("Image", ""),
        "Command": json.dumps(cmd) if not no_trunc else json.dumps(ct.get("Command", "")),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(created)),
        "RunningFor": fmt.ago(created),
        "Ports": _ports(ct.get("Ports")),
        "State": ct.get("State", ""),
        "Status": ct.get("Status", ""),
        "Size": size,
        "Names": names,
        "Labels": ",".join(f"{k}={v}" for k, v in (ct.get("Labels") or {}).items()),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in ct.get("Mounts") or []),
        "Networks": ",".join((ct.get("NetworkSettings") or {}).get("Networks", {}) or {}),
    }


def cmd_ps(c: Client, a: argparse.Namespace) -> int:
    limit = 1 if a.latest else a.last
    params: dict[str, Any] = {"all": 1 if (a.all or limit > 0) else None,
                              "limit": limit if limit > 0 else None,
                              "size": 1 if a.size else None}
    if a.filter:
        params["filters"] = json.dumps(parse_filters(a.filter))
    cts = c.get("/containers/json", **params)
    if a.quiet:
        for ct in cts:
            out(ct["Id"] if a.no_trunc else ct["Id"][:12])
        return 0
    rows = [ps_row(ct, a.no_trunc) for ct in cts]
    cols = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"),
            ("CREATED", "RunningFor"), ("STATUS", "Status"), ("PORTS", "Ports"),
            ("NAMES", "Names")]
    if a.size:
        cols.insert(-1, ("SIZE", "Size"))
    text = fmt.format_rows(a.format, rows, cols)
    if text:
        out(text)
    return 0


def cmd_logs(c: Client, a: argparse.Namespace) -> int:
    from engine.client.api import demux

    info = c.get(f"/containers/{a.container}/json")
    tty = bool(info["Config"].get("Tty"))
    params = {"stdout": 1, "stderr": 1, "follow": 1 if a.follow else None,
              "timestamps": 1 if a.timestamps else None, "tail": a.tail,
              "since": ts_arg(a.since), "until": ts_arg(a.until)}
    chunks = c.stream("GET", f"/containers/{a.container}/logs", params)
    try:
        if tty:
            for ch in chunks:
                sys.stdout.buffer.write(ch)
                sys.stdout.buffer.flush()
        else:
            for st, data in demux(chunks):
                f = sys.stderr.buffer if st == 2 else sys.stdout.buffer
                f.write(data)
                f.flush()
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_exec(c: Client, a: argparse.Namespace) -> int:
    from engine.client import stream

    if not a.command:
        raise CLIError("exec requires at least 2 arguments", 1)
    if a.tty and a.interactive and not os.isatty(sys.stdin.fileno()):
        raise CLIError("the input device is not a TTY", 1)
    body = {"AttachStdin": a.interactive and not a.detach, "AttachStdout": not a.detach,
            "AttachStderr": not a.detach, "Tty": a.tty, "Cmd": a.command,
            "Env": parse_env(a.env, a.env_file) or None, "User": a.user or "",
            "WorkingDir": a.workdir or "", "Privileged": a.privileged}
    if a.detach_keys:
        body["DetachKeys"] = a.detach_keys
    eid = c.post(f"/containers/{a.container}/exec", body)["Id"]
    if a.detach:
        c.post(f"/exec/{eid}/start", {"Detach": True, "Tty": a.tty})
        return 0
    start: dict[str, Any] = {"Detach": False, "Tty": a.tty}
    size = stream.terminal_size() if a.tty else None
    if size:  # like docker's CLI: the pty starts at the terminal's size, not 0x0
        start["ConsoleSize"] = list(size)
    try:
        sock, leftover = c.hijack(f"/exec/{eid}/start", body=start)
    except APIError as e:
        raise _start_error(e) from None
    with stream.raw_terminal(a.tty and a.interactive), \
            stream.on_resize(lambda h, w: c.post(f"/exec/{eid}/resize", h=h, w=w), a.tty):
        stream.pump(sock, leftover, tty=a.tty, stdin=a.interactive,
                    detach_keys=stream.parse_detach_keys(a.detach_keys))
    for _ in range(50):
        info = c.get(f"/exec/{eid}/json")
        if not info.get("Running"):
            code = info.get("ExitCode")
            return int(code) if code is not None else 0
        time.sleep(0.05)
    return 0


def cmd_cp(c: Client, a: argparse.Namespace) -> int:
    from engine.client import copy

    sc, sp = copy.split_target(a.src)
    dc, dp = copy.split_target(a.dest)
    if sc and dc:
        raise CLIError("copying between containers is not supported", 1)
    if not sc and not dc:
        raise CLIError("must specify at least one container source", 1)
    try:
        if sc:
            copy.copy_from(c, sc, sp, dp, keep_owner=a.archive, follow=a.follow_link)
            if not a.quiet and dp != "-":
                err(f"Successfully copied from {sc}:{sp} to {dp}")
        else:
            assert dc is not None
            copy.copy_to(c, sp, dc, dp, keep_owner=a.archive, follow=a.follow_link)
            if not a.quiet:
                err(f"Successfully copied {sp} to {dc}:{dp}")
    except copy.CopyError as e:
        raise CLIError(str(e), 1) from None
    return 0


def cmd_export(c: Client, a: argparse.Namespace) -> int:
    if not a.output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect",
                       1)
    dst = open(a.output + ".tmp", "wb") if a.output else sys.stdout.buffer
    try:
        for ch in c.stream("GET", f"/containers/{a.container}/export"):
            dst.write(ch)
    except BaseException:
        if a.output:
            dst.close()
            os.unlink(a.output + ".tmp")
        raise
    if a.output:
        dst.close()
        os.rename(a.output + ".tmp", a.output)
    else:
        dst.flush()
    return 0


def cmd_diff(c: Client, a: argparse.Namespace) -> int:
    for ch in c.get(f"/containers/{a.container}/changes") or []:
        out(f"{'CAD'[int(ch['Kind'])]} {ch['Path']}")
    return 0


def cmd_commit(c: Client, a: argparse.Namespace) -> int:
    params: dict[str, Any] = {"container": a.container, "author": a.author or None,
                              "comment": a.message or None, "changes": a.change or None,
                              "pause": "0" if str(a.pause).lower() in ("false", "0") else "1"}
    if a.reference:
        repo, tag = split_tag(a.reference)
        params.update(repo=repo, tag=tag)
    res = c.request("POST", "/commit", params, body={})
    out(res["Id"])
    return 0


def cmd_top(c: Client, a: argparse.Namespace) -> int:
    res = c.get(f"/containers/{a.container}/top",
                ps_args=" ".join(a.ps_args) if a.ps_args else None)
    lines = ["\t".join(res.get("Titles") or [])]
    lines += ["\t".join(p) for p in res.get("Processes") or []]
    out(fmt.align(lines))
    return 0


def _stats_row(name: str, s: dict) -> dict:
    cpu = s.get("cpu_stats", {})
    pre = s.get("precpu_stats", {})
    cd = (cpu.get("cpu_usage", {}).get("total_usage", 0)
          - pre.get("cpu_usage", {}).get("total_usage", 0))
    sd = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    ncpu = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
    pct = (cd / sd * ncpu * 100.0) if sd > 0 and cd > 0 else 0.0
    mem = s.get("memory_stats", {})
    usage = mem.get("usage", 0) - (mem.get("stats", {}) or {}).get("inactive_file", 0)
    limit = mem.get("limit", 0) or 1
    nets = (s.get("networks") or {}).values()
    rx, tx = (sum(n.get(k, 0) for n in nets) for k in ("rx_bytes", "tx_bytes"))
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    rd, wr = (sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == op)
              for op in ("read", "write"))
    return {"Container": name[:12], "Name": (s.get("name") or "").lstrip("/"),
            "ID": (s.get("id") or name)[:12], "CPUPerc": f"{pct:.2f}%",
            "MemUsage": f"{fmt.bytes_size(usage)} / {fmt.bytes_size(limit)}",
            "MemPerc": f"{usage / limit * 100:.2f}%",
            "NetIO": f"{fmt.human_size(rx)} / {fmt.human_size(tx)}",
            "BlockIO": f"{fmt.human_size(rd)} / {fmt.human_size(wr)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


def cmd_stats(c: Client, a: argparse.Namespace) -> int:
    names = a.containers or [ct["Id"] for ct in c.get("/containers/json",
                                                      all=1 if a.all else None)]
    cols = [("CONTAINER ID", "ID"), ("NAME", "Name"), ("CPU %", "CPUPerc"),
            ("MEM USAGE / LIMIT", "MemUsage"), ("MEM %", "MemPerc"), ("NET I/O", "NetIO"),
            ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs")]
    while True:
        rows = []
        for n in names:
            try:
                rows.append(_stats_row(n, c.get(f"/containers/{n}/stats", stream=0)))
            except APIError as e:
                err(f"Error response from daemon: {e.message}")
        text = fmt.format_rows(a.format, rows, cols)
        if a.no_stream:
            out(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text + "\n")
        sys.stdout.flush()
        time.sleep(1)


def cmd_update(c: Client, a: argparse.Namespace) -> int:
    body = resource_flags(a)
    if a.restart:
        body["RestartPolicy"] = parse_restart(a.restart)
    return _each(a.containers, lambda n: c.post(f"/containers/{n}/update", body))


# ---- images ---------------------------------------------------------------------------------

def cmd_pull(c: Client, a: argparse.Namespace) -> int:
    _pull(c, a.image, quiet=a.quiet, platform=a.platform)
    if a.quiet:
        repo, tag = split_tag(a.image)
        out(f"{repo}{'@' if tag.startswith('sha256:') else ':'}{tag}")
    return 0


def cmd_push(c: Client, a: argparse.Namespace) -> int:
    repo, tag = split_tag(a.image)
    with Progress(a.quiet) as pr:
        for msg in c.stream_json("POST", f"/images/{repo}/push", {"tag": tag},
                                 headers=Client.auth_header()):
            pr.update(msg)
    return 0


def image_rows(imgs: list[dict], a: argparse.Namespace) -> list[dict]:
    rows = []
    for im in imgs:
        tags = [t for t in im.get("RepoTags") or [] if t != "<none>:<none>"] or ["<none>:<none>"]
        digests = im.get("RepoDigests") or []
        for t in tags:
            repo, _, tag = t.rpartition(":")
            dig = next((d.split("@", 1)[1] for d in digests if d.split("@")[0] == repo),
                       "<none>")
            rows.append({"Repository": repo, "Tag": tag, "Digest": dig,
                         "ID": im["Id"] if a.no_trunc else short_id(im["Id"]),
                         "CreatedSince": fmt.ago(im.get("Created", 0)),
                         "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z",
                                                    time.localtime(im.get("Created", 0))),
                         "Size": fmt.human_size(im.get("Size", 0)),
                         "Containers": str(im.get("Containers", "N/A"))})
    return rows


def cmd_images(c: Client, a: argparse.Namespace) -> int:
    flt = parse_filters(a.filter)
    if a.reference:
        flt.setdefault("reference", []).append(a.reference)
    params: dict[str, Any] = {"all": 1 if a.all else None, "digests": 1 if a.digests else None}
    if flt:
        params["filters"] = json.dumps(flt)
    imgs = c.get("/images/json", **params)
    if a.quiet:
        seen = []
        for im in imgs:
            i = im["Id"] if a.no_trunc else short_id(im["Id"])
            if i not in seen:
                seen.append(i)
                out(i)
        return 0
    cols = [("REPOSITORY", "Repository"), ("TAG", "Tag"), ("IMAGE ID", "ID"),
            ("CREATED", "CreatedSince"), ("SIZE", "Size")]
    if a.digests:
        cols.insert(2, ("DIGEST", "Digest"))
    text = fmt.format_rows(a.format, image_rows(imgs, a), cols)
    if text:
        out(text)
    return 0


def cmd_rmi(c: Client, a: argparse.Namespace) -> int:
    rc = 0
    for n in a.images:
        try:
            for d in c.delete(f"/images/{n}", force=a.force or None,
                              noprune=a.no_prune or None) or []:
                for k, v in d.items():
                    out(f"{k}: {v}")
        except APIError as e:
            if isinstance(e, ConnectError):
                raise
            err(f"Error response from daemon: {e.message}")
            rc = 1
    return rc


def cmd_tag(c: Client, a: argparse.Namespace) -> int:
    repo, tag = split_tag(a.target)
    c.post(f"/images/{a.source}/tag", repo=repo, tag=tag)
    return 0


def cmd_load(c: Client, a: argparse.Namespace) -> int:
    f: Any
    if a.input:
        f = open(a.input, "rb")
    else:
        if sys.stdin.isatty():
            raise CLIError("requested load from stdin, but stdin is empty", 1)
        f = sys.stdin.buffer

    def chunks() -> Iterator[bytes]:
        while True:
            d = f.read(1 << 20)
            if not d:
                return
            yield d

    with Progress(a.quiet) as pr:
        for msg in c.stream_json("POST", "/images/load", {"quiet": 1 if a.quiet else None},
                                 data=chunks(), headers={"Content-Type": "application/x-tar"}):
            if a.quiet and "stream" in msg:
                out(msg["stream"].rstrip("\n"))
                continue
            pr.update(msg)
    return 0


def cmd_save(c: Client, a: argparse.Namespace) -> int:
    if not a.output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect",
                       1)
    dst = open(a.output, "wb") if a.output else sys.stdout.buffer
    try:
        for ch in c.stream("GET", "/images/get", {"names": a.images}):
            dst.write(ch)
    finally:
        if a.output:
            dst.close()
    return 0


def cmd_import(c: Client, a: argparse.Namespace) -> int:
    params: dict[str, Any] = {"fromSrc": "-", "changes": a.change or None,
                              "message": a.message}
    if a.reference:
        repo, tag = split_tag(a.reference)
        params.update(repo=repo, tag=tag)
    f = sys.stdin.buffer if a.file == "-" else open(a.file, "rb")

    def chunks() -> Iterator[bytes]:
        while True:
            d = f.read(1 << 20)
            if not d:
                return
            yield d

    for msg in c.stream_json("POST", "/images/create", params, data=chunks()):
        if "error" in msg:
            raise APIError(500, msg["error"])
        if msg.get("status"):
            out(msg["status"])
    return 0


# ---- objects, system ------------------------------------------------------------------------

def _inspect_one(c: Client, name: str, typ: str | None, size: bool) -> Any:
    kinds = [typ] if typ else ["container", "image", "network", "volume"]
    last: APIError | None = None
    for k in kinds:
        path = {"container": f"/containers/{name}/json", "image": f"/images/{name}/json",
                "network": f"/networks/{name}", "volume": f"/volumes/{name}"}[k]
        try:
            return c.get(path, size=1 if (size and k == "container") else None)
        except APIError as e:
            if isinstance(e, ConnectError) or e.status not in (404, 503):
                raise
            last = e
    raise APIError(404, f"No such object: {name}" if not typ else
                   (last.message if last else f"No such {typ}: {name}"))


def _print_objects(objs: list[Any], template: str | None) -> None:
    if template:
        for o in objs:
            out(fmt.render(template, o))
    else:
        out(json.dumps(objs, indent=4))


def cmd_inspect(c: Client, a: argparse.Namespace) -> int:
    objs, rc = [], 0
    for n in a.names:
        try:
            objs.append(_inspect_one(c, n, a.type, a.size))
        except APIError as e:
            if isinstance(e, ConnectError):
                raise
            rc = 1
            err(f"Error: {e.message}" if e.status == 404 else
                f"Error response from daemon: {e.message}")
    if objs or not a.format:
        _print_objects(objs, a.format)
    return rc


def cmd_version(c: Client, a: argparse.Namespace) -> int:
    from engine import __version__

    client = {"Version": __version__, "ApiVersion": c.version, "Os": sys.platform,
              "GoVersion": "python" + sys.version.split()[0]}
    try:
        server: dict | None = c.get("/version")
    except ConnectError as e:
        server = None
        srv_err: APIError | None = e
    else:
        srv_err = None
    if a.format:
        out(fmt.render(a.format, {"Client": client, "Server": server}))
    else:
        out(fmt.align([
            "Client:", f" Version:\t{client['Version']}", f" API version:\t{c.version}",
            f" Python:\t{client['GoVersion']}"]))
        if server:
            out("\n" + fmt.align([
                f"Server: {server.get('Platform', {}).get('Name', 'Skiff Engine')}",
                f" Version:\t{server.get('Version')}",
                f" API version:\t{server.get('ApiVersion')} (minimum version "
                f"{server.get('MinAPIVersion')})",
                f" OS/Arch:\t{server.get('Os')}/{server.get('Arch')}",
                f" Kernel:\t{server.get('KernelVersion')}"]))
    if srv_err:
        raise srv_err
    return 0


def cmd_info(c: Client, a: argparse.Namespace) -> int:
    info = c.get("/info")
    if a.format:
        out(fmt.render(a.format, info))
        return 0
    lines = [
        "Server:",
        f" Containers:\t{info['Containers']}",
        f"  Running:\t{info['ContainersRunning']}",
        f"  Paused:\t{info['ContainersPaused']}",
        f"  Stopped:\t{info['ContainersStopped']}",
        f" Images:\t{info['Images']}",
        f" Server Version:\t{info['ServerVersion']}",
        f" Storage Driver:\t{info['Driver']}",
        f" Logging Driver:\t{info['LoggingDriver']}",
        f" Cgroup Driver:\t{info['CgroupDriver']}",
        f" Cgroup Version:\t{info['CgroupVersion']}",
        f" Kernel Version:\t{info['KernelVersion']}",
        f" Operating System:\t{info['OperatingSystem']}",
        f" Architecture:\t{info['Architecture']}",
        f" CPUs:\t{info['NCPU']}",
        f" Total Memory:\t{fmt.human_size(info['MemTotal'])}",
        f" Name:\t{info['Name']}",
        f" ID:\t{info['ID']}",
        f" Skiff Root Dir:\t{info['DockerRootDir']}",
        f" Live Restore Enabled:\t{str(info.get('LiveRestoreEnabled')).lower()}",
    ]
    sk = info.get("Skiff") or {}
    if sk:
        lines += [f" Bridge:\t{sk.get('Bridge')}", f" Bridge Subnet:\t{sk.get('Subnet')}"]
    out(fmt.align(lines))
    for w in info.get("Warnings") or []:
        err(w)
    return 0


def cmd_events(c: Client, a: argparse.Namespace) -> int:
    params: dict[str, Any] = {"since": ts_arg(a.since), "until": ts_arg(a.until)}
    if a.filter:
        params["filters"] = json.dumps(parse_filters(a.filter))
    try:
        for ev in c.stream_json("GET", "/events", params):
            if a.format:
                out(fmt.render(a.format, ev))
                continue
            t = ev.get("timeNano", 0)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t / 1e9)) + \
                f".{t % 1_000_000_000:09d}" + time.strftime("%z")
            actor = ev.get("Actor", {})
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(actor.get("Attributes", {}).items()))
            out(f"{stamp} {ev.get('Type')} {ev.get('Action')} {actor.get('ID')}"
                + (f" ({attrs})" if attrs else ""))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_jobs(c: Client, a: argparse.Namespace) -> int:
    jobs = c.get("/jobs", all=1 if a.all else None)
    rows = []
    for j in jobs:
        prog = j.get("Progress")
        if isinstance(prog, dict):
            det = prog.get("progressDetail") or {}
            prog = " ".join(x for x in (prog.get("id"), prog.get("status"),
                                        f"{det.get('current')}/{det.get('total')}"
                                        if det.get("total") else "") if x)
        args = " ".join(f"{k}={v}" for k, v in (j.get("Args") or {}).items() if v is not None)
        rows.append({**j, "ArgsText": args, "ProgressText": str(prog or ""),
                     "DurationText": f"{j.get('Duration', 0):.1f}s"})
    cols = [("ID", "ID"), ("NAME", "Name"), ("STATUS", "Status"), ("DURATION", "DurationText"),
            ("ARGS", "ArgsText"), ("PROGRESS", "ProgressText")]
    out(fmt.format_rows(a.format, rows, cols))
    return 0


# ---- networks, volumes ----------------------------------------------------------------------

def cmd_network_ls(c: Client, a: argparse.Namespace) -> int:
    params = {"filters": json.dumps(parse_filters(a.filter))} if a.filter else {}
    nets = c.get("/networks", **params)
    if a.quiet:
        for n in nets:
            out(n["Id"] if a.no_trunc else n["Id"][:12])
        return 0
    rows = [{"ID": n["Id"] if a.no_trunc else n["Id"][:12], "Name": n.get("Name", ""),
             "Driver": n.get("Driver", ""), "Scope": n.get("Scope", "local"),
             "Internal": n.get("Internal", False)} for n in nets]
    out(fmt.format_rows(a.format, rows, [("NETWORK ID", "ID"), ("NAME", "Name"),
                                         ("DRIVER", "Driver"), ("SCOPE", "Scope")]))
    return 0


def cmd_network_create(c: Client, a: argparse.Namespace) -> int:
    cfg = {}
    if a.subnet:
        cfg["Subnet"] = a.subnet
    if a.gateway:
        cfg["Gateway"] = a.gateway
    body = {"Name": a.name, "Driver": a.driver, "Internal": a.internal,
            "Labels": parse_labels(a.label), "IPAM": {"Driver": "default",
                                                      "Config": [cfg] if cfg else []}}
    out(c.post("/networks/create", body)["Id"])
    return 0


def cmd_network_rm(c: Client, a: argparse.Namespace) -> int:
    return _each(a.networks, lambda n: c.delete(f"/networks/{n}"))


def cmd_network_inspect(c: Client, a: argparse.Namespace) -> int:
    _print_objects([c.get(f"/networks/{n}") for n in a.networks], a.format)
    return 0


def cmd_network_connect(c: Client, a: argparse.Namespace) -> int:
    c.post(f"/networks/{a.network}/{a.verb}", {"Container": a.container})
    return 0


def cmd_volume_ls(c: Client, a: argparse.Namespace) -> int:
    params = {"filters": json.dumps(parse_filters(a.filter))} if a.filter else {}
    vols = (c.get("/volumes", **params) or {}).get("Volumes") or []
    if a.quiet:
        for v in vols:
            out(v["Name"])
        return 0
    rows = [{"Driver": v.get("Driver", "local"), "Name": v["Name"],
             "Mountpoint": v.get("Mountpoint", "")} for v in vols]
    out(fmt.format_rows(a.format, rows, [("DRIVER", "Driver"), ("VOLUME NAME", "Name")]))
    return 0


def cmd_volume_create(c: Client, a: argparse.Namespace) -> int:
    body = {"Name": a.name or "", "Driver": a.driver, "Labels": parse_labels(a.label)}
    out(c.post("/volumes/create", body)["Name"])
    return 0


def cmd_volume_rm(c: Client, a: argparse.Namespace) -> int:
    return _each(a.volumes, lambda n: c.delete(f"/volumes/{n}", force=a.force or None))


def cmd_volume_inspect(c: Client, a: argparse.Namespace) -> int:
    _print_objects([c.get(f"/volumes/{n}") for n in a.volumes], a.format)
    return 0


# ---- entry point ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else EXIT_DAEMON
    if a.version:
        from engine import __version__

        out(f"Skiff version {__version__}")
        return 0
    fn = getattr(a, "fn", None)
    if fn is None:
        parser.print_help()
        return 0 if not a.cmd else 1
    c = Client(a.host)
    try:
        return int(fn(c, a) or 0)
    except CLIError as e:
        err(f"skiff: {e}" if not str(e).startswith("Error") else str(e))
        return e.code
    except ConnectError as e:
        err(e.message)
        return EXIT_DAEMON if a.cmd in ("run", "create") else 1
    except APIError as e:
        err(f"Error response from daemon: {e.message}")
        return EXIT_DAEMON if a.cmd in ("run", "create", "exec") else 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        c.close()


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(x) for x in argv)


if __name__ == "__main__":
    sys.exit(main())
