"""Exec area: create, start (hijacked like attach), resize, inspect."""

from __future__ import annotations

from typing import Any

from engine.containers.logs import frame
from engine.daemon.errors import Conflict, InvalidParameter, SkiffError
from engine.daemon.router import Backends, str_list, terminal_size, want
from engine.daemon.server import Hijack, Request, Response


def validate_exec(body: Any) -> dict:
    if not isinstance(body, dict):
        raise InvalidParameter("exec config must be a JSON object")
    cmd = str_list(body.get("Cmd"), "Cmd")
    if not cmd:
        raise InvalidParameter("No exec command specified")
    for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "Privileged"):
        want(body, k, bool, "")
    for k in ("User", "WorkingDir", "DetachKeys"):
        want(body, k, str, "")
    str_list(body.get("Env"), "Env")
    wd = body.get("WorkingDir")
    if wd and not wd.startswith("/"):
        raise InvalidParameter(f"the working directory '{wd}' is invalid, it needs to be an "
                               "absolute path")
    return dict(body, Cmd=cmd)


def console_size(body: dict) -> list[int] | None:
    """ExecStartCheck.ConsoleSize ([h, w]): the CLI's terminal size, so `exec -it` starts sized
    instead of at 0x0 until the first resize arrives."""
    v = want(body, "ConsoleSize", list, "", default=None)
    if v is None:
        return None
    if len(v) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                              for x in v):
        raise InvalidParameter(f"invalid ConsoleSize {v!r}: want [height, width]")
    return [int(v[0]), int(v[1])] if any(v) else None


def routes(b: Backends) -> list:
    eng = b.engine

    def cm() -> Any:
        return b.need("containers")

    def create(req: Request, name: str) -> Response:
        cfg = validate_exec(req.json())
        eid = eng.run("exec.create", cm().exec_create, name, cfg,
                      _job_args={"container": name, "cmd": cfg["Cmd"]})
        return Response.json({"Id": eid}, 201)

    def start(req: Request, id: str) -> Response | Hijack:
        body = req.json({}) or {}
        detach = bool(want(body, "Detach", bool, "", default=False))
        tty = want(body, "Tty", bool, "", default=None)
        size = console_size(body)
        m = cm()
        info = m.exec_inspect(id)  # 404 before upgrading
        if info.get("Running"):
            raise Conflict(f"exec {id} is already running")
        if tty is None:
            tty = bool((info.get("ProcessConfig") or {}).get("tty"))
        if detach:
            eng.run("exec.start", m.exec_start, id, None, True, tty, console_size=size,
                    _job_args={"id": id})
            return Response(200)

        def run(sock) -> None:
            try:
                eng.run("exec.start", m.exec_start, id, sock, False, tty, console_size=size,
                        _job_args={"id": id})
            except SkiffError as e:  # the 101 is out: docker writes the error into the stream
                msg = f"{e}\r\n".encode()
                sock.sendall(msg if tty else frame(2, msg))

        return Hijack(run, multiplexed=not tty)

    def resize(req: Request, id: str) -> Response:
        h, w = terminal_size(req)
        cm().exec_resize(id, h, w)
        return Response(200)

    def inspect(req: Request, id: str) -> Response:
        return Response.json(cm().exec_inspect(id))

    return [
        ("POST", "/containers/{name}/exec", create),
        ("POST", "/exec/{id}/start", start),
        ("POST", "/exec/{id}/resize", resize),
        ("GET", "/exec/{id}/json", inspect),
    ]
