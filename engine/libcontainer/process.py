"""Starting the container's init (and exec'd processes): the double fork and the init's steps.

    caller ──fork──▶ stage 1 (host pid ns): setns into namespaces given by path, unshare(user),
       │               [caller writes uid/gid maps, puts stage 1 into the cgroup], unshare(rest)
       │             ──fork──▶ stage 2 = pid 1 of the new pid ns: rootfs, hostname, sysctls,
       │                        pty, rlimits, user, capabilities, no_new_privs, seccomp, resolves
       │                        the executable, says "ready", waits on the exec fifo, execve.
       └─ stage 1 reports stage 2's pid and exits; stage 2 is re-parented to the nearest
          subreaper (the caller when it asked to be one) or to the host's init.

Stage 1 and 2 talk to the caller over a pipe pair (a SOCK_SEQPACKET pair when a pty master
must be handed over), one JSON message per write. Any failure in a stage is sent as an
"error" message and the stage exits; the caller then tears everything down.
"""

from __future__ import annotations

import os

from . import fastjson as json
from . import syscalls as sc
from .errors import SystemError_
from .spec import NAMESPACES, NS_PROC_NAME, Process, Spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # the C module with the same functions and int constants: `signal` imports enum (~5 ms)
    import _signal as signal

# setns order: user first (it owns the others), mount last but one, as runc's nsexec
JOIN_ORDER = ["user", "ipc", "uts", "network", "pid", "mount", "cgroup", "time"]


class Channel:
    """The caller's end and the child's end of the sync channel (two pipes or a socketpair)."""

    def __init__(self, fd_passing: bool) -> None:
        self.sock = fd_passing
        if fd_passing:
            import socket

            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.p_r = self.p_w = a.detach()
            self.c_r = self.c_w = b.detach()
        else:
            self.c_r, self.p_w = os.pipe()
            self.p_r, self.c_w = os.pipe()
        self._buf = b""

    # child side
    def child_send(self, **msg: object) -> None:
        os.write(self.c_w, json.dumps(msg).encode() + b"\n")

    def child_recv(self) -> dict:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self.c_r, 4096)
            if not chunk:
                raise SystemError_("the caller went away")
            data += chunk
        return json.loads(data)

    def child_close(self) -> None:
        for fd in {self.c_r, self.c_w}:
            try:
                os.close(fd)
            except OSError:
                pass

    # caller side
    def send(self, **msg: object) -> None:
        os.write(self.p_w, json.dumps(msg).encode() + b"\n")

    def recv(self) -> tuple[dict | None, int | None]:
        """Next message (None at EOF) and an fd that came with it."""
        if self.sock:
            from .console import recv_fd

            data, fd = recv_fd(self.p_r)
            return (json.loads(data) if data else None), fd
        while b"\n" not in self._buf:
            chunk = os.read(self.p_r, 65536)
            if not chunk:
                return None, None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line), None

    def close_child_ends(self) -> None:
        for fd in {self.c_r, self.c_w}:
            if fd not in (self.p_r, self.p_w):
                os.close(fd)

    def close(self) -> None:
        for fd in {self.p_r, self.p_w}:
            try:
                os.close(fd)
            except OSError:
                pass


def lookpath(file: str, env_path: str | None) -> str:
    """Resolve argv[0] like Go's exec.LookPath (runc's messages, for tools that match them)."""
    if "/" in file:
        try:
            st = os.stat(file)
        except OSError as e:
            why = (e.strerror or str(e)).lower()
            raise SystemError_(f'exec: "{file}": stat {file}: {why}') from None
        if not (st.st_mode & 0o111) or (st.st_mode & 0o170000) == 0o040000:
            raise SystemError_(f'exec: "{file}": permission denied')
        return file
    for d in (env_path if env_path is not None else "").split(":"):
        p = os.path.join(d or ".", file)
        try:
            st = os.stat(p)
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o100000 and st.st_mode & 0o111:
            return p
    raise SystemError_(f'exec: "{file}": executable file not found in $PATH')


