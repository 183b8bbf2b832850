"""`skiff-runc`: the OCI runtime command line over libcontainer, shaped like runc's.

Global flags and per-command flags follow runc so that tooling which only knows runc (OCI
conformance suites, containerd-style shims) can drive it. Exit codes: 0 success, 1 any error,
`run`/`exec` (attached) return the process's own code (128+signal when it was killed).
Imports stay lazy: this runs once per container start and Python's imports are most of its cost.
"""

from __future__ import annotations

import os
import sys

DEFAULT_ROOT = "/run/skiff-runc"
TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms to import


_IN_ZYGOTE = False  # set by the zygote's request children, which run main() themselves


class UsageError(ValueError):
    pass


# flag -> (dest, kind); kind: bool | str | int | list | intlist
_GLOBAL: dict[str, tuple[str, str]] = {
    "--root": ("root", "str"), "--log": ("log", "str"), "--log-format": ("log_format", "str"),
    "--debug": ("debug", "bool"), "--systemd-cgroup": ("systemd_cgroup", "bool"),
    "--criu": ("criu", "str"), "--rootless": ("rootless", "str"),
    "-v": ("version", "bool"), "--version": ("version", "bool"),
    "-h": ("help", "bool"), "--help": ("help", "bool"),
}
_CREATE = {"-b": ("bundle", "str"), "--bundle": ("bundle", "str"),
           "--console-socket": ("console_socket", "str"), "--pid-file": ("pid_file", "str"),
           "--no-pivot": ("no_pivot", "bool"), "--no-new-keyring": ("no_new_keyring", "bool"),
           "--preserve-fds": ("preserve_fds", "int")}
_FORMAT = {"-f": ("format", "str"), "--format": ("format", "str")}
# command -> (help, flags, positionals; "*name" takes the rest verbatim, "?name" is optional)
COMMANDS: dict[str, tuple[str, dict[str, tuple[str, str]], list[str]]] = {
    "spec": ("write a default config.json", {"-b": ("bundle", "str"),
             "--bundle": ("bundle", "str"), "--rootless": ("rootless", "bool")}, []),
    "create": ("create a container (its process waits for start)", _CREATE, ["id"]),
    "run": ("create, start and wait for a container", {
        **_CREATE, "-d": ("detach", "bool"), "--detach": ("detach", "bool"),
        "--keep": ("keep", "bool")}, ["id"]),
    "start": ("start a created container", {}, ["id"]),
    "state": ("print the container's state JSON", {}, ["id"]),
    "kill": ("signal the container's init (-a: every process)", {
        "-a": ("all", "bool"), "--all": ("all", "bool")}, ["id", "?signal"]),
    "delete": ("delete a container (-f: also a running one)", {
        "-f": ("force", "bool"), "--force": ("force", "bool")}, ["id"]),
    "list": ("list containers", {**_FORMAT, "-q": ("quiet", "bool"),
                                 "--quiet": ("quiet", "bool")}, []),
    "pause": ("freeze the container's processes", {}, ["id"]),
    "resume": ("thaw the container's processes", {}, ["id"]),
    "ps": ("list the container's processes", _FORMAT, ["id", "*ps_args"]),
    "events": ("print stats once (--stats)", {"--stats": ("stats", "bool"),
                                             "--interval": ("interval", "str")}, ["id"]),
    "update": ("change a container's cgroup limits", {
        "-r": ("resources", "str"), "--resources": ("resources", "str"),
        "--memory": ("memory", "str"), "--memory-swap": ("memory_swap", "str"),
        "--memory-reservation": ("memory_reservation", "str"),
        "--cpu-quota": ("cpu_quota", "int"), "--cpu-period": ("cpu_period", "int"),
        "--cpu-shares": ("cpu_shares", "int"), "--cpuset-cpus": ("cpuset_cpus", "str"),
        "--cpuset-mems": ("cpuset_mems", "str"), "--pids-limit": ("pids_limit", "int"),
        "--blkio-weight": ("blkio_weight", "int"),
    }, ["id"]),
    "exec": ("run a process in a running container", {
        "-p": ("process", "str"), "--process": ("process", "str"), "-t": ("tty", "bool"),
        "--tty": ("tty", "bool"), "--console-socket": ("console_socket", "str"),
        "-d": ("detach", "bool"), "--detach": ("detach", "bool"),
        "--pid-file": ("pid_file", "str"), "--cwd": ("cwd", "str"), "-e": ("env", "list"),
        "--env": ("env", "list"), "-u": ("user", "str"), "--user": ("user", "str"),
        "-g": ("additional_gids", "intlist"), "--additional-gids": ("additional_gids",
                                                                    "intlist"),
        "-c": ("cap", "list"), "--cap": ("cap", "list"),
        "--no-new-privs": ("no_new_privs", "bool"), "--preserve-fds": ("preserve_fds", "int"),
    }, ["id", "*command"]),
}
_DEFAULTS = {"root": DEFAULT_ROOT, "log": "", "log_format": "text", "bundle": "",
             "preserve_fds": 0, "format": "table", "signal": "SIGTERM", "interval": "5s"}


