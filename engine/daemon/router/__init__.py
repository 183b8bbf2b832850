"""Route tables, one module per API area (like moby's api/server/router/<area>).

Each area module has `routes(b: Backends) -> list[(method, pattern, handler)]`; handlers only
parse and validate the request, call the backend through the Engine (so the operation is a
Job), and serialize the answer. The backends are duck-typed (see CONTRACTS.md), which is what
lets tests/unit/test_router_*.py drive every handler against small fakes.
"""

from __future__ import annotations

import json
import platform
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.daemon.errors import InvalidParameter, Unavailable
from engine.jobs import Engine


@dataclass
class Backends:
    engine: Engine
    containers: Any = None  # engine.containers.ContainerManager
    images: Any = None  # engine.graph.Graph
    networks: Any = None  # engine.drivers.network.NetworkDriver
    config: dict[str, Any] = field(default_factory=dict)  # daemon settings for /info

    def need(self, name: str) -> Any:
        b = getattr(self, name)
        if b is None:
            raise Unavailable(f"the {name} backend is not available in this daemon")
        return b

    @property
    def volumes(self) -> Any:
        v = getattr(self.need("containers"), "volumes", None)
        if v is None:
            raise Unavailable("the volumes backend is not available in this daemon")
        return v


def build(b: Backends):
    """The daemon's full router."""
    from engine.daemon.router import containers, exec, images, networks, system, volumes
    from engine.daemon.server import Router

    r = Router()
    for area in (system, containers, exec, images, networks, volumes):
        r.include(area.routes(b))
    return r


# ---- helpers shared by the areas -----------------------------------------------------------

def terminal_size(req: Any) -> tuple[int, int]:
    """?h=&w= of the container and exec resize routes (missing means 0, docker's default)."""
    h, w = req.int("h", 0) or 0, req.int("w", 0) or 0
    if h < 0 or w < 0:
        raise InvalidParameter(f"invalid terminal size {h}x{w}")
    return h, w


def want(obj: Any, key: str, types: type | tuple[type, ...], where: str, default: Any = None,
         required: bool = False) -> Any:
    """Type-check one JSON field, with docker-like messages."""
    if not isinstance(obj, dict):
        raise InvalidParameter(f"{where or 'body'}: expected a JSON object")
    v = obj.get(key, default)
    if v is None:
        if required:
            raise InvalidParameter(f"{where}{key} is required")
        return default
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InvalidParameter(f"json: cannot unmarshal bool into field {where}{key}")
    if not isinstance(v, types):
        tn = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise InvalidParameter(
            f"json: cannot unmarshal {type(v).__name__} into field {where}{key} of type {tn}")
    return v


def str_list(v: Any, where: str) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidParameter(f"{where}: expected a list of strings, got {v!r}")
    return v


def filters(raw: Any) -> dict[str, list[str]]:
    """docker's filters: {"k": ["v"]} or the old {"k": {"v": true}} shape."""
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameter(f"invalid filters: {raw!r}")
    out: dict[str, list[str]] = {}
    for k, v in raw.items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        elif isinstance(v, str):
            out[k] = [v]
        else:
            raise InvalidParameter(f"invalid filter {k!r}: {v!r}")
    return out


def json_line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


def progress_stream(run: Callable[[Callable[[dict], None]], Any],
                    last: Callable[[Any], list[dict]] | None = None,
                    tick: float = 1.0) -> Iterator[bytes | None]:
    """Run `run(progress)` in a thread; yield its progress dicts as JSON lines as they come.

    Why a thread: the backend calls progress() synchronously from inside pull/push/load, while
    the server must write each line to the client as it happens (and notice a client that
    left). Errors become docker's in-stream {"errorDetail", "error"} line, since the 200 is out.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue()

    def worker() -> None:
        try:
            res = run(lambda d: q.put(("p", d)))
            q.put(("done", res))
        except BaseException as e:  # noqa: BLE001 - reported to the client in-stream
            q.put(("err", e))

    threading.Thread(target=worker, daemon=True).start()
    while True:
        try:
            kind, val = q.get(timeout=tick)
        except queue.Empty:
            yield None
            continue
        if kind == "p":
            yield json_line(val)
        elif kind == "done":
            for d in (last(val) if last else []):
                yield json_line(d)
            return
        else:
            msg = str(val) or type(val).__name__
            yield json_line({"errorDetail": {"message": msg}, "error": msg})
            return


def ticking(items: Iterable[bytes], tick: float = 1.0) -> Iterator[bytes | None]:
    """Yield items from a blocking iterator, with None on every quiet `tick`.

    Why: `logs -f` blocks in the backend until the container writes; the idle ticks let the
    server notice a client that went away and free the connection. The producer thread ends
    with the next item (or the container's end) once nobody reads."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=256)
    gone = threading.Event()

    def producer() -> None:
        it = iter(items)
        try:
            for item in it:
                if gone.is_set():
                    break
                q.put(("i", item))
            q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the reader
            q.put(("err", e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass

    threading.Thread(target=producer, daemon=True).start()
    try:
        while True:
            try:
                kind, val = q.get(timeout=tick)
            except queue.Empty:
                yield None
                continue
            if kind == "i":
                yield val
            elif kind == "end":
                return
            else:
                raise val
    finally:
        gone.set()
        while not q.empty():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                break


def host_info() -> dict[str, str]:
    u = platform.uname()
    return {"kernel": u.release, "arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
        u.machine, u.machine), "hostname": u.node}