def _close_extra_fds(keep: set[int]) -> None:
    """Mark every fd >= 3 not in `keep` close-on-exec: nothing of ours leaks in."""
    import fcntl

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            except OSError:
                pass


def _reset_signals() -> None:
    # Python ignores SIGPIPE/SIGXFSZ; ignored dispositions survive execve
    for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
              signal.SIGQUIT, signal.SIGCHLD, signal.SIGWINCH, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def seccomp_profile(spec_seccomp: dict | None, proc: Process, annotations: dict) -> dict | None:
    """linux.seccomp, or Docker's default for the process's capabilities when absent."""
    if spec_seccomp is not None:
        return spec_seccomp
    if annotations.get("org.skiff.seccomp") == "unconfined":
        return None
    from . import seccomp
    from .capabilities import from_mask

    return seccomp.docker_default(from_mask(proc.capabilities.bounding))


def prepare_seccomp(spec_seccomp: dict | None, proc: Process, annotations: dict) -> bytes | None:
    """The BPF to load in the child, computed in the caller (cached), so failures show early."""
    from . import seccomp

    if spec_seccomp is None:
        if annotations.get("org.skiff.seccomp") == "unconfined":
            return None
        return seccomp.docker_default_bpf(proc.capabilities.bounding)
    return seccomp.bpf_for(spec_seccomp)


def finalize_process(proc: Process, bpf: bytes | None, in_userns: bool) -> str:
    """rlimits, cwd, user, capabilities, no_new_privs, seccomp; returns the executable path."""
    from . import capabilities as capmod

    for r in proc.rlimits:
        import resource

        resource.setrlimit(r.resource, (
            resource.RLIM_INFINITY if r.soft >= 2**64 - 1 else r.soft,
            resource.RLIM_INFINITY if r.hard >= 2**64 - 1 else r.hard))
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc.oom_score_adj))
    try:
        os.chdir(proc.cwd)
        cwd_done = True
    except PermissionError:
        cwd_done = False
    except FileNotFoundError:
        raise SystemError_(f"chdir to cwd ({proc.cwd!r}) set in config.json failed: "
                           "no such file or directory") from None
    if bpf is not None and not proc.no_new_privileges:
        sc.seccomp_load_bpf(bpf)  # still holds CAP_SYS_ADMIN: loads without no_new_privs
    caps = proc.capabilities
    u = proc.user
    capmod.apply_bounding(caps.bounding)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    if not in_userns or _setgroups_allowed():
        os.setgroups(u.additional_gids)
    os.setresgid(u.gid, u.gid, u.gid)
    os.setresuid(u.uid, u.uid, u.uid)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    capmod.apply_sets(caps.effective, caps.permitted, caps.inheritable, caps.ambient)
    if u.umask is not None:
        os.umask(u.umask)
    if not cwd_done:
        os.chdir(proc.cwd)
    env_path = proc.getenv("PATH")
    path = lookpath(proc.args[0], env_path)
    if proc.no_new_privileges:
        sc.set_no_new_privs()
        if bpf is not None:
            sc.seccomp_load_bpf(bpf)
    return path


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True


def _write_sysctls(sysctl: dict[str, str]) -> None:
    for k, v in sysctl.items():
        with open("/proc/sys/" + k.replace(".", "/"), "w") as f:
            f.write(v)


def _join(paths: dict[str, str]) -> None:
    fds = {t: os.open(p, os.O_RDONLY | os.O_CLOEXEC) for t, p in paths.items()}
    try:
        for t in JOIN_ORDER:
            if t in fds:
                try:
                    sc.setns(fds[t], NAMESPACES[t])
                except OSError as e:
                    raise SystemError_(f"joining {t} namespace {paths[t]}: {e}") from None
    finally:
        for fd in fds.values():
            os.close(fd)


