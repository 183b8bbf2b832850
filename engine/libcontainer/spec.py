"""OCI runtime-spec config.json: a typed model and the validator that builds it.

Validation happens once, here, before anything is created: every error is a ConfigError naming
the field (`linux.uidMappings[0].size`) and the value. The model is plain classes with __slots__
rather than dataclasses because `skiff-runc` parses it on every container start and importing
dataclasses (inspect, ...) costs more than the rest of the start path's imports together.
linux.resources is parsed by the cgroups package (Resources.from_oci), imported lazily.
"""

from __future__ import annotations

import os

from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing at run time costs milliseconds per container start
    from typing import Any

NAMESPACES = {
    "pid": 0x20000000, "network": 0x40000000, "mount": 0x00020000, "ipc": 0x08000000,
    "uts": 0x04000000, "user": 0x10000000, "cgroup": 0x02000000, "time": 0x00000080,
}
# /proc/<pid>/ns/<name> for each spec namespace type
NS_PROC_NAME = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
                "user": "user", "cgroup": "cgroup", "time": "time"}

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
RLIM_INFINITY = 2**64 - 1

# mount(2) flags by option name: (set?, flag)
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "defaults": (True, 0), "ro": (True, 1), "rw": (False, 1), "nosuid": (True, 2),
    "suid": (False, 2), "nodev": (True, 4), "dev": (False, 4), "noexec": (True, 8),
    "exec": (False, 8), "sync": (True, 16), "async": (False, 16), "remount": (True, 32),
    "mand": (True, 64), "nomand": (False, 64), "dirsync": (True, 128),
    "nosymfollow": (True, 256), "symfollow": (False, 256), "noatime": (True, 1024),
    "atime": (False, 1024), "nodiratime": (True, 2048), "diratime": (False, 2048),
    "bind": (True, 4096), "rbind": (True, 4096 | 16384), "relatime": (True, 1 << 21),
    "norelatime": (False, 1 << 21), "strictatime": (True, 1 << 24),
    "nostrictatime": (False, 1 << 24), "lazytime": (True, 1 << 25),
    "nolazytime": (False, 1 << 25), "silent": (True, 32768), "loud": (False, 32768),
}
PROPAGATION = {
    "private": 1 << 18, "rprivate": (1 << 18) | 16384, "shared": 1 << 20,
    "rshared": (1 << 20) | 16384, "slave": 1 << 19, "rslave": (1 << 19) | 16384,
    "unbindable": 1 << 17, "runbindable": (1 << 17) | 16384,
}
IGNORED_MOUNT_OPTIONS = {"tmpcopyup", "rro", "rrw"}  # runc extensions we accept and ignore

SECCOMP_ACTIONS = {
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
}
SECCOMP_OPS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
               "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}
SECCOMP_ARCHES = {
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
}
ROOTFS_PROPAGATION = {"private", "rprivate", "slave", "rslave", "shared", "rshared",
                      "unbindable", "runbindable"}
MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to the kernel
MAX_ID_MAP_LINES = 340  # kernel/user_namespace.c UID_GID_MAP_MAX_EXTENTS
HOST_NAME_MAX = 64


class _Model:
    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)


class User(_Model):
    __slots__ = ("uid", "gid", "umask", "additional_gids")

    def __init__(self, uid: int = 0, gid: int = 0, umask: int | None = None,
                 additional_gids: list[int] | None = None) -> None:
        self.uid, self.gid, self.umask = uid, gid, umask
        self.additional_gids = additional_gids or []


class Capabilities(_Model):
    """The five sets as bitmasks (bit n = capability n)."""

    __slots__ = ("bounding", "effective", "permitted", "inheritable", "ambient")

    def __init__(self, bounding: int = 0, effective: int = 0, permitted: int = 0,
                 inheritable: int = 0, ambient: int = 0) -> None:
        self.bounding, self.effective, self.permitted = bounding, effective, permitted
        self.inheritable, self.ambient = inheritable, ambient


class Rlimit(_Model):
    __slots__ = ("type", "resource", "soft", "hard")

    def __init__(self, type: str, resource: int, soft: int, hard: int) -> None:
        self.type, self.resource, self.soft, self.hard = type, resource, soft, hard


