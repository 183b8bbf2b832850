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


def _parser():
    import argparse

    p = argparse.ArgumentParser(prog="skiff-runc", description="OCI runtime over libcontainer")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory")
    p.add_argument("--log", default="", help="log file for errors")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true", help="accepted, not supported")
    p.add_argument("--criu", default="", help="accepted, ignored")
    p.add_argument("--rootless", default="auto", help="accepted, ignored")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="cmd")

    def cmd(name: str, help: str, id: bool = True):
        sp = sub.add_parser(name, help=help)
        if id:
            sp.add_argument("id")
        return sp

    s = cmd("spec", "write a default config.json", id=False)
    s.add_argument("-b", "--bundle", default="")
    s.add_argument("--rootless", action="store_true")
    for name in ("create", "run"):
        s = cmd(name, f"{name} a container")
        s.add_argument("-b", "--bundle", default="")
        s.add_argument("--console-socket", default=None)
        s.add_argument("--pid-file", default=None)
        s.add_argument("--no-pivot", action="store_true")
        s.add_argument("--no-new-keyring", action="store_true")
        s.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            s.add_argument("-d", "--detach", action="store_true")
            s.add_argument("--keep", action="store_true")
    cmd("start", "start a created container")
    s = cmd("state", "print the container's state JSON")
    s = cmd("kill", "send a signal to the container's init")
    s.add_argument("signal", nargs="?", default="SIGTERM")
    s.add_argument("-a", "--all", action="store_true")
    s = cmd("delete", "delete the container")
    s.add_argument("-f", "--force", action="store_true")
    s = cmd("list", "list containers", id=False)
    s.add_argument("-f", "--format", default="table", choices=["table", "json"])
    s.add_argument("-q", "--quiet", action="store_true")
    cmd("pause", "freeze the container's processes")
    cmd("resume", "thaw the container's processes")
    s = cmd("ps", "list the container's processes")
    s.add_argument("-f", "--format", default="table", choices=["table", "json"])
    s.add_argument("ps_args", nargs="*")
    s = cmd("exec", "run a process in a running container")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.add_argument("-p", "--process", default=None)
    s.add_argument("-t", "--tty", action="store_true")
    s.add_argument("--console-socket", default=None)
    s.add_argument("-d", "--detach", action="store_true")
    s.add_argument("--pid-file", default=None)
    s.add_argument("--cwd", default=None)
    s.add_argument("-e", "--env", action="append", default=[])
    s.add_argument("-u", "--user", default=None)
    s.add_argument("-g", "--additional-gids", action="append", type=int, default=[])
    s.add_argument("-c", "--cap", action="append", default=[])
    s.add_argument("--no-new-privs", action="store_true")
    s.add_argument("--preserve-fds", type=int, default=0)
    s = cmd("events", "container stats (--stats prints one JSON object)")
    s.add_argument("--stats", action="store_true")
    s.add_argument("--interval", default="5s")
    return p


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


def _forward_signals(pid: int) -> None:
    import signal

    def fwd(sig: int, _frame: object) -> None:
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
    """Forward signals, proxy the pty if we hold it, return the exit code (128+sig)."""
    _forward_signals(pid)
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
    args = _parser().parse_args(argv)
    if args.version:
        from engine import __version__

        print(f"skiff-runc version {__version__}\nspec: 1.0.2")
        return 0
    if not args.cmd:
        _parser().print_help()
        return 1
    from .errors import LibcontainerError

    try:
        return _dispatch(args)
    except (LibcontainerError, OSError, ValueError) as e:
        _log_error(args, str(e))
        return 1


def _dispatch(args) -> int:
    import json

    from .container import Container, list_containers

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
        detached = cmd == "create" or args.detach
        c = Container.create(root, args.id, bundle, console_socket=args.console_socket,
                             pid_file=args.pid_file, subreaper=not detached,
                             preserve_fds=args.preserve_fds)
        if cmd == "create":
            if c.console_master is not None:
                os.close(c.console_master)
            return 0
        try:
            c.start()
        except BaseException:
            c.destroy(force=True)
            raise
        if detached:
            return 0
        try:
            code = _wait_attached(c, c.pid)
        finally:
            if not args.keep:
                c.destroy(force=True)
            _reap_all()
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
    elif cmd == "events":
        print(json.dumps({"type": "stats", "id": c.id, "data": c.stats()}))
    elif cmd == "exec":
        return _exec(args, c)
    return 0


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
        proc["terminal"] = args.tty
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
    detached = args.detach
    pid = c.exec(proc, console_socket=args.console_socket, pid_file=args.pid_file,
                 subreaper=not detached, preserve_fds=args.preserve_fds)
    if detached:
        if c.console_master is not None:
            os.close(c.console_master)
        return 0
    return _wait_attached(c, pid)


if __name__ == "__main__":
    sys.exit(main())
