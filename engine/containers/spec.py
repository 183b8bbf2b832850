"""Docker Config/HostConfig -> OCI runtime spec, with docker's own validation rules.

Validation happens here, once, at the edge: the daemon refuses what dockerd refuses, with
dockerd's messages (the docker CLI and docker-py users compare against them). Everything below
the ContainerManager trusts the spec built here.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidParameter
from engine.libcontainer.capabilities import CAP_NAMES
from engine.libcontainer.defaults import (
    DEFAULT_PATH,
    DOCKER_DEFAULT_CAPS,
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
    OCI_VERSION,
)

MIN_MEMORY = 6 * 1024 * 1024  # moby linuxMinMemory
DEFAULT_SHM = 64 * 1024 * 1024
INIT_PATH = "/sbin/docker-init"  # where docker puts its init; scripts expect the same

ALL_CAPS = CAP_NAMES  # the kernel capabilities libcontainer knows how to apply

RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")

RLIMITS = {
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack", "as",
}  # fmt: skip


@dataclass
class MountPoint:
    """One resolved mount of a container (docker's Mounts[] item plus what the spec needs)."""

    type: str  # bind | volume | tmpfs
    source: str  # host path ("" for tmpfs)
    destination: str
    rw: bool = True
    name: str = ""  # volume name
    mode: str = ""
    propagation: str = "rprivate"
    options: list[str] = field(default_factory=list)  # tmpfs options
    copy_up: bool = True  # volume: copy the image's content into an empty volume

    def to_docker(self) -> dict:
        d = {
            "Type": self.type,
            "Source": self.source,
            "Destination": self.destination,
            "Mode": self.mode,
            "RW": self.rw,
            "Propagation": self.propagation if self.type == "bind" else "",
        }
        if self.type == "volume":
            d["Name"] = self.name
            d["Driver"] = "local"
        return d

    @classmethod
    def from_docker(cls, d: dict) -> MountPoint:
        return cls(
            type=d["Type"], source=d.get("Source", ""), destination=d["Destination"],
            rw=d.get("RW", True), name=d.get("Name", ""), mode=d.get("Mode", ""),
            propagation=d.get("Propagation") or "rprivate", options=d.get("_Options", []),
        )


def _err(msg: str) -> InvalidParameter:
    return InvalidParameter(msg)


# ---------------------------------------------------------------------------------------------
# Config merging (image config + request), docker's rules (daemon/create.go, container/merge)


def image_inner_config(image_config: dict | None) -> dict:
    """Image.config may be the whole image config JSON or just its "config" object."""
    if not image_config:
        return {}
    inner = image_config.get("config")
    if isinstance(inner, dict):
        return inner
    if "Cmd" in image_config or "Env" in image_config or "Entrypoint" in image_config:
        return image_config
    return inner or {}


def merge_env(image_env: Iterable[str] | None, env: Iterable[str] | None) -> list[str]:
    out: dict[str, str] = {}
    for item in list(image_env or []) + list(env or []):
        key = item.split("=", 1)[0]
        out[key] = item
    return list(out.values())


def merge_config(config: dict, image_config: dict | None) -> dict:
    """The container's effective Config: the request filled in from the image's config."""
    img = image_inner_config(image_config)
    c = copy.deepcopy(config)
    c["Env"] = merge_env(img.get("Env"), config.get("Env"))
    req_ep = config.get("Entrypoint")
    if req_ep is not None:
        if isinstance(req_ep, str):
            req_ep = [req_ep]
        # `--entrypoint ""` resets the image's entrypoint (and then the image Cmd too)
        c["Entrypoint"] = [] if req_ep in ([], [""]) else list(req_ep)
        c["Cmd"] = list(config.get("Cmd") or [])
    else:
        c["Entrypoint"] = list(img.get("Entrypoint") or [])
        cmd = config.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        c["Cmd"] = list(cmd) if cmd else list(img.get("Cmd") or [])
    c["WorkingDir"] = config.get("WorkingDir") or img.get("WorkingDir") or ""
    c["User"] = config.get("User") or img.get("User") or ""
    exposed = dict(img.get("ExposedPorts") or {})
    exposed.update(config.get("ExposedPorts") or {})
    c["ExposedPorts"] = exposed
    vols = dict(img.get("Volumes") or {})
    vols.update(config.get("Volumes") or {})
    c["Volumes"] = vols
    labels = dict(img.get("Labels") or {})
    labels.update(config.get("Labels") or {})
    c["Labels"] = labels
    if not config.get("StopSignal") and img.get("StopSignal"):
        c["StopSignal"] = img["StopSignal"]
    if config.get("Healthcheck") is None and img.get("Healthcheck"):
        c["Healthcheck"] = img["Healthcheck"]
    if not (c["Entrypoint"] or c["Cmd"]):
        raise _err("No command specified")
    if c["WorkingDir"] and not c["WorkingDir"].startswith("/"):
        raise _err(
            f"the working directory '{c['WorkingDir']}' is invalid, it needs to be an absolute path"
        )
    return c


# ---------------------------------------------------------------------------------------------
# HostConfig validation (daemon/daemon_unix.go verifyPlatformContainerResources & co)


def parse_cpuset(s: str) -> set[int]:
    """docker/runc list format: "0-2,4"."""
    out: set[int] = set()
    if not s:
        return out
    for part in s.split(","):
        part = part.strip()
        if not part:
            raise ValueError(s)
        if "-" in part:
            a, b = part.split("-", 1)
            lo, hi = int(a), int(b)
            if lo > hi or lo < 0:
                raise ValueError(s)
            out.update(range(lo, hi + 1))
        else:
            n = int(part)
            if n < 0:
                raise ValueError(s)
            out.add(n)
    return out


def _online_cpus() -> set[int]:
    try:
        return parse_cpuset(Path("/sys/devices/system/cpu/online").read_text().strip())
    except (OSError, ValueError):
        return set(range(os.cpu_count() or 1))


def _int(hc: dict, key: str) -> int:
    v = hc.get(key)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(f"invalid value for HostConfig.{key}: {v!r} (an integer is required)")
    return v


def validate_host_config(hc: dict, config: dict | None = None, ncpu: int | None = None) -> list[str]:
    """Refuse what dockerd refuses; fix up what dockerd fixes up (in place). Returns warnings."""
    warnings: list[str] = []
    ncpu = ncpu or os.cpu_count() or 1
    mem = _int(hc, "Memory")
    swap = _int(hc, "MemorySwap")
    reservation = _int(hc, "MemoryReservation")
    if mem < 0:
        raise _err(f"invalid memory limit {mem}: it must not be negative")
    if mem != 0 and mem < MIN_MEMORY:
        raise _err("Minimum memory limit allowed is 6MB")
    if mem > 0 and swap > 0 and swap < mem:
        raise _err(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if mem == 0 and swap > 0:
        raise _err("You should always set the Memory limit when using Memoryswap limit, see usage")
    if swap < -1:
        raise _err(f"invalid memory-swap limit {swap}: use -1 for unlimited swap")
    if mem > 0 and swap == 0:
        hc["MemorySwap"] = mem * 2  # dockerd's adaptContainerSettings
    if reservation < 0:
        raise _err(f"invalid memory reservation {reservation}: it must not be negative")
    if reservation != 0 and reservation < MIN_MEMORY:
        raise _err("Minimum memory reservation allowed is 6MB")
    if mem > 0 and reservation > 0 and mem < reservation:
        raise _err(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise _err(
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100"
        )
    kmem = _int(hc, "KernelMemory")
    if kmem:
        warnings.append("Kernel memory limit is not supported; the limit is ignored")
    nano = _int(hc, "NanoCpus")
    period = _int(hc, "CpuPeriod")
    quota = _int(hc, "CpuQuota")
    if nano > 0 and period > 0:
        raise _err("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise _err("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano < 0 or nano > ncpu * 10**9:
        raise _err(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    if 0 < nano < 10**7:
        raise _err(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    if period != 0 and not 1000 <= period <= 1000000:
        raise _err(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if quota > 0 and quota < 1000:
        raise _err("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    shares = _int(hc, "CpuShares")
    if shares < 0:
        raise _err(f"invalid CPU shares {shares}: it must not be negative")
    if shares:
        from engine.units import clamp_cpu_shares

        hc["CpuShares"], warning = clamp_cpu_shares(shares)
        if warning:
            warnings.append(warning)
    for key, online in (("CpusetCpus", _online_cpus()), ("CpusetMems", None)):
        val = hc.get(key) or ""
        if not val:
            continue
        try:
            want = parse_cpuset(val)
        except ValueError:
            what = "cpuset cpus" if key == "CpusetCpus" else "cpuset mems"
            raise _err(f"Invalid value {val} for {what}") from None
        if online is not None and not want <= online:
            avail = ",".join(str(c) for c in sorted(online))
            raise _err(f"Requested CPUs are not available - requested {val}, available: {avail}")
        if key == "CpusetMems":
            nodes = _online_mems()
            if nodes is not None and not want <= nodes:
                avail = ",".join(str(c) for c in sorted(nodes))
                raise _err(
                    f"Requested memory nodes are not available - requested {val}, "
                    f"available: {avail}"
                )
    bw = _int(hc, "BlkioWeight")
    if bw and not 10 <= bw <= 1000:
        raise _err("Range of blkio weight is from 10 to 1000")
    pids = hc.get("PidsLimit")
    if pids is not None and (isinstance(pids, bool) or not isinstance(pids, int)):
        raise _err(f"invalid value for HostConfig.PidsLimit: {pids!r}")
    shm = _int(hc, "ShmSize")
    if shm < 0:
        raise _err("SHM size can not be less than 0")
    oom_adj = _int(hc, "OomScoreAdj")
    if not -1000 <= oom_adj <= 1000:
        raise _err(f"Invalid value {oom_adj}, range for oom score adj is [-1000, 1000]")
    validate_restart_policy(hc)
    nm = hc.get("NetworkMode") or "default"
    if nm.startswith("container:") and len(nm) == len("container:"):
        raise _err("invalid container format container:<name|id>")
    if config is not None and nm == "host" and config.get("Hostname"):
        pass  # docker allows --hostname with --network host since 20.10
    for opt in hc.get("SecurityOpt") or []:
        parse_security_opt(opt)
    for cap in (hc.get("CapAdd") or []) + (hc.get("CapDrop") or []):
        normalize_cap(cap)
    cgp = hc.get("CgroupParent") or ""
    if cgp and (".." in cgp.split("/") or not all(
            c.isalnum() or c in "/_.-" for c in cgp)):
        raise _err(f"invalid cgroup parent {cgp!r}")
    for d in hc.get("Devices") or []:
        device_spec(d)
    for u in hc.get("Ulimits") or []:
        if u.get("Name") not in RLIMITS:
            raise _err(f"invalid ulimit type: {u.get('Name')}")
        if u.get("Soft", 0) > u.get("Hard", 0):
            raise _err(
                f"ulimit soft limit must be less than or equal to hard limit: "
                f"{u.get('Soft')} > {u.get('Hard')}"
            )
    return warnings


def _online_mems() -> set[int] | None:
    try:
        return parse_cpuset(Path("/sys/devices/system/node/online").read_text().strip())
    except (OSError, ValueError):
        return None


def validate_restart_policy(hc: dict) -> None:
    rp = hc.get("RestartPolicy") or {}
    name = rp.get("Name") or ""
    count = rp.get("MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise _err(f"invalid restart policy '{name}'")
    if count < 0:
        raise _err("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise _err("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if hc.get("AutoRemove") and name not in ("", "no"):
        raise _err("can't create 'AutoRemove' container with restart policy")


def device_spec(d: dict) -> tuple[dict, dict]:
    """--device HOST[:CONTAINER[:PERMS]] (HostConfig.Devices item) -> (OCI linux.devices entry,
    OCI device cgroup rule). The host node must exist and be a device."""
    import stat

    host = d.get("PathOnHost") or ""
    inner = d.get("PathInContainer") or host
    perms = d.get("CgroupPermissions") or "rwm"
    if not host.startswith("/") or not inner.startswith("/"):
        raise _err(f"invalid device specification: {host}:{inner}")
    if not perms or set(perms) - set("rwm"):
        raise _err(f"invalid device mode: {perms}")
    try:
        st = os.stat(host)
    except OSError as e:
        raise _err(f"error gathering device information while adding custom device "
                   f"\"{host}\": {e.strerror.lower() if e.strerror else e}") from None
    if stat.S_ISCHR(st.st_mode):
        typ = "c"
    elif stat.S_ISBLK(st.st_mode):
        typ = "b"
    else:
        raise _err(f"error gathering device information while adding custom device \"{host}\": "
                   "not a device node")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    dev = {"path": inner, "type": typ, "major": major, "minor": minor,
           "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0}
    rule = {"allow": True, "type": typ, "major": major, "minor": minor, "access": perms}
    return dev, rule


def normalize_cap(cap: str) -> str:
    c = cap.strip().upper()
    if c == "ALL":
        return c
    if not c.startswith("CAP_"):
        c = "CAP_" + c
    if c not in ALL_CAPS:
        raise _err(f"invalid capability: {cap!r}: unknown capability")
    return c


def capabilities(hc: dict) -> list[str]:
    """docker's TweakCapabilities: defaults (or all when privileged), + add, - drop."""
    if hc.get("Privileged"):
        return list(ALL_CAPS)
    adds = [normalize_cap(c) for c in hc.get("CapAdd") or []]
    drops = [normalize_cap(c) for c in hc.get("CapDrop") or []]
    if "ALL" in adds:
        return [c for c in ALL_CAPS if c not in drops]
    if "ALL" in drops:
        caps: list[str] = []
    else:
        caps = [c for c in DOCKER_DEFAULT_CAPS if c not in drops]
    for c in adds:
        if c not in caps:
            caps.append(c)
    return caps


def parse_security_opt(opt: str) -> tuple[str, str]:
    """"seccomp=unconfined", "seccomp=<profile JSON>", "no-new-privileges[:true|=true]"..."""
    if opt in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
        return "no-new-privileges", "true"
    if opt in ("no-new-privileges:false", "no-new-privileges=false"):
        return "no-new-privileges", "false"
    if "=" in opt:
        k, v = opt.split("=", 1)
    elif ":" in opt:
        k, v = opt.split(":", 1)
    else:
        raise _err(f"Invalid --security-opt: {opt!r}")
    if k not in ("seccomp", "apparmor", "label", "systempaths", "no-new-privileges"):
        raise _err(f"Invalid --security-opt: {opt!r}")
    if k == "seccomp" and v != "unconfined":
        import json

        try:
            json.loads(v)
        except ValueError:
            raise _err(f"Decoding seccomp profile failed: {v[:80]!r} is not JSON") from None
    return k, v


# ---------------------------------------------------------------------------------------------
# Mount specs


def parse_bind(spec: str) -> tuple[str, str, str]:
    """"src:dst[:mode]" or "dst" (anonymous volume). Returns (source, destination, mode)."""
    parts = spec.split(":")
    if len(parts) == 1:
        src, dst, mode = "", parts[0], ""
    elif len(parts) == 2:
        src, dst, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        src, dst, mode = parts
    else:
        raise _err(f"invalid volume specification: '{spec}'")
    if not dst.startswith("/"):
        raise _err(f"invalid volume specification: '{spec}': invalid mount config for type "
                   f"\"bind\": invalid mount path: '{dst}' mount path must be absolute")
    if dst == "/":
        raise _err(f"invalid volume specification: '{spec}': destination can't be '/'")
    for m in mode.split(",") if mode else []:
        if m not in ("ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave",
                     "private", "rprivate", "consistent", "cached", "delegated"):
            raise _err(f"invalid mode: {mode}")
    return src, os.path.normpath(dst), mode


def valid_volume_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name))


# ---------------------------------------------------------------------------------------------
# The OCI spec


def signal_number(sig: str | int | None, default: int = 15) -> int:
    import signal as _signal

    if sig is None or sig == "":
        return default
    if isinstance(sig, int):
        return sig
    s = str(sig).strip().upper()
    if s.isdigit():
        n = int(s)
        if not 0 < n < 65:
            raise _err(f"Invalid signal: {sig}")
        return n
    if not s.startswith("SIG"):
        s = "SIG" + s
    try:
        return int(getattr(_signal, s))
    except AttributeError:
        raise _err(f"Invalid signal: {sig}") from None


@dataclass
class SpecInputs:
    """Everything the translation needs beyond Config/HostConfig (resolved by the manager)."""

    cid: str
    rootfs: str
    hostname: str
    user: tuple[int, int, list[int]]  # uid, gid, additional gids
    mounts: list[MountPoint]
    etc_files: dict[str, str]  # path in container -> host path (hostname, hosts, resolv.conf)
    netns: str | None  # None: new netns; "host": none; a path: join
    cgroups_path: str
    init_binary: str | None = None
    pid_ns: str | None = None  # None: new; "host"; a path
    ipc_ns: str | None = None
    uts_host: bool = False


def resources(hc: dict, update: bool = False) -> dict:
    """docker HostConfig resources -> OCI linux.resources (update: unlimited values explicit)."""
    r: dict = {"devices": [{"allow": False, "access": "rwm"}]}
    if hc.get("Privileged"):
        r["devices"] = [{"allow": True, "access": "rwm"}]
    mem: dict = {}
    if hc.get("Memory"):
        mem["limit"] = hc["Memory"]
    swap = hc.get("MemorySwap") or 0
    if swap == -1 and hc.get("Memory"):
        mem["swap"] = -1
    elif swap > 0:
        mem["swap"] = swap
    if hc.get("MemoryReservation"):
        mem["reservation"] = hc["MemoryReservation"]
    sw = hc.get("MemorySwappiness")
    if sw is not None and sw != -1:
        mem["swappiness"] = sw
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        r["memory"] = mem
    cpu: dict = {}
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = hc["NanoCpus"] * 100000 // 10**9
    if hc.get("CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]
    if hc.get("CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        r["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids is not None and pids > 0:
        r["pids"] = {"limit": pids}
    elif pids is not None and update:
        r["pids"] = {"limit": -1}  # docker: <= 0 is unlimited (back to "max" on update)
    if hc.get("BlkioWeight"):
        r["blockIO"] = {"weight": hc["BlkioWeight"]}
    return r


def build_spec(config: dict, hc: dict, inp: SpecInputs) -> dict:
    """The OCI config.json for a container whose Config is already merged with its image's."""
    args = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if hc.get("Init") and inp.init_binary:
        args = [INIT_PATH, "--", *args]
    env = list(config.get("Env") or [])
    keys = {e.split("=", 1)[0] for e in env}
    if "PATH" not in keys:
        env.insert(0, DEFAULT_PATH)
    if "HOSTNAME" not in keys:
        env.append(f"HOSTNAME={inp.hostname}")
    if config.get("Tty") and "TERM" not in keys:
        env.append("TERM=xterm")
    caps = capabilities(hc)
    nnp = False
    seccomp: dict | None | str = "default"
    for opt in hc.get("SecurityOpt") or []:
        k, v = parse_security_opt(opt)
        if k == "no-new-privileges":
            nnp = v == "true"
        elif k == "seccomp":
            if v == "unconfined":
                seccomp = None
            else:
                import json

                seccomp = json.loads(v)
    if hc.get("Privileged"):
        seccomp = None
    uid, gid, extra = inp.user
    process: dict = {
        "terminal": bool(config.get("Tty")),
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": env,
        "cwd": config.get("WorkingDir") or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": nnp,
    }
    if extra:
        process["user"]["additionalGids"] = extra
    if hc.get("OomScoreAdj"):
        process["oomScoreAdj"] = hc["OomScoreAdj"]
    rlimits = [
        {"type": "RLIMIT_" + u["Name"].upper(), "soft": u["Soft"], "hard": u["Hard"]}
        for u in hc.get("Ulimits") or []
    ]
    if rlimits:
        process["rlimits"] = rlimits
    if config.get("Tty") and hc.get("ConsoleSize"):
        h, w = (hc["ConsoleSize"] + [0, 0])[:2]
        if h and w:
            process["consoleSize"] = {"height": h, "width": w}
    shm = hc.get("ShmSize") or DEFAULT_SHM
    mounts: list[dict] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]},
    ]  # fmt: skip
    if hc.get("Privileged"):
        mounts[3]["options"] = ["nosuid", "noexec", "nodev"]
        mounts[4]["options"] = ["nosuid", "noexec", "nodev"]
    user_dests = {m.destination for m in inp.mounts}
    ro_root = bool(hc.get("ReadonlyRootfs"))
    for dest, src in sorted(inp.etc_files.items()):
        if dest in user_dests:
            continue
        mounts.append({"destination": dest, "type": "bind", "source": src,
                       "options": ["rbind", "rprivate", "ro" if ro_root else "rw"]})
    for m in sorted(inp.mounts, key=lambda m: m.destination.count("/")):
        if m.type == "tmpfs":
            mounts = [x for x in mounts if x["destination"] != m.destination]
            mounts.append({"destination": m.destination, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", *m.options]})
            continue
        prop = m.propagation or "rprivate"
        mounts = [x for x in mounts if x["destination"] != m.destination]
        mounts.append({"destination": m.destination, "type": "bind", "source": m.source,
                       "options": ["rbind", prop, "rw" if m.rw else "ro"]})
    if hc.get("Init") and inp.init_binary:
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": inp.init_binary,
                       "options": ["bind", "ro", "rprivate"]})
    for path, opts in (hc.get("Tmpfs") or {}).items():
        mounts = [x for x in mounts if x["destination"] != path]
        extra_opts = [o for o in (opts or "").split(",") if o]
        mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "noexec", *extra_opts]})
    namespaces: list[dict] = [{"type": "mount"}]
    if inp.netns != "host":
        ns: dict = {"type": "network"}
        if inp.netns:
            ns["path"] = inp.netns
        namespaces.append(ns)
    if inp.pid_ns != "host":
        ns = {"type": "pid"}
        if inp.pid_ns:
            ns["path"] = inp.pid_ns
        namespaces.append(ns)
    if inp.ipc_ns != "host":
        ns = {"type": "ipc"}
        if inp.ipc_ns:
            ns["path"] = inp.ipc_ns
        namespaces.append(ns)
    if not inp.uts_host:
        namespaces.append({"type": "uts"})
    if (hc.get("CgroupnsMode") or "private") == "private":
        namespaces.append({"type": "cgroup"})
    linux: dict = {
        "resources": resources(hc),
        "cgroupsPath": inp.cgroups_path,
        "namespaces": namespaces,
    }
    if not hc.get("Privileged"):
        linux["maskedPaths"] = list(DOCKER_MASKED_PATHS)
        linux["readonlyPaths"] = list(DOCKER_READONLY_PATHS)
    if hc.get("Sysctls"):
        linux["sysctl"] = dict(hc["Sysctls"])
    if hc.get("Devices"):
        devs = [device_spec(d) for d in hc["Devices"]]
        linux["devices"] = [dv for dv, _ in devs]
        linux["resources"]["devices"] += [rule for _, rule in devs]
    annotations: dict[str, str] = {}
    if isinstance(seccomp, dict):
        linux["seccomp"] = seccomp
    elif seccomp is None:
        annotations["org.skiff.seccomp"] = "unconfined"
    # "default": no linux.seccomp, libcontainer applies docker's default profile itself (with
    # its capability-dependent rules, compiled once and cached)
    spec: dict = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": inp.rootfs, "readonly": ro_root},
        "mounts": mounts,
        "linux": linux,
    }
    if annotations:
        spec["annotations"] = annotations
    if not inp.uts_host:
        spec["hostname"] = inp.hostname
        if config.get("Domainname"):
            spec["domainname"] = config["Domainname"]
    return spec


def default_seccomp_profile() -> dict | None:
    """Docker's default profile, as libcontainer ships it (engine/libcontainer/seccomp_default.json)."""
    global _DEFAULT_SECCOMP
    if _DEFAULT_SECCOMP is None:
        import json

        path = Path(__file__).resolve().parent.parent / "libcontainer" / "seccomp_default.json"
        try:
            _DEFAULT_SECCOMP = json.loads(path.read_text())
        except (OSError, ValueError):
            _DEFAULT_SECCOMP = {}
    return copy.deepcopy(_DEFAULT_SECCOMP) or None


_DEFAULT_SECCOMP: dict | None = None


# ---------------------------------------------------------------------------------------------
# Users


def _parse_db(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(user: str, passwd: str, group: str, group_add: Iterable[str] = ()
                 ) -> tuple[int, int, list[int]]:
    """docker's user spec (name|uid[:group|gid]) against the text of the container's
    /etc/passwd and /etc/group. The caller reads them as the container sees them, never by
    host path (a container's symlink or fifo there must not reach or block the daemon)."""
    passwd_db, groups = _parse_db(passwd), _parse_db(group)
    uname, _, gname = (user or "").partition(":")
    uid, gid, name = 0, 0, "root"
    if uname:
        if uname.isdigit():
            uid = int(uname)
            name = ""
            for p in passwd_db:
                if len(p) > 3 and p[2] == uname:
                    gid, name = int(p[3]), p[0]
                    break
        else:
            for p in passwd_db:
                if p[0] == uname and len(p) > 3:
                    uid, gid, name = int(p[2]), int(p[3]), p[0]
                    break
            else:
                raise _err(
                    f"unable to find user {uname}: no matching entries in passwd file"
                )
    if gname:
        if gname.isdigit():
            gid = int(gname)
        else:
            for g in groups:
                if g[0] == gname and len(g) > 2:
                    gid = int(g[2])
                    break
            else:
                raise _err(f"unable to find group {gname}: no matching entries in group file")
    extra: list[int] = []
    if name and not gname:
        for g in groups:
            if len(g) > 3 and name in g[3].split(",") and int(g[2]) != gid:
                extra.append(int(g[2]))
    for ga in group_add:
        if ga.isdigit():
            extra.append(int(ga))
        else:
            for g in groups:
                if g[0] == ga and len(g) > 2:
                    extra.append(int(g[2]))
                    break
            else:
                raise _err(f"Unable to find group {ga}")
    return uid, gid, extra