class Args:
    """Parsed command line (attribute access like argparse's Namespace)."""

    def __init__(self) -> None:
        self.cmd: str | None = None

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return _DEFAULTS.get(name, [] if name in ("env", "cap", "additional_gids", "ps_args",
                                                   "command") else None)


def _take(a: Args, flags: dict[str, tuple[str, str]], argv: list[str], i: int) -> int:
    """Consume the flag at argv[i] (urfave/cli style: --x v, --x=v, -x v, -x=v)."""
    arg = argv[i]
    name, eq, val = arg.partition("=")
    if name not in flags and name.startswith("-") and not name.startswith("--"):
        name = "-" + name  # Go's flag package takes -bundle as --bundle
    if name not in flags:
        raise UsageError(f"flag provided but not defined: {arg}")
    dest, kind = flags[name]
    if kind == "bool":
        setattr(a, dest, val.lower() not in ("false", "0") if eq else True)
        return i + 1
    if not eq:
        if i + 1 >= len(argv):
            raise UsageError(f"flag needs an argument: {arg}")
        val = argv[i + 1]
        i += 1
    if kind in ("int", "intlist"):
        try:
            v: object = int(val)
        except ValueError:
            raise UsageError(f"invalid value {val!r} for flag {name}") from None
    else:
        v = val
    if kind.endswith("list"):
        getattr(a, dest)  # default
        cur = a.__dict__.setdefault(dest, [])
        cur.append(v)
    else:
        setattr(a, dest, v)
    return i + 1


def parse_args(argv: list[str]) -> Args:
    """runc's command line without argparse (whose import and gettext lookups cost more than
    this whole file on every container start)."""
    a = Args()
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        i = _take(a, _GLOBAL, argv, i)
    if i == len(argv):
        return a
    cmd = argv[i]
    if cmd not in COMMANDS:
        raise UsageError(f"no such command: {cmd}")
    a.cmd = cmd
    _help, flags, positionals = COMMANDS[cmd]
    flags = {**flags, "-h": ("help", "bool"), "--help": ("help", "bool")}
    pos: list[str] = []
    i += 1
    rest_name = next((p[1:] for p in positionals if p.startswith("*")), None)
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            pos.extend(argv[i + 1:])
            break
        if rest_name and pos:  # after the id everything belongs to the process
            pos.extend(argv[i:])
            break
        if arg.startswith("-") and arg != "-":
            i = _take(a, flags, argv, i)
            continue
        pos.append(arg)
        i += 1
    if a.help:
        return a
    fixed = [p for p in positionals if not p.startswith("*")]
    for p in fixed:
        name = p.lstrip("?")
        if pos:
            setattr(a, name, pos.pop(0))
        elif not p.startswith("?"):
            raise UsageError(f'"{cmd}" requires a container {name}')
    if rest_name:
        setattr(a, rest_name, pos)
    elif pos:
        raise UsageError(f'"{cmd}" got unexpected arguments: {" ".join(pos)}')
    return a


def usage() -> str:
    lines = ["usage: skiff-runc [--root DIR] [--log FILE] [--log-format text|json] COMMAND ...",
             "", "commands:"]
    for name, (h, flags, pos) in COMMANDS.items():
        opts = " ".join(sorted({f for f in flags if f.startswith("--")}))
        args = " ".join(p.lstrip("?*").upper() for p in pos)
        lines.append(f"  {name:<8}{h}\n            {args} {opts}".rstrip())
    return "\n".join(lines)


def _sig(name: str) -> int:
    import signal

    n = name.upper()
    if n.isdigit():
        return int(n)
    if not n.startswith("SIG"):
        n = "SIG" + n
    try:
        return int(getattr(signal, n))
    except AttributeError:
        raise ValueError(f"unknown signal {name!r}") from None