def _die(ch: Channel, e: BaseException) -> None:
    try:
        msg = str(e) if isinstance(e, SystemError_) else f"{type(e).__name__}: {e}"
        ch.child_send(t="error", msg=msg)
    finally:
        os._exit(1)


def init_stage1(ch: Channel, spec: Spec, stage2: object) -> None:
    """Runs in the forked child, never returns."""
    try:
        L = spec.linux
        if spec.process is not None:
            _preimport(spec.process, spec)
        _join({t: p for t, p in L.namespaces.items() if p})
        newuser = L.namespaces.get("user", 0) is None
        if newuser:
            sc.unshare(sc.CLONE_NEWUSER)
        if newuser:  # the caller writes our uid/gid maps now
            ch.child_send(t="stage1", pid=os.getpid(), userns=True)
        # without a new user namespace the caller puts us into the cgroup right after fork
        # and says "go" without waiting for us: one scheduling round trip less per start
        if ch.child_recv().get("t") != "go":
            os._exit(1)
        if newuser:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = L.new_ns_flags() & ~sc.CLONE_NEWUSER
        if flags & sc.CLONE_NEWCGROUP:
            from . import rootfs

            rootfs.HOST_CGROUPS = rootfs._own_cgroups()
        if flags:
            sc.unshare(flags)
        pid = os.fork()
        if pid == 0:
            try:
                stage2()  # type: ignore[operator]
            except BaseException as e:  # noqa: BLE001 - reported to the caller
                _die(ch, e)
            os._exit(1)
        ch.child_send(t="pid", pid=pid)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001
        _die(ch, e)


def init_stage2(ch: Channel, spec: Spec, bpf: bytes | None, fifo_fd: int,
                stdio: tuple[int, int, int] | None, preserve_fds: int = 0,
                hook_state: dict | None = None) -> None:
    """The container's pid 1 until execve. `hook_state`: the state the in-container OCI hooks
    (createContainer, startContainer) get on stdin."""
    from . import rootfs

    proc = spec.process
    assert proc is not None
    L = spec.linux
    _preimport(proc, spec)
    state = {**(hook_state or {}), "status": "creating"}
    os.setsid()
    if stdio is not None:
        _install_stdio(stdio)
    new_mntns = "mount" in L.namespaces and L.namespaces["mount"] is None
    if new_mntns:
        rootfs.setup(spec, before_pivot=lambda: _container_hooks("createContainer", spec, state))
    else:
        _container_hooks("createContainer", spec, state)
    if spec.hostname:
        sc.sethostname(spec.hostname)
    if spec.domainname:
        sc.setdomainname(spec.domainname)
    if L.sysctl:
        _write_sysctls(L.sysctl)
    master = None
    if proc.terminal:
        from . import console

        master, slave = console.open_pty()
        dest = "/dev/console"
        try:
            if not new_mntns:
                raise OSError("not our mount namespace")
            if not os.path.lexists(dest):
                os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            sc.mount(slave, dest, None, sc.MS_BIND)
        except OSError:
            pass
        if proc.console_size:
            console.set_winsize(master, *proc.console_size)
        console.make_controlling(slave)
    if new_mntns:  # never mask paths in a mount namespace we only joined
        rootfs.finalize(spec)
    in_userns = L.namespaces.get("user", 0) is None
    exe = finalize_process(proc, bpf, in_userns)
    _reset_signals()
    _close_extra_fds({fifo_fd, ch.c_r, ch.c_w} | set(range(3, 3 + preserve_fds)))
    if master is not None:
        from .console import send_fd

        send_fd(ch.c_w, master, json.dumps({"t": "pty"}).encode())
        os.close(master)
    ch.child_send(t="ready")
    ch.child_close()
    if fifo_fd >= 0:
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(fifo_fd)
    if spec.hooks.get("startContainer"):
        from . import hooks

        try:
            hooks.in_container("startContainer", spec.hooks, {**state, "status": "created"})
        except SystemError_ as e:  # the runtime-spec: an error, and the container stops
            os.write(2, f"skiff-runc: {e}\n".encode())
            os._exit(1)
    try:
        os.execve(exe, proc.args, _env(proc))
    except OSError as e:
        os.write(2, f"exec {exe}: {e.strerror}\n".encode())
        os._exit(127 if e.errno == 2 else 126)


