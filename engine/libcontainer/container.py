"""Container lifecycle (runc's Create / Load / Start / Kill / Destroy) with state under a root dir.

<root>/<id>/state.json holds what a later process needs to find the container again: the init
pid and its start time (so a recycled pid is not mistaken for the container), the bundle, the
validated config and the cgroup path. <root>/<id>/exec.fifo exists while the container is
"created": the init blocks opening it for writing until `start` opens it for reading.
"""

from __future__ import annotations

import os
import time

from . import fastjson as json
from .errors import (
    ConfigError,
    ContainerExists,
    ContainerNotFound,
    LibcontainerError,
    StateError,
    SystemError_,
)
from .spec import Spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .process import Channel
if TYPE_CHECKING:
    import signal
else:  # the C module with the same functions and int constants: `signal` imports enum (~5 ms)
    import _signal as signal

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
FIFO = "exec.fifo"
OCI_VERSION = "1.0.2"
TRACE = bool(os.environ.get("SKIFF_RUNC_TRACE"))
_T0 = time.perf_counter()


def trace(label: str) -> None:
    """SKIFF_RUNC_TRACE=1: milliseconds since import at each step, for profiling starts."""
    if TRACE:
        os.write(2, f"[trace {1000 * (time.perf_counter() - _T0):7.2f} ms] {label}\n".encode())


_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def validate_id(cid: str) -> None:
    if not cid or not set(cid) <= _ID_OK or cid in (".", ".."):
        raise ConfigError("id", cid, "must be letters, digits and _+-. only")
    if len(cid) > 1024:
        raise ConfigError("id", cid, "is too long")


def pid_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); None when the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie has exited already
        return None
    return int(fields[19])


def _cgroups_manager(path: str, resources: object = None):  # -> cgroups Manager
    from .cgroups import new_manager

    return new_manager(path, resources)  # type: ignore[arg-type]


