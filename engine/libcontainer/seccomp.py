"""Seccomp: Docker's default profile, translated to OCI linux.seccomp, compiled with libseccomp.

Compiling Docker's profile through libseccomp (pyseccomp) takes milliseconds and importing the
binding more, on every container start. So the OCI profile is compiled once into classic BPF
(seccomp_export_bpf), cached on disk keyed by a hash of the profile, and later starts only load
the cached program with prctl(PR_SET_SECCOMP) through syscalls.py.
"""

from __future__ import annotations

import os

from . import fastjson as json

PROFILE_FILE = os.path.join(os.path.dirname(__file__), "seccomp_default.json")
CACHE_DIR = os.environ.get("SKIFF_SECCOMP_CACHE", "/run/skiff-runc/seccomp-cache")

# Docker's arch names (runtime.GOARCH) -> the libseccomp arch of that machine
_GOARCH_SCMP = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64",
                "s390x": "SCMP_ARCH_S390X", "ppc64le": "SCMP_ARCH_PPC64LE",
                "riscv64": "SCMP_ARCH_RISCV64", "386": "SCMP_ARCH_X86", "arm": "SCMP_ARCH_ARM"}
_UNAME_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x", "ppc64le": "ppc64le",
                 "riscv64": "riscv64", "i686": "386", "armv7l": "arm"}


def native_goarch() -> str:
    return _UNAME_GOARCH.get(os.uname().machine, os.uname().machine)


def _kernel_version() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def docker_default(caps: list[str] | set[str], goarch: str | None = None,
                   kernel: tuple[int, int] | None = None) -> dict:
    """Docker's default profile for a container with capabilities `caps`, in OCI form.

    Docker's profile has conditional entries (includes/excludes by capability, architecture and
    minimum kernel); like moby's setupSeccomp this resolves them for one container.
    """
    with open(PROFILE_FILE, "rb") as f:
        prof = json.loads(f.read())
    arch = goarch or native_goarch()
    kernel = kernel or _kernel_version()
    capset = {c if c.startswith("CAP_") else "CAP_" + c for c in (x.upper() for x in caps)}
    arches: list[str] = []
    native = _GOARCH_SCMP.get(arch)
    for a in prof.get("archMap") or []:
        if a["architecture"] == native:
            arches = [a["architecture"], *(a.get("subArchitectures") or [])]
    out_calls = []
    for sc in prof["syscalls"]:
        inc, exc = sc.get("includes") or {}, sc.get("excludes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        if inc.get("caps") and not all(c in capset for c in inc["caps"]):
            continue
        if exc.get("caps") and any(c in capset for c in exc["caps"]):
            continue
        if inc.get("minKernel"):
            want = tuple(int(x) for x in inc["minKernel"].split(".")[:2])
            if kernel < want:
                continue
        entry: dict = {"names": sc["names"], "action": sc["action"]}
        if sc.get("args"):
            entry["args"] = [{k: v for k, v in a.items() if v or k != "valueTwo"}
                             for a in sc["args"]]
        if sc.get("errnoRet") is not None:
            entry["errnoRet"] = sc["errnoRet"]
        out_calls.append(entry)
    out: dict = {"defaultAction": prof["defaultAction"]}
    if prof.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = prof["defaultErrnoRet"]
    out["architectures"] = arches
    out["syscalls"] = out_calls
    return out


def _action(name: str, errno_ret: int | None, default_errno: int = 1) -> int:
    import pyseccomp as ps

    if name == "SCMP_ACT_ALLOW":
        return ps.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return ps.ERRNO(default_errno if errno_ret is None else errno_ret)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return ps.KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return ps.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return ps.TRAP
    if name == "SCMP_ACT_TRACE":
        return ps.TRACE(1 if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_LOG":
        return ps.LOG
    raise ValueError(f"unsupported seccomp action {name}")


_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


def build_filter(profile: dict):  # -> pyseccomp.SyscallFilter
    """An OCI linux.seccomp object -> a libseccomp filter (not loaded)."""
    import pyseccomp as ps

    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    f = ps.SyscallFilter(default)
    # libseccomp sets no_new_privs itself on load; we load the exported BPF ourselves and
    # leave NNP to process.noNewPrivileges, as runc does.
    f.set_attr(ps.Attr.CTL_NNP, 0)
    native = ps.system_arch()
    for a in profile.get("architectures") or []:
        arch = getattr(ps.Arch, a.removeprefix("SCMP_ARCH_"))
        if arch != native:
            try:
                f.add_arch(arch)
            except OSError:
                pass  # arch not supported by this libseccomp
    for sc in profile.get("syscalls") or []:
        act = _action(sc["action"], sc.get("errnoRet"), profile.get("defaultErrnoRet") or 1)
        if act == default:
            continue  # libseccomp refuses rules equal to the default action
        args = [ps.Arg(a["index"], _OPS[a["op"]], a["value"], a.get("valueTwo") or 0)
                for a in sc.get("args") or []]
        same_index = len({a["index"] for a in sc.get("args") or []}) < len(args)
        for name in sc["names"]:
            if ps.resolve_syscall(ps.Arch.NATIVE, name) < 0:
                continue  # unknown to this libseccomp/arch: runc skips these too
            try:
                if same_index:  # libseccomp wants one comparison per argument per rule
                    for a in args:
                        f.add_rule(act, name, a)
                else:
                    f.add_rule(act, name, *args)
            except OSError as e:
                raise OSError(e.errno, f"seccomp rule for {name}: {e}") from None
    return f


def compile_bpf(profile: dict) -> bytes:
    f = build_filter(profile)
    fd = os.memfd_create("skiff-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as w:
            f.export_bpf(w)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _sha256(data: bytes) -> str:
    try:
        import _sha256  # the builtin module: importing hashlib (OpenSSL) costs milliseconds

        return str(_sha256.sha256(data).hexdigest())
    except ImportError:
        import hashlib

        return hashlib.sha256(data).hexdigest()


def profile_key(profile: dict) -> str:
    blob = json.dumps(profile, sort_keys=True, compact=True).encode()
    return _sha256(blob + os.uname().machine.encode())


def docker_default_bpf(cap_mask: int, cache_dir: str | None = None) -> bytes:
    """BPF of Docker's default profile for a capability set, cached without re-translating:
    the key is everything the translation depends on (caps, arch, kernel, profile file)."""
    cache_dir = cache_dir or CACHE_DIR
    st = os.stat(PROFILE_FILE)
    u = os.uname()
    key = _sha256(f"{cap_mask:x}|{u.machine}|{_kernel_version()}|{st.st_size}|"
                  f"{st.st_mtime_ns}".encode())
    path = os.path.join(cache_dir, f"docker-{key}.bpf")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        pass
    from .capabilities import from_mask

    bpf = compile_bpf(docker_default(from_mask(cap_mask)))
    _store(path, bpf, cache_dir)
    return bpf


def _store(path: str, bpf: bytes, cache_dir: str) -> None:
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(bpf)
        os.rename(tmp, path)
    except OSError:
        pass  # a read-only /run only costs the next start a recompile


def bpf_for(profile: dict, cache_dir: str | None = None) -> bytes:
    """The compiled BPF program for `profile`, from the cache when it is there."""
    cache_dir = cache_dir or CACHE_DIR
    path = os.path.join(cache_dir, profile_key(profile) + ".bpf")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        pass
    bpf = compile_bpf(profile)
    _store(path, bpf, cache_dir)
    return bpf


def load(bpf: bytes) -> None:
    from .syscalls import seccomp_load_bpf

    seccomp_load_bpf(bpf)