def _container_hooks(name: str, spec: Spec, state: dict) -> None:
    if spec.hooks.get(name):
        from . import hooks

        hooks.in_container(name, spec.hooks, state)


def _install_stdio(stdio: tuple[int, int, int]) -> None:
    """dup2 the caller's fds onto 0, 1, 2 (via copies, so (1, 0, 2) and the like work)."""
    copies = [os.dup(fd) for fd in stdio]
    for i, fd in enumerate(copies):
        os.dup2(fd, i)
    for fd in copies:
        os.close(fd)


def _preimport(proc: Process, spec: Spec | None = None) -> None:
    """Import now what the later steps need: after pivot_root the host's stdlib is gone, and
    in a new user namespace it may be unreadable (e.g. below /root) from the start."""
    import fcntl  # noqa: F401

    from . import (
        capabilities,  # noqa: F401
        rootfs,  # noqa: F401
    )

    if proc.rlimits:
        import resource  # noqa: F401
    if proc.terminal:
        import socket  # noqa: F401

        from . import console  # noqa: F401
    if spec is not None and (spec.hooks.get("createContainer") or spec.hooks.get("startContainer")):
        import selectors  # noqa: F401 - subprocess.run(input=...) needs it

        from . import hooks  # noqa: F401


def _env(proc: Process) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in proc.env:
        k, _, v = e.partition("=")
        env[k] = v
    return env


def exec_stage2(ch: Channel, proc: Process, bpf: bytes | None, in_userns: bool,
                stdio: tuple[int, int, int] | None, preserve_fds: int = 0) -> None:
    """A process joining a running container (after setns in stage 1), until execve."""
    os.setsid()
    if stdio is not None:
        _install_stdio(stdio)
    master = None
    if proc.terminal:
        from . import console

        master, slave = console.open_pty()
        if proc.console_size:
            console.set_winsize(master, *proc.console_size)
        console.make_controlling(slave)
    exe = finalize_process(proc, bpf, in_userns)
    _reset_signals()
    _close_extra_fds({ch.c_r, ch.c_w} | set(range(3, 3 + preserve_fds)))
    if master is not None:
        from .console import send_fd

        send_fd(ch.c_w, master, json.dumps({"t": "pty"}).encode())
        os.close(master)
    ch.child_send(t="ready")
    ch.child_close()
    try:
        os.execve(exe, proc.args, _env(proc))
    except OSError as e:
        os.write(2, f"exec {exe}: {e.strerror}\n".encode())
        os._exit(127 if e.errno == 2 else 126)


def ns_paths_of(pid: int, types: list[str]) -> dict[str, str]:
    """/proc/<pid>/ns paths for `types` that differ from ours (joining our own is pointless,
    and setns into our own user namespace fails)."""
    out = {}
    for t in types:
        p = f"/proc/{pid}/ns/{NS_PROC_NAME[t]}"
        try:
            if os.stat(p).st_ino != os.stat(f"/proc/self/ns/{NS_PROC_NAME[t]}").st_ino:
                out[t] = p
        except FileNotFoundError:
            continue
    return out


def write_id_maps(pid: int, spec: Spec) -> None:
    L = spec.linux

    def fmt(maps: list) -> str:
        return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)

    try:
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(fmt(L.uid_mappings))
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(fmt(L.gid_mappings))
    except OSError as e:
        raise SystemError_(f"writing uid/gid maps of the user namespace: {e}") from None