def _rmtree(path: str) -> None:
    """The state dir is flat (a few files): no need to import shutil on the start path."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for n in names:
        p = os.path.join(path, n)
        try:
            os.unlink(p)
        except IsADirectoryError:
            _rmtree(p)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


class Container:
    """A container known under a state root. Build with create() or load()."""

    def __init__(self, root: str, cid: str, state: dict) -> None:
        self.root, self.id, self._st = root, cid, state
        self.dir = os.path.join(root, cid)
        self.console_master: int | None = None  # pty master when no console socket was given
        self._manager: Any = None  # cgroups Manager, made on first use

    # ------------------------------------------------------------------ properties
    @property
    def pid(self) -> int:
        return int(self._st["init_pid"])

    @property
    def bundle(self) -> str:
        return str(self._st["bundle"])

    @property
    def config(self) -> dict:
        """The container's validated config.json (a copy kept in the state dir)."""
        if "config" not in self._st:
            try:
                with open(os.path.join(self.dir, CONFIG_FILE), "rb") as f:
                    self._st["config"] = json.loads(f.read())
            except FileNotFoundError:
                self._st["config"] = {}
        return dict(self._st["config"])

    @property
    def manager(self):
        if self._manager is None:
            self._manager = _cgroups_manager(self._st["cgroup_path"])
        return self._manager

    def _alive(self) -> bool:
        if self.pid <= 0 or self._st.get("init_start") is None:
            return False  # never signal pid 0 / -1: that is our own process group
        return pid_start_time(self.pid) == self._st["init_start"]

    @property
    def status(self) -> str:
        if not self._alive():
            return "stopped"
        if os.path.exists(os.path.join(self.dir, FIFO)):
            return "created"
        if self._st.get("paused"):
            return "paused"
        return "running"

    def state(self) -> dict:
        status = self.status
        return {
            "ociVersion": OCI_VERSION, "id": self.id, "pid": self.pid if status != "stopped"
            else 0, "status": status, "bundle": self.bundle, "rootfs": self._st["rootfs"],
            "created": self._st["created"], "owner": "",
            "annotations": self._st.get("annotations") or {},
        }

    def _save(self) -> None:
        st = {k: v for k, v in self._st.items() if k != "config"}  # config has its own file
        tmp = os.path.join(self.dir, STATE_FILE + ".tmp")
        _write(tmp, json.dumps(st, compact=True).encode())
        os.rename(tmp, os.path.join(self.dir, STATE_FILE))

    # ------------------------------------------------------------------ create / load
    @classmethod
    def load(cls, root: str, cid: str) -> Container:
        try:
            with open(os.path.join(root, cid, STATE_FILE)) as f:
                st = json.loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerNotFound(cid) from None
        return cls(root, cid, st)

    @classmethod
    def create(cls, root: str, id: str, bundle: str, spec: dict | None = None, *,
               stdio: tuple[int, int, int] | None = None, console_socket: str | None = None,
               pid_file: str | None = None, subreaper: bool = False,
               preserve_fds: int = 0) -> Container:
        """Validate, make the cgroup and namespaces, start the init up to its exec fifo.

        On any failure nothing is left: no process, cgroup, state dir (mounts live in the
        container's mount namespace and go with its last process).
        """
        from . import spec as specmod

        validate_id(id)
        bundle = os.path.abspath(bundle)
        s = specmod.load(spec, bundle) if spec is not None else specmod.load_bundle(bundle)
        if s.process is None:
            raise ConfigError("process", None, "a container needs a process to run")
        if s.process.terminal and console_socket is None and stdio is not None:
            pass  # the caller takes console_master
        d = os.path.join(root, id)
        os.makedirs(root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(d, 0o711)
        except FileExistsError:
            raise ContainerExists(id) from None
        c = cls(root, id, {})
        try:
            c._create(s, stdio, console_socket, pid_file, subreaper, preserve_fds)
        except BaseException:
            c._cleanup_failed()
            raise
        return c

    def _create(self, s: Spec, stdio, console_socket, pid_file, subreaper, preserve_fds) -> None:
        from .process import Channel, init_stage2, prepare_seccomp, write_id_maps

        assert s.process is not None
        cg_path = s.linux.cgroups_path or f"/{self.id}"
        self._st = {"id": self.id, "init_pid": 0, "init_start": None, "bundle": s.bundle,
                    "rootfs": s.root_path, "created": "",
                    "cgroup_path": cg_path, "annotations": s.annotations,
                    "namespaces": {t: p for t, p in s.linux.namespaces.items()},
                    "paused": False}
        trace("spec loaded")
        self._st["config"] = s.raw
        _write(os.path.join(self.dir, CONFIG_FILE),
               s.raw_bytes if s.raw_bytes is not None else json.dumps(s.raw).encode())
        bpf = prepare_seccomp(s.linux.seccomp, s.process, s.annotations)
        trace("seccomp bpf ready")
        fifo = os.path.join(self.dir, FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        self._manager = _cgroups_manager(cg_path, s.linux.resources)
        self._manager.create()
        trace("cgroup created")
        self._pids: list[int] = []
        if subreaper:
            from .syscalls import set_subreaper

            set_subreaper()
        ch = Channel(fd_passing=s.process.terminal)
        try:
            hook_state = {"ociVersion": OCI_VERSION, "id": self.id, "bundle": s.bundle,
                          "annotations": s.annotations}
            pid1 = self._fork_stage1(ch, s, lambda: init_stage2(ch, s, bpf, fifo_fd, stdio,
                                                                preserve_fds, hook_state))
            os.close(fifo_fd)
            fifo_fd = -1
            trace("forked")
            init = self._handshake(ch, s, pid1, write_id_maps, console_socket,
                                   early_go=s.linux.namespaces.get("user", 0) is not None)
            trace("init ready")
        finally:
            ch.close()
            if fifo_fd >= 0:
                os.close(fifo_fd)
        self._st["init_pid"] = init
        self._st["init_start"] = pid_start_time(init)
        self._st["created"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
        self._save()
        if pid_file:
            _write_pid_file(pid_file, init)
        for name in ("prestart", "createRuntime"):
            self._hooks(name, fatal=True)

    def _hooks(self, name: str, fatal: bool) -> None:
        """OCI hooks run by the runtime itself (see hooks.py for the ones the init runs)."""
        hooks = (self.config.get("hooks") or {}).get(name) or []
        if hooks:
            from .hooks import run_hooks

            run_hooks(name, hooks, self.state(), fatal)

    def _fork_stage1(self, ch: Channel, s: Spec, stage2: Callable[[], None]) -> int:
        """Fork stage 1 (joins/creates namespaces, then runs `stage2` as the container's pid)."""
        from .process import init_stage1

        pid1 = os.fork()
        if pid1 == 0:
            try:
                os.close(ch.p_r)
                if ch.p_w != ch.p_r:
                    os.close(ch.p_w)
                init_stage1(ch, s, stage2)
            finally:
                os._exit(1)
        self._pids.append(pid1)
        ch.close_child_ends()
        return pid1

    def _handshake(self, ch, s: Spec, pid1: int, write_id_maps, console_socket,
                   expect_pid: bool = True, early_go: bool = False) -> int:
        """Serve the stages' messages until the init is ready AND its pid is known (stage 1's
        "pid" and stage 2's "ready" race each other on the channel)."""
        init = 0
        ready = False
        early_err: OSError | None = None
        if early_go:
            trace("stage 1 forked")
            try:
                self.manager.apply(pid1)
                ch.send(t="go")
            except OSError as e:  # stage 1 already failed: its message says why
                early_err = e
            trace("cgroup applied")
        while True:
            msg, fd = ch.recv()
            if msg is None:
                break
            t = msg.get("t")
            if t == "stage1":
                if msg.get("userns"):
                    write_id_maps(pid1, s)
                trace("stage 1 up")
                self.manager.apply(pid1)
                ch.send(t="go")
                trace("cgroup applied")
            elif t == "pid":
                trace("got init pid")
                init = int(msg["pid"])
                self._pids.append(init)
                _reap(pid1, block=True)  # init is re-parented to us once stage 1 is gone
            elif t == "pty":
                if fd is None:
                    raise SystemError_("the init sent no pty master")
                if console_socket:
                    from .console import send_to_console_socket

                    try:
                        send_to_console_socket(console_socket, fd, "/dev/console")
                    finally:
                        os.close(fd)
                else:
                    self.console_master = fd
            elif t == "ready":
                ready = True
            if ready and (init or not expect_pid):
                return init
            elif t == "error":
                raise SystemError_(str(msg.get("msg")))
        if early_err is not None:
            raise early_err
        raise SystemError_("container init exited before it was ready" if not ready
                           else "stage 1 exited without reporting the init's pid")

    def _cleanup_failed(self) -> None:
        for p in reversed(getattr(self, "_pids", [])):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(p, block=True)
        if self.console_master is not None:
            os.close(self.console_master)
            self.console_master = None
        if self._manager is not None:
            try:
                self._manager.kill_all(signal.SIGKILL) if hasattr(
                    self._manager, "kill_all") else None
            except OSError:
                pass
            _destroy_manager(self._manager)
        _rmtree(self.dir)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Let the created init run its process (runc start)."""
        st = self.status
        if st != "created":
            raise StateError(f"cannot start a container that is {st}" if st != "stopped"
                             else "cannot start an already stopped container")
        fifo = os.path.join(self.dir, FIFO)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            import select

            while True:
                r, _, _ = select.select([fd], [], [], 0.1)
                if r:
                    data = os.read(fd, 1)
                    if data:
                        break
                if not self._alive():
                    raise StateError("the container's init exited before start")
        finally:
            os.close(fd)
            try:
                os.unlink(fifo)
            except FileNotFoundError:
                pass
        self._hooks("poststart", fatal=False)

    def kill(self, sig: int = signal.SIGTERM, all: bool = False) -> None:
        st = self.status
        if st == "stopped" and not all:
            raise StateError("container not running")
        if all:
            pids = set(self.manager.pids()) if self.manager.exists() else set()
            if st != "stopped":
                pids.add(self.pid)
            for p in pids:
                if p <= 0:
                    continue
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            if st == "paused" and sig == signal.SIGKILL:
                self.manager.thaw()
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            raise StateError("container not running") from None

    def destroy(self, force: bool = False) -> None:
        """runc delete: a created container is killed; a running one only with force."""
        st = self.status
        if st in ("running", "paused") and not force:
            raise StateError(f"cannot delete container {self.id} that is not stopped: {st}")
        if st != "stopped":
            self.kill(signal.SIGKILL, all=True)
            if st == "paused":
                self.manager.thaw()
            self._wait_gone()
        m = self.manager
        if m.exists():
            try:
                m.kill_all(signal.SIGKILL) if hasattr(m, "kill_all") else None
            except OSError:
                pass
            _destroy_manager(m)
        self._hooks("poststop", fatal=False)
        _rmtree(self.dir)

    def _wait_gone(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self._alive() and time.monotonic() < deadline:
            _reap(self.pid)
            time.sleep(0.002)

    def wait(self) -> int:
        """Exit code of the init (128+signal if killed); caller must be its parent/subreaper."""
        if self.pid <= 0:
            raise StateError("container has no init process")
        while True:
            try:
                pid, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self._wait_gone(timeout=1e9)
                return -1
            if pid == self.pid:
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code

    def pause(self) -> None:
        if self.status != "running":
            raise StateError(f"container not running: {self.status}")
        self.manager.freeze()
        self._st["paused"] = True
        self._save()

    def resume(self) -> None:
        if self.status != "paused":
            raise StateError("container not paused")
        self.manager.thaw()
        self._st["paused"] = False
        self._save()

    def update(self, resources: dict) -> None:
        """Change the cgroup limits of a live container (OCI linux.resources shape; only the
        fields given change). Validated like config.json, ConfigError names the field."""
        from .cgroups import Resources

        st = self.status
        if st == "stopped":
            raise StateError("cannot update a stopped container")
        self.manager.update(Resources.from_oci(resources))

    def stats(self) -> dict:
        return dict(self.manager.stats())

    def oom_killed(self) -> bool:
        try:
            return self.manager.oom_kill_count() > 0
        except (OSError, LibcontainerError):
            return False

    def pids(self) -> list[int]:
        return list(self.manager.pids())

    def exec(self, process: dict, stdio: tuple[int, int, int] | None = None,
             console_socket: str | None = None, pid_file: str | None = None,
             subreaper: bool = False, preserve_fds: int = 0) -> int:
        """Start `process` (OCI process object) inside the running container; returns its pid.

        The new process joins every namespace of the init and its cgroup, and gets its own
        user, capabilities, no_new_privs and seccomp (Docker's default unless the container's
        config sets linux.seccomp). With terminal=true and no console socket the pty master is
        left in `self.console_master`.
        """
        from . import spec as specmod
        from .process import Channel, exec_stage2, ns_paths_of, prepare_seccomp

        st = self.status
        if st not in ("running", "created"):
            raise StateError(f"cannot exec in a {st} container")
        proc = specmod.load_process(process)
        cfg = self.config
        lx = cfg.get("linux") or {}
        bpf = prepare_seccomp(lx.get("seccomp"), proc, self._st.get("annotations") or {})
        types = list(self._st.get("namespaces") or {})
        # a synthetic spec whose namespaces are all "join by path"
        s = Spec()
        s.linux.namespaces = ns_paths_of(self.pid, types)  # type: ignore[assignment]
        s.process = proc
        in_userns = "user" in types
        if subreaper:
            from .syscalls import set_subreaper

            set_subreaper()
        ch = Channel(fd_passing=proc.terminal)
        self._pids = []
        try:
            pid1 = self._fork_stage1(ch, s, lambda: exec_stage2(ch, proc, bpf, in_userns, stdio,
                                                                preserve_fds))
            try:
                pid = self._handshake(ch, s, pid1, lambda *_: None, console_socket,
                                      early_go=True)
            except BaseException:
                for p in reversed(self._pids):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    _reap(p, block=True)
                raise
        finally:
            ch.close()
        if pid_file:
            _write_pid_file(pid_file, pid)
        return pid


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _reap(pid: int, block: bool = False) -> None:
    try:
        os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        pass


def _destroy_manager(m) -> None:
    for _ in range(200):
        try:
            m.destroy()
            return
        except OSError as e:
            if e.errno != 16:  # EBUSY: the last processes are still exiting
                raise
            time.sleep(0.005)
    m.destroy()


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def list_containers(root: str) -> list[dict]:
    out = []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for n in names:
        try:
            c = Container.load(root, n)
        except (ContainerNotFound, ValueError):
            continue
        out.append(c.state())
    return out


def run(root: str, id: str, bundle: str, spec: dict | None = None, **kw) -> int:
    """create + start + wait + delete, in this process (which becomes a subreaper)."""
    c = Container.create(root, id, bundle, spec, subreaper=True, **kw)
    try:
        c.start()
        return c.wait()
    finally:
        c.destroy(force=True)