def _log_error(args, msg: str) -> None:
    sys.stderr.write(f"skiff-runc: {msg}\n")
    if getattr(args, "log", ""):
        import json
        import time

        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = (json.dumps({"level": "error", "msg": msg, "time": ts})
                if args.log_format == "json" else f"time={ts!r} level=error msg={msg!r}")
        try:
            with open(args.log, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


_TARGET: list[int] = [0]  # pid signals go to; signals caught before it is known wait here
_PENDING: list[int] = []


def _set_target(pid: int) -> None:
    _TARGET[0] = pid
    while _PENDING:
        try:
            os.kill(pid, _PENDING.pop(0))
        except ProcessLookupError:
            pass


def _forward_signals() -> None:
    """Catch every signal we can and forward it to the process (runc's signal handler).
    Installed before the process starts, so a signal sent right away is not lost."""
    if TYPE_CHECKING:
        import signal
    else:  # the C module, same functions with int constants: `signal` imports enum (~5 ms)
        import _signal as signal

    def fwd(sig: int, _frame: object) -> None:
        pid = _TARGET[0]
        if pid <= 0:
            _PENDING.append(sig)
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    skip = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGWINCH, signal.SIGURG}
    for s in signal.valid_signals():
        if s not in skip and 0 < s < 65:
            try:
                signal.signal(s, fwd)
            except (OSError, ValueError):
                pass


def _wait_attached(c, pid: int) -> int:
    """Proxy the pty if we hold it, return the exit code (128+sig)."""
    _set_target(pid)
    if c.console_master is not None:
        from .console import proxy

        pfd = os.pidfd_open(pid)
        try:
            proxy(c.console_master, pfd)
        finally:
            os.close(pfd)
    while True:
        try:
            wpid, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        if wpid == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def _reap_all() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    zygote = os.environ.get("SKIFF_RUNC_ZYGOTE")
    if zygote and os.path.exists(zygote) and not _IN_ZYGOTE:
        from .zygote import client

        return client(zygote, argv)
    try:
        args = parse_args(argv)
    except UsageError as e:
        sys.stderr.write(f"skiff-runc: {e}\n{usage()}\n")
        return 1
    if args.help:
        print(usage())
        return 0
    if args.version:
        from engine import __version__

        print(f"skiff-runc version {__version__}\nspec: 1.0.2")
        return 0
    if not args.cmd:
        sys.stderr.write(usage() + "\n")
        return 1
    from .errors import LibcontainerError

    try:
        return _dispatch(args)
    except (LibcontainerError, OSError, ValueError) as e:
        _log_error(args, str(e))
        return 1


def _dispatch(args) -> int:
    from .container import Container, list_containers, trace

    if args.cmd not in ("create", "run", "start", "kill", "delete"):
        import json  # noqa: F401 - the real module (indent=2): not on the start path
    else:
        from . import fastjson as json  # type: ignore[no-redef]  # noqa: F401

    trace("imports done")

    root = args.root
    cmd = args.cmd
    if cmd == "spec":
        from .defaults import default_spec

        path = os.path.join(args.bundle or ".", "config.json")
        if os.path.exists(path):
            raise ValueError("File config.json exists. Remove it first.")
        spec = default_spec()
        if args.rootless:
            spec["linux"]["namespaces"].append({"type": "user"})
            spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(),
                                             "size": 1}]
            spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(),
                                             "size": 1}]
        with open(path, "w") as f:
            json.dump(spec, f, indent=2)
            f.write("\n")
        return 0
    if cmd in ("create", "run"):
        bundle = args.bundle or os.getcwd()
        detached = bool(cmd == "create" or args.detach)
        c = Container.create(root, args.id, bundle, console_socket=args.console_socket,
                             pid_file=args.pid_file, subreaper=not detached,
                             preserve_fds=args.preserve_fds)
        if detached and c.console_master is not None:
            os.close(c.console_master)
            c.console_master = None
            c.destroy(force=True)
            raise ValueError("cannot allocate tty if skiff-runc will detach without setting "
                             "console socket")
        if cmd == "create":
            return 0
        trace("created")
        _forward_signals()
        _set_target(c.pid)
        try:
            c.start()
            trace("started")
        except BaseException:
            c.destroy(force=True)
            raise
        if detached:
            return 0
        try:
            code = _wait_attached(c, c.pid)
            trace("exited")
        finally:
            if not args.keep:
                c.destroy(force=True)
            _reap_all()
            trace("deleted")
        return code
    if cmd == "list":
        items = list_containers(root)
        if args.quiet:
            for i in items:
                print(i["id"])
        elif args.format == "json":
            print(json.dumps(items))
        else:
            print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<32}OWNER")
            for i in items:
                print(f"{i['id']:<20}{i['pid']:<10}{i['status']:<10}{i['bundle']:<40}"
                      f"{i['created']:<32}{i['owner']}")
        return 0
    c = Container.load(root, args.id)
    if cmd == "start":
        c.start()
    elif cmd == "state":
        print(json.dumps(c.state(), indent=2))
    elif cmd == "kill":
        c.kill(_sig(args.signal), all=args.all)
    elif cmd == "delete":
        c.destroy(force=args.force)
    elif cmd == "pause":
        c.pause()
    elif cmd == "resume":
        c.resume()
    elif cmd == "ps":
        pids = c.pids()
        if args.format == "json":
            print(json.dumps(pids))
        else:
            import subprocess

            out = subprocess.run(["ps", *(args.ps_args or ["-ef"])], capture_output=True,
                                 text=True, check=True).stdout.splitlines()
            print(out[0])
            col = out[0].split().index("PID")
            for line in out[1:]:
                if int(line.split()[col]) in pids:
                    print(line)
    elif cmd == "update":
        c.update(_update_resources(args))
    elif cmd == "events":
        print(json.dumps({"type": "stats", "id": c.id, "data": c.stats()}))
    elif cmd == "exec":
        return _exec(args, c)
    return 0