class Process(_Model):
    __slots__ = ("terminal", "console_size", "user", "args", "env", "cwd", "capabilities",
                 "rlimits", "no_new_privileges", "oom_score_adj", "apparmor_profile")

    def __init__(self, args: list[str], env: list[str], cwd: str, user: User,
                 capabilities: Capabilities, rlimits: list[Rlimit], terminal: bool = False,
                 console_size: tuple[int, int] | None = None, no_new_privileges: bool = False,
                 oom_score_adj: int | None = None, apparmor_profile: str = "") -> None:
        self.args, self.env, self.cwd, self.user = args, env, cwd, user
        self.capabilities, self.rlimits, self.terminal = capabilities, rlimits, terminal
        self.console_size, self.no_new_privileges = console_size, no_new_privileges
        self.oom_score_adj, self.apparmor_profile = oom_score_adj, apparmor_profile

    def getenv(self, key: str) -> str | None:
        for e in self.env:
            k, _, v = e.partition("=")
            if k == key:
                return v
        return None


class Mount(_Model):
    """A mount: `flags` for mount(2), `propagation` applied after it, the rest as `data`."""

    __slots__ = ("destination", "type", "source", "options", "flags", "clear_flags",
                 "propagation", "data")

    def __init__(self, destination: str, type: str, source: str, options: list[str],
                 flags: int, clear_flags: int, propagation: list[int], data: str) -> None:
        self.destination, self.type, self.source, self.options = destination, type, source, options
        self.flags, self.clear_flags, self.propagation, self.data = (
            flags, clear_flags, propagation, data)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & 4096)


class IDMap(_Model):
    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, container_id: int, host_id: int, size: int) -> None:
        self.container_id, self.host_id, self.size = container_id, host_id, size


class Device(_Model):
    __slots__ = ("path", "type", "major", "minor", "file_mode", "uid", "gid")

    def __init__(self, path: str, type: str, major: int, minor: int, file_mode: int,
                 uid: int, gid: int) -> None:
        self.path, self.type, self.major, self.minor = path, type, major, minor
        self.file_mode, self.uid, self.gid = file_mode, uid, gid


class Linux(_Model):
    __slots__ = ("namespaces", "uid_mappings", "gid_mappings", "resources", "cgroups_path",
                 "sysctl", "seccomp", "masked_paths", "readonly_paths", "rootfs_propagation",
                 "devices")

    def __init__(self) -> None:
        self.namespaces: dict[str, str | None] = {}  # type -> path (None: a new one)
        self.uid_mappings: list[IDMap] = []
        self.gid_mappings: list[IDMap] = []
        self.resources: Any = None  # cgroups.Resources
        self.cgroups_path: str = ""
        self.sysctl: dict[str, str] = {}
        self.seccomp: dict | None = None
        self.masked_paths: list[str] = []
        self.readonly_paths: list[str] = []
        self.rootfs_propagation: int = 0
        self.devices: list[Device] = []

    def new_ns_flags(self) -> int:
        flags = 0
        for t, path in self.namespaces.items():
            if path is None:
                flags |= NAMESPACES[t]
        return flags


class Spec(_Model):
    __slots__ = ("oci_version", "bundle", "root_path", "root_readonly", "process", "hostname",
                 "domainname", "mounts", "linux", "annotations", "hooks", "raw", "raw_bytes")

    def __init__(self) -> None:
        self.oci_version = ""
        self.bundle = ""
        self.root_path = ""
        self.root_readonly = False
        self.process: Process | None = None
        self.hostname: str | None = None
        self.domainname: str | None = None
        self.mounts: list[Mount] = []
        self.linux = Linux()
        self.annotations: dict[str, str] = {}
        self.hooks: dict[str, list[dict]] = {}
        self.raw: dict = {}
        self.raw_bytes: bytes | None = None  # config.json as read (state keeps a copy)


# ---------------------------------------------------------------------------- validation

def _t(value: Any, typ: type | tuple[type, ...], field: str, what: str) -> Any:
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(field, value, f"must be {what}")
    return value