def _bytes(v: str) -> int:
    """512, 512k, 64m, 1g (runc's memory flags; -1 = unlimited)."""
    v = v.strip().lower().removesuffix("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}.get(v[-1:], 1)
    try:
        return int(v[:-1] if mult > 1 else v) * mult
    except ValueError:
        raise UsageError(f"invalid size {v!r}") from None


def _update_resources(args) -> dict:
    import json

    if args.resources:
        if args.resources == "-":
            return dict(json.load(sys.stdin))
        with open(args.resources) as f:
            return dict(json.load(f))
    res: dict = {}
    mem = {k: _bytes(v) for k, v in (("limit", args.memory), ("swap", args.memory_swap),
                                      ("reservation", args.memory_reservation)) if v}
    if mem:
        res["memory"] = mem
    cpu = {k: v for k, v in (("quota", args.cpu_quota), ("period", args.cpu_period),
                             ("shares", args.cpu_shares), ("cpus", args.cpuset_cpus),
                             ("mems", args.cpuset_mems)) if v is not None}
    if cpu:
        res["cpu"] = cpu
    if args.pids_limit is not None:
        res["pids"] = {"limit": args.pids_limit}
    if args.blkio_weight is not None:
        res["blockIO"] = {"weight": args.blkio_weight}
    if not res:
        raise UsageError("update: nothing to change")
    return res


def _exec(args, c) -> int:
    import json

    if args.process:
        with open(args.process) as f:
            proc = json.load(f)
    else:
        if not args.command:
            raise ValueError("exec needs a command or --process")
        base = c.config.get("process") or {}
        proc = {k: v for k, v in base.items() if k in ("env", "cwd", "user", "capabilities",
                                                     "rlimits", "noNewPrivileges",
                                                     "apparmorProfile")}
        proc["args"] = args.command
        proc["terminal"] = bool(args.tty)
        if args.cwd:
            proc["cwd"] = args.cwd
        if args.env:
            proc["env"] = list(proc.get("env") or []) + args.env
        if args.user:
            uid, _, gid = args.user.partition(":")
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        if args.additional_gids:
            proc.setdefault("user", {})["additionalGids"] = args.additional_gids
        if args.cap:
            caps = proc.setdefault("capabilities", {})
            for s in ("bounding", "effective", "permitted"):
                caps[s] = list(dict.fromkeys(list(caps.get(s) or []) + args.cap))
        if args.no_new_privs:
            proc["noNewPrivileges"] = True
    detached = bool(args.detach)
    if not detached:
        _forward_signals()
    pid = c.exec(proc, console_socket=args.console_socket, pid_file=args.pid_file,
                 subreaper=not detached, preserve_fds=args.preserve_fds)
    if detached:
        if c.console_master is not None:
            os.close(c.console_master)
        return 0
    return _wait_attached(c, pid)


if __name__ == "__main__":
    sys.exit(main())