def _int(value: Any, field: str, lo: int | None = None, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(field, value, "must be an integer")
    if lo is not None and value < lo:
        raise ConfigError(field, value, f"must be >= {lo}")
    if hi is not None and value > hi:
        raise ConfigError(field, value, f"must be <= {hi}")
    return value


def _abs(value: Any, field: str) -> str:
    _t(value, str, field, "a string")
    if not value.startswith("/"):
        raise ConfigError(field, value, "must be an absolute path")
    return value


def _strlist(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    _t(value, list, field, "a list of strings")
    for i, s in enumerate(value):
        _t(s, str, f"{field}[{i}]", "a string")
    return value


def parse_mount_options(options: list[str], field: str = "mounts[].options"
                        ) -> tuple[int, int, list[int], str]:
    """Mount options -> (flags to set, flags to clear, propagation flags, data string)."""
    flags = clear = 0
    prop: list[int] = []
    data: list[str] = []
    for o in options:
        if o in MOUNT_FLAGS:
            on, f = MOUNT_FLAGS[o]
            if on:
                flags |= f
                clear &= ~f
            else:
                flags &= ~f
                clear |= f
        elif o in PROPAGATION:
            prop.append(PROPAGATION[o])
        elif o in IGNORED_MOUNT_OPTIONS:
            continue
        elif o.startswith("idmap") or o.startswith("ridmap"):
            raise ConfigError(field, o, "idmapped mounts are not supported")
        else:
            data.append(o)
    return flags, clear, prop, ",".join(data)


def _process(p: Any, f: str = "process") -> Process:
    from .capabilities import to_mask

    _t(p, dict, f, "an object")
    args = _strlist(p.get("args"), f"{f}.args")
    if not args:
        raise ConfigError(f"{f}.args", p.get("args"), "must name the program to run")
    if p.get("commandLine") is not None:
        raise ConfigError(f"{f}.commandLine", p["commandLine"], "is Windows-only")
    env = _strlist(p.get("env"), f"{f}.env")
    for i, e in enumerate(env):
        if "=" not in e or e.startswith("="):
            raise ConfigError(f"{f}.env[{i}]", e, "must be KEY=value")
    cwd = _abs(p.get("cwd", "/"), f"{f}.cwd")
    u = p.get("user") or {}
    _t(u, dict, f"{f}.user", "an object")
    if u.get("username"):
        raise ConfigError(f"{f}.user.username", u["username"], "is Windows-only")
    gids = u.get("additionalGids") or []
    _t(gids, list, f"{f}.user.additionalGids", "a list of gids")
    user = User(
        uid=_int(u.get("uid", 0), f"{f}.user.uid", 0, MAX_ID),
        gid=_int(u.get("gid", 0), f"{f}.user.gid", 0, MAX_ID),
        umask=None if u.get("umask") is None else _int(u["umask"], f"{f}.user.umask", 0, 0o777),
        additional_gids=[_int(g, f"{f}.user.additionalGids[{i}]", 0, MAX_ID)
                         for i, g in enumerate(gids)],
    )
    c = p.get("capabilities")
    if c is None:
        from .defaults import DOCKER_DEFAULT_CAPS

        m = to_mask(DOCKER_DEFAULT_CAPS)
        caps = Capabilities(m, m, m, 0, 0)
    else:
        _t(c, dict, f"{f}.capabilities", "an object")
        masks = {}
        for s in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            names = _strlist(c.get(s), f"{f}.capabilities.{s}")
            for i, n in enumerate(names):
                try:
                    to_mask([n])
                except KeyError:
                    raise ConfigError(f"{f}.capabilities.{s}[{i}]", n,
                                      "unknown capability") from None
            masks[s] = to_mask(names)
        caps = Capabilities(**masks)
    rl: list[Rlimit] = []
    seen: set[str] = set()
    for i, r in enumerate(p.get("rlimits") or []):
        rf = f"{f}.rlimits[{i}]"
        _t(r, dict, rf, "an object")
        typ = r.get("type")
        if typ not in RLIMITS:
            raise ConfigError(f"{rf}.type", typ, "unknown rlimit")
        if typ in seen:
            raise ConfigError(f"{rf}.type", typ, "is set twice")
        seen.add(typ)
        soft = _int(r.get("soft"), f"{rf}.soft", 0, RLIM_INFINITY)
        hard = _int(r.get("hard"), f"{rf}.hard", 0, RLIM_INFINITY)
        if soft > hard:
            raise ConfigError(f"{rf}.soft", soft, f"is above the hard limit {hard}")
        rl.append(Rlimit(typ, RLIMITS[typ], soft, hard))
    size = None
    cs = p.get("consoleSize")
    if cs is not None:
        _t(cs, dict, f"{f}.consoleSize", "an object")
        size = (_int(cs.get("height", 0), f"{f}.consoleSize.height", 0, 65535),
                _int(cs.get("width", 0), f"{f}.consoleSize.width", 0, 65535))
    oom = p.get("oomScoreAdj")
    if oom is not None:
        oom = _int(oom, f"{f}.oomScoreAdj", -1000, 1000)
    return Process(
        args=args, env=env, cwd=cwd, user=user, capabilities=caps, rlimits=rl,
        terminal=bool(_t(p.get("terminal", False), bool, f"{f}.terminal", "true or false")),
        console_size=size,
        no_new_privileges=bool(_t(p.get("noNewPrivileges", False), bool,
                                  f"{f}.noNewPrivileges", "true or false")),
        oom_score_adj=oom, apparmor_profile=p.get("apparmorProfile") or "",
    )


def load_process(p: Any) -> Process:
    """Validate an OCI `process` object alone (for exec)."""
    return _process(p)


def _idmaps(v: Any, field: str) -> list[IDMap]:
    if v is None:
        return []
    _t(v, list, field, "a list of mappings")
    if len(v) > MAX_ID_MAP_LINES:
        raise ConfigError(field, len(v), f"the kernel takes at most {MAX_ID_MAP_LINES} lines")
    out: list[IDMap] = []
    for i, m in enumerate(v):
        mf = f"{field}[{i}]"
        _t(m, dict, mf, "an object")
        cid = _int(m.get("containerID"), f"{mf}.containerID", 0, MAX_ID)
        hid = _int(m.get("hostID"), f"{mf}.hostID", 0, MAX_ID)
        size = _int(m.get("size"), f"{mf}.size", 1, MAX_ID + 1)
        if cid + size > MAX_ID + 1 or hid + size > MAX_ID + 1:
            raise ConfigError(f"{mf}.size", size, "the range runs past the largest id")
        for j, o in enumerate(out):
            if cid < o.container_id + o.size and o.container_id < cid + size:
                raise ConfigError(f"{mf}.containerID", cid, f"overlaps {field}[{j}]")
            if hid < o.host_id + o.size and o.host_id < hid + size:
                raise ConfigError(f"{mf}.hostID", hid, f"overlaps {field}[{j}]")
        out.append(IDMap(cid, hid, size))
    return out


_NET_SYSCTL = ("net.",)
_IPC_SYSCTL = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
               "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
               "fs.mqueue.")


def _seccomp(s: Any, field: str = "linux.seccomp") -> dict:
    _t(s, dict, field, "an object")
    da = s.get("defaultAction")
    if da not in SECCOMP_ACTIONS:
        raise ConfigError(f"{field}.defaultAction", da, "unknown seccomp action")
    if s.get("listenerPath"):
        raise ConfigError(f"{field}.listenerPath", s["listenerPath"],
                          "seccomp notification is not supported")
    for i, a in enumerate(s.get("architectures") or []):
        if a not in SECCOMP_ARCHES:
            raise ConfigError(f"{field}.architectures[{i}]", a, "unknown architecture")
    for i, sc in enumerate(s.get("syscalls") or []):
        sf = f"{field}.syscalls[{i}]"
        _t(sc, dict, sf, "an object")
        if not _strlist(sc.get("names"), f"{sf}.names"):
            raise ConfigError(f"{sf}.names", sc.get("names"), "must name at least one syscall")
        if sc.get("action") not in SECCOMP_ACTIONS:
            raise ConfigError(f"{sf}.action", sc.get("action"), "unknown seccomp action")
        if sc.get("errnoRet") is not None:
            _int(sc["errnoRet"], f"{sf}.errnoRet", 0, 4095)
        args = sc.get("args") or []
        if len(args) > 6:
            raise ConfigError(f"{sf}.args", len(args), "a syscall has at most 6 arguments")
        for j, a in enumerate(args):
            af = f"{sf}.args[{j}]"
            _t(a, dict, af, "an object")
            _int(a.get("index"), f"{af}.index", 0, 5)
            _int(a.get("value"), f"{af}.value", 0, 2**64 - 1)
            if a.get("valueTwo") is not None:
                _int(a["valueTwo"], f"{af}.valueTwo", 0, 2**64 - 1)
            if a.get("op") not in SECCOMP_OPS:
                raise ConfigError(f"{af}.op", a.get("op"), "unknown comparison")
    return s


def load(config: dict, bundle: str, *, check_rootfs: bool = True) -> Spec:
    """Validate a config.json dict; returns the model. Raises ConfigError (field + value)."""
    _t(config, dict, "config", "a JSON object")
    s = Spec()
    s.raw = config
    s.bundle = bundle = os.path.abspath(bundle)
    v = config.get("ociVersion")
    if not isinstance(v, str) or not v.startswith("1."):
        raise ConfigError("ociVersion", v, "must be a 1.x runtime-spec version")
    s.oci_version = v
    root = _t(config.get("root"), dict, "root", "an object with a path")
    rp = _t(root.get("path"), str, "root.path", "a path")
    s.root_path = rp if os.path.isabs(rp) else os.path.join(bundle, rp)
    if check_rootfs and not os.path.isdir(s.root_path):
        raise ConfigError("root.path", rp, f"no such directory ({s.root_path})")
    s.root_readonly = bool(root.get("readonly", False))
    if config.get("process") is not None:
        s.process = _process(config["process"])
    lx = _t(config.get("linux"), dict, "linux", "an object (only Linux containers are supported)")
    L = s.linux
    for i, n in enumerate(lx.get("namespaces") or []):
        nf = f"linux.namespaces[{i}]"
        _t(n, dict, nf, "an object")
        t = n.get("type")
        if t not in NAMESPACES:
            raise ConfigError(f"{nf}.type", t, "unknown namespace type")
        if t in L.namespaces:
            raise ConfigError(f"{nf}.type", t, "is listed twice")
        path = n.get("path") or None
        if path is not None:
            _abs(path, f"{nf}.path")
            if not os.path.exists(path):
                raise ConfigError(f"{nf}.path", path, "does not exist")
        L.namespaces[t] = path
    if "mount" not in L.namespaces:
        raise ConfigError("linux.namespaces", [n for n in L.namespaces],
                          "a mount namespace is required")
    L.uid_mappings = _idmaps(lx.get("uidMappings"), "linux.uidMappings")
    L.gid_mappings = _idmaps(lx.get("gidMappings"), "linux.gidMappings")
    if L.namespaces.get("user", 0) is None:
        if not L.uid_mappings or not L.gid_mappings:
            raise ConfigError("linux.uidMappings", lx.get("uidMappings"),
                              "a new user namespace needs uidMappings and gidMappings")
    elif L.uid_mappings or L.gid_mappings:
        raise ConfigError("linux.uidMappings", lx.get("uidMappings"),
                          "mappings need a new user namespace")
    hn = config.get("hostname")
    if hn is not None:
        _t(hn, str, "hostname", "a string")
        if len(hn.encode()) > HOST_NAME_MAX:
            raise ConfigError("hostname", hn, f"longer than {HOST_NAME_MAX} bytes")
        if hn and L.namespaces.get("uts", 0) is not None:
            raise ConfigError("hostname", hn, "setting it needs a new uts namespace")
        s.hostname = hn
    dn = config.get("domainname")
    if dn:
        _t(dn, str, "domainname", "a string")
        if len(dn.encode()) > HOST_NAME_MAX:
            raise ConfigError("domainname", dn, f"longer than {HOST_NAME_MAX} bytes")
        if L.namespaces.get("uts", 0) is not None:
            raise ConfigError("domainname", dn, "setting it needs a new uts namespace")
        s.domainname = dn
    for i, m in enumerate(config.get("mounts") or []):
        mf = f"mounts[{i}]"
        _t(m, dict, mf, "an object")
        dest = _abs(m.get("destination"), f"{mf}.destination")
        if os.path.normpath(dest) == "/":
            raise ConfigError(f"{mf}.destination", dest, "cannot mount over the root")
        opts = _strlist(m.get("options"), f"{mf}.options")
        typ = m.get("type") or ""
        _t(typ, str, f"{mf}.type", "a string")
        src = m.get("source") or ""
        _t(src, str, f"{mf}.source", "a string")
        flags, clear, prop, data = parse_mount_options(opts, f"{mf}.options")
        if typ == "bind":
            flags |= 4096
        if flags & 4096:
            if not src:
                raise ConfigError(f"{mf}.source", src, "a bind mount needs a source")
            if not os.path.isabs(src):
                src = os.path.join(bundle, src)
            if not os.path.exists(src):
                raise ConfigError(f"{mf}.source", m.get("source"), "does not exist")
        elif not typ:
            raise ConfigError(f"{mf}.type", typ, "needed for a non-bind mount")
        s.mounts.append(Mount(dest, typ, src, opts, flags, clear, prop, data))
    res = lx.get("resources")
    if res is not None:
        from .cgroups import Resources

        L.resources = Resources.from_oci(res)
    cp = lx.get("cgroupsPath") or ""
    _t(cp, str, "linux.cgroupsPath", "a string")
    if ".." in cp.split("/"):
        raise ConfigError("linux.cgroupsPath", cp, "must not contain '..'")
    L.cgroups_path = cp
    sysctl = lx.get("sysctl") or {}
    _t(sysctl, dict, "linux.sysctl", "an object")
    for k, val in sysctl.items():
        _t(val, str, f"linux.sysctl.{k}", "a string")
        if "/" in k or ".." in k:
            raise ConfigError("linux.sysctl", k, "not a sysctl name")
        if k.startswith(_NET_SYSCTL):
            if L.namespaces.get("network", 0) is not None:
                raise ConfigError(f"linux.sysctl.{k}", val, "needs a new network namespace")
        elif k.startswith(_IPC_SYSCTL):
            if L.namespaces.get("ipc", 0) is not None:
                raise ConfigError(f"linux.sysctl.{k}", val, "needs a new ipc namespace")
        elif k in ("kernel.hostname", "kernel.domainname"):
            if L.namespaces.get("uts", 0) is not None:
                raise ConfigError(f"linux.sysctl.{k}", val, "needs a new uts namespace")
        else:
            raise ConfigError(f"linux.sysctl.{k}", val,
                              "is not namespaced: it would change the host")
    L.sysctl = sysctl
    if lx.get("seccomp") is not None:
        L.seccomp = _seccomp(lx["seccomp"])
    L.masked_paths = [_abs(p, f"linux.maskedPaths[{i}]")
                      for i, p in enumerate(lx.get("maskedPaths") or [])]
    L.readonly_paths = [_abs(p, f"linux.readonlyPaths[{i}]")
                        for i, p in enumerate(lx.get("readonlyPaths") or [])]
    rprop = lx.get("rootfsPropagation")
    if rprop:
        if rprop not in ROOTFS_PROPAGATION:
            raise ConfigError("linux.rootfsPropagation", rprop, "unknown propagation")
        L.rootfs_propagation = PROPAGATION[rprop]
    for i, d in enumerate(lx.get("devices") or []):
        df = f"linux.devices[{i}]"
        _t(d, dict, df, "an object")
        path = _abs(d.get("path"), f"{df}.path")
        typ = d.get("type")
        if typ not in ("c", "b", "u", "p"):
            raise ConfigError(f"{df}.type", typ, "must be c, b, u or p")
        major = minor = 0
        if typ != "p":
            major = _int(d.get("major"), f"{df}.major", 0, 4095)
            minor = _int(d.get("minor"), f"{df}.minor", 0, 2**20 - 1)
        L.devices.append(Device(path, typ, major, minor,
                                _int(d.get("fileMode", 0o666), f"{df}.fileMode", 0, 0o7777),
                                _int(d.get("uid", 0), f"{df}.uid", 0, MAX_ID),
                                _int(d.get("gid", 0), f"{df}.gid", 0, MAX_ID)))
    ann = config.get("annotations") or {}
    _t(ann, dict, "annotations", "an object")
    s.annotations = ann
    hooks = config.get("hooks") or {}
    _t(hooks, dict, "hooks", "an object")
    for name, hl in hooks.items():
        if name not in ("prestart", "createRuntime", "createContainer", "startContainer",
                        "poststart", "poststop"):
            raise ConfigError("hooks", name, "unknown hook")
        for i, h in enumerate(hl or []):
            _abs((h or {}).get("path"), f"hooks.{name}[{i}].path")
    s.hooks = hooks
    return s


def load_bundle(bundle: str) -> Spec:
    """Read <bundle>/config.json and validate it."""
    from . import fastjson

    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
        config = fastjson.loads(data)
    except FileNotFoundError:
        raise ConfigError("bundle", bundle, "has no config.json") from None
    except ValueError as e:
        raise ConfigError("config.json", path, f"is not valid JSON: {e}") from None
    s = load(config, bundle)
    s.raw_bytes = data
    return s
