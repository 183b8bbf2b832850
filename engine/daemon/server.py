"""HTTP/1.1 server for the Engine API: h11 (sans-IO) over blocking sockets, a thread per
connection.

Why threads and blocking sockets: every backend (libcontainer, SQLite, the graph) is blocking,
a handler may legitimately block for minutes (wait, logs -f, events, attach), and one slow or
half-closed client must never hold up the others. A thread per connection gives exactly that
isolation with the least machinery.

Handlers return one of three answers:
  Response  a complete body (JSON or bytes)
  Stream    a chunked body from an iterator; headers are flushed before the first item, so a
            `wait` client knows its waiter exists; a None item is an idle tick used to notice a
            client that went away
  Hijack    the connection becomes a raw byte stream (101 UPGRADED) handed to a callback, as
            attach and exec start need
"""

from __future__ import annotations

import builtins
import http
import json
import logging
import os
import re
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h11

from engine import __version__
from engine.daemon import errors as errmap

log = logging.getLogger("skiffd.server")

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def vtuple(v: str) -> tuple[int, int]:
    a, _, b = v.partition(".")
    return int(a), int(b or 0)


def common_headers() -> list[tuple[str, str]]:
    return [
        ("Api-Version", API_VERSION),
        ("Ostype", "linux"),
        ("Docker-Experimental", "false"),
        ("Server", f"Skiff/{__version__} (linux)"),
    ]


# ----------------------------------------------------------------------------------------
# request / answers


class BodyReader:
    """File-like reader over the request body, pulling h11 events as it is read.

    Why lazy: `images/load` and `import` bodies are whole tar archives; the graph reads them as
    a stream instead of the daemon holding them in memory."""

    def __init__(self, conn: _Conn) -> None:
        self._c = conn
        self._buf = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        if self._c.h.they_are_waiting_for_100_continue:  # curl -T, big uploads
            self._c.send(h11.InformationalResponse(status_code=100, headers=[]))
        while not self.eof:
            ev = self._c.next_event()
            if isinstance(ev, h11.Data):
                self._buf += ev.data
                return True
            if isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                self.eof = True
                return False
            if ev is h11.PAUSED:
                self.eof = True
                return False
        return False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            while self._fill():
                pass
            out, self._buf = bytes(self._buf), bytearray()
            return out
        while len(self._buf) < n and self._fill():
            pass
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self._fill():
            self._buf.clear()


@dataclass
class Request:
    method: str
    path: str  # without the /v1.NN prefix
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    version: str  # API version in effect for this request
    body: BodyReader | Any = None
    params: dict[str, str] = field(default_factory=dict)
    peer_closed: Callable[[], bool] = lambda: False
    _cache: bytes | None = None

    def data(self) -> bytes:
        if self._cache is None:
            self._cache = self.body.read() if self.body is not None else b""
        return self._cache

    def json(self, default: Any = None) -> Any:
        raw = self.data()
        if not raw.strip():
            return default
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise errmap.InvalidParameter(f"invalid JSON in request body: {e}") from None

    def arg(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[-1] if v else default

    def bool(self, name: str, default: bool = False) -> bool:
        v = self.arg(name)
        if v is None:
            return default
        return v.strip().lower() not in ("", "0", "false", "no", "off")

    def int(self, name: str, default: builtins.int | None = None) -> builtins.int | None:
        v = self.arg(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise errmap.InvalidParameter(f"invalid value for {name}: {v!r} is not an integer") \
                from None

    def json_arg(self, name: str, default: Any = None) -> Any:
        """Query values that carry JSON (filters, buildargs)."""
        v = self.arg(name)
        if not v:
            return default
        try:
            return json.loads(v)
        except ValueError:
            raise errmap.InvalidParameter(f"invalid {name} JSON: {v!r}") from None

    def version_at_least(self, v: str) -> builtins.bool:
        return vtuple(self.version) >= vtuple(v)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(obj).encode() + b"\n", "application/json")


@dataclass
class Stream:
    chunks: Iterable[bytes | None]
    status: int = 200
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Hijack:
    """Turn the connection into a raw stream; fn(sock) runs with the upgraded socket.
    cancel() runs instead when the 101 could not be sent (the handler registered something
    before answering, e.g. an attacher, that must not wait for a stream that never comes)."""

    fn: Callable[[socket.socket], None]
    multiplexed: bool = False
    cancel: Callable[[], None] | None = None


Handler = Callable[..., Response | Stream | Hijack | None]


# ----------------------------------------------------------------------------------------
# routing


class Router:
    """A route table: (method, pattern) -> handler(req, **params)."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        # {name} matches one segment, {name:.*} anything (image names carry slashes)
        def conv(m: re.Match[str]) -> str:
            name, _, rx = m.group(1).partition(":")
            return f"(?P<{name}>{rx or '[^/]+'})"

        rx = re.compile("^" + re.sub(r"\{([^}]+)\}", conv, pattern) + "$")
        self.routes.append((method.upper(), rx, handler))

    def include(self, routes: Iterable[tuple[str, str, Handler]]) -> None:
        for method, pattern, handler in routes:
            self.add(method, pattern, handler)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for m, rx, h in self.routes:
            mt = rx.match(path)
            if mt:
                if m == method or (method == "HEAD" and m == "GET"):
                    return h, {k: urllib.parse.unquote(v) for k, v in mt.groupdict().items()}
                allowed = True
        if allowed:
            raise errmap.MethodNotAllowed(f"method {method} not allowed for {path}")
        raise errmap.NotFound(f"page not found: {method} {path}")


def parse_target(target: str) -> tuple[str, str, dict[str, list[str]]]:
    """-> (api version or '', path, query). Raises InvalidParameter for out-of-range versions."""
    parts = urllib.parse.urlsplit(target)
    path = parts.path or "/"
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    m = _VERSIONED.match(path)
    if not m:
        return "", path, query
    ver = f"{int(m.group(1))}.{int(m.group(2))}"
    if vtuple(ver) > vtuple(API_VERSION):
        raise errmap.InvalidParameter(
            f"client version {ver} is too new. Maximum supported API version is {API_VERSION}")
    if vtuple(ver) < vtuple(MIN_API_VERSION):
        raise errmap.InvalidParameter(
            f"client version {ver} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    return ver, m.group(3), query


# ----------------------------------------------------------------------------------------
# connections


class _Conn:
    """One client connection: the socket plus its h11 state machine."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)

    def next_event(self) -> Any:
        while True:
            ev = self.h.next_event()
            if ev is h11.NEED_DATA:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    data = b""
                self.h.receive_data(data)
                continue
            return ev

    def send(self, ev: Any) -> None:
        data = self.h.send(ev)
        if data:
            self.sock.sendall(data)

    def peer_closed(self) -> bool:
        """True when the client has closed (or reset) its side, checked without blocking.

        Why peek: during a chunked stream the client sends nothing; EOF on read is the only
        sign it left. Pipelined bytes (none are expected mid-stream) are left in place."""
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return False
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


class Server:
    """Accept loop plus one thread per connection."""

    def __init__(self, router: Router, listeners: list[socket.socket]) -> None:
        self.router = router
        self.listeners = listeners
        self._stop = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    # listening -----------------------------------------------------------------------
    @staticmethod
    def listen(addr: str, *, mode: int = 0o660, group: str | None = "skiff") -> socket.socket:
        """unix:///path, /path, or tcp://HOST:PORT -> a listening socket."""
        if addr.startswith("tcp://"):
            hp = addr[len("tcp://"):].rstrip("/")
            host, _, port = hp.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, int(port or 2375)))
            s.listen(128)
            return s
        path = addr[len("unix://"):] if addr.startswith("unix://") else addr
        os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket from a daemon that died
            else:
                probe.close()
                raise errmap.Conflict(f"another daemon is listening on {path}")
            finally:
                probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        if group:
            try:
                import grp

                os.chown(path, 0, grp.getgrnam(group).gr_gid)
            except (KeyError, PermissionError):
                pass
        s.listen(128)
        return s

    def serve_forever(self) -> None:
        threads = [threading.Thread(target=self._accept_loop, args=(ls,), daemon=True)
                   for ls in self.listeners]
        for t in threads:
            t.start()
        self._stop.wait()

    def start(self) -> None:
        for ls in self.listeners:
            threading.Thread(target=self._accept_loop, args=(ls,), daemon=True).start()

    def shutdown(self) -> None:
        """Stop accepting and close client connections (containers keep running)."""
        self._stop.set()
        for ls in self.listeners:
            try:
                path = ls.getsockname() if ls.family == socket.AF_UNIX else None
                ls.close()
                if path and isinstance(path, str) and os.path.exists(path):
                    os.unlink(path)
            except OSError:
                pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self, ls: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = ls.accept()
            except OSError:
                if self._stop.is_set():
                    return
                continue
            t = threading.Thread(target=self._serve_conn, args=(sock,), daemon=True)
            t.start()

    # one connection ---------------------------------------------------------------------
    def _serve_conn(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.add(sock)
        conn = _Conn(sock)
        try:
            while not self._stop.is_set():
                if not self._one_request(conn):
                    break
                if conn.h.our_state is h11.MUST_CLOSE or conn.h.their_state is h11.MUST_CLOSE:
                    break
                try:
                    conn.h.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (OSError, h11.ProtocolError) as e:
            log.debug("connection ended: %s", e)
        except Exception:  # noqa: BLE001 - a bug must end one connection, not the daemon
            log.exception("connection crashed")
        finally:
            with self._lock:
                self._conns.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _one_request(self, conn: _Conn) -> bool:
        """Serve one request; False when the connection must end (closed or hijacked)."""
        try:
            ev = conn.next_event()
        except h11.RemoteProtocolError as e:
            self._send_error_raw(conn, 400, f"bad request: {e}")
            return False
        if isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
            return False
        if not isinstance(ev, h11.Request):
            return False
        method = ev.method.decode("latin-1").upper()
        target = ev.target.decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in ev.headers}
        body = BodyReader(conn)
        t0 = time.monotonic()
        try:
            ver, path, query = parse_target(target)
            req = Request(method, path, query, headers, ver or API_VERSION, body,
                          peer_closed=conn.peer_closed)
            handler, params = self.router.match(method, path)
            req.params = params
            answer = handler(req, **params)
        except Exception as e:  # noqa: BLE001 - every error becomes a status + message
            status, msg = errmap.to_status(e)
            if status >= 500:
                log.error("%s %s -> %s: %s", method, target, status, msg,
                          exc_info=not isinstance(e, errmap.SkiffError))
            answer = Response.json({"message": msg}, status)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s in %.1f ms", method, target,
                      getattr(answer, "status", "hijack") if answer is not None else 204,
                      (time.monotonic() - t0) * 1000)
        if answer is None:
            answer = Response(204)
        if isinstance(answer, Hijack):
            return self._hijack(conn, headers, answer)
        # the handler may have left part of the body unread: consume it before answering
        try:
            body.drain()
        except h11.ProtocolError:
            pass
        if isinstance(answer, Stream):
            self._stream(conn, method, answer)
            return True
        hdrs = common_headers() + answer.headers
        if answer.content_type:
            hdrs.append(("Content-Type", answer.content_type))
        if answer.status not in (204, 304):
            hdrs.append(("Content-Length", str(len(answer.body))))
        conn.send(h11.Response(status_code=answer.status, headers=hdrs,
                               reason=_reason(answer.status)))
        if answer.body and method != "HEAD" and answer.status not in (204, 304):
            conn.send(h11.Data(data=answer.body))
        conn.send(h11.EndOfMessage())
        return True

    def _stream(self, conn: _Conn, method: str, s: Stream) -> None:
        hdrs = common_headers() + s.headers + [("Content-Type", s.content_type),
                                              ("Transfer-Encoding", "chunked")]
        conn.send(h11.Response(status_code=s.status, headers=hdrs, reason=_reason(s.status)))
        it: Iterator[bytes | None] = iter(s.chunks)
        try:
            for chunk in it:
                if chunk is None:  # idle tick: stop if the client went away
                    if conn.peer_closed():
                        raise ConnectionResetError("client went away")
                    continue
                if chunk and method != "HEAD":
                    conn.send(h11.Data(data=chunk))
            conn.send(h11.EndOfMessage())
        except Exception as e:
            # headers are out: the only honest signal left is ending the connection
            if not isinstance(e, OSError):
                log.warning("stream %s ended by error: %s", s, e)
                try:
                    status, msg = errmap.to_status(e)
                    if s.content_type == "application/json":
                        conn.send(h11.Data(data=json.dumps({"error": msg}).encode() + b"\n"))
                        conn.send(h11.EndOfMessage())
                        return
                except Exception:  # noqa: BLE001
                    pass
            raise OSError("stream aborted") from e
        finally:
            close = getattr(it, "close", None)
            if close:
                close()

    def _hijack(self, conn: _Conn, headers: dict[str, str], h: Hijack) -> bool:
        """Answer 101 UPGRADED (or 200 for clients that did not ask to upgrade) and hand the
        raw socket over. Bytes the client sent after the request (early stdin) go first."""
        upgrade = "upgrade" in headers.get("connection", "").lower()
        ctype = ("application/vnd.docker.multiplexed-stream" if h.multiplexed
                 else "application/vnd.docker.raw-stream")
        lines = (["HTTP/1.1 101 UPGRADED", "Connection: Upgrade", "Upgrade: tcp"] if upgrade
                 else ["HTTP/1.1 200 OK"])
        lines += [f"{k}: {v}" for k, v in common_headers()] + [f"Content-Type: {ctype}"]
        sock = conn.sock
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        except BaseException:
            if h.cancel is not None:
                h.cancel()
            raise
        trailing, closed = conn.h.trailing_data
        pump: threading.Thread | None = None
        if trailing or closed:
            sock, pump = _prefixed(sock, trailing, closed)
        try:
            h.fn(sock)
        finally:
            try:
                sock.shutdown(socket.SHUT_WR if pump else socket.SHUT_RDWR)
            except OSError:
                pass
            if pump is not None:
                pump.join(10)  # everything the backend wrote reaches the client first
                sock.close()
        return False

    @staticmethod
    def _send_error_raw(conn: _Conn, status: int, msg: str) -> None:
        body = json.dumps({"message": msg}).encode()
        hdr = "".join(f"{k}: {v}\r\n" for k, v in common_headers())
        try:
            conn.sock.sendall(
                f"HTTP/1.1 {status} Bad Request\r\n{hdr}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        except OSError:
            pass


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _prefixed(sock: socket.socket, data: bytes, closed: bool
              ) -> tuple[socket.socket, threading.Thread]:
    """A socket whose reads yield `data` first and then the client's stream.

    Why a socketpair: backends take a real socket (they select/splice on it); bytes h11
    already buffered must reach them in order, which a pump thread guarantees."""
    a, b = socket.socketpair()
    # client -> backend: the buffered bytes, then the rest unless the client already closed
    threading.Thread(target=_pump, args=(sock, a, data, not closed), daemon=True).start()
    t = threading.Thread(target=_pump, args=(a, sock), daemon=True)  # backend -> client
    t.start()
    return b, t


def _pump(src: socket.socket, dst: socket.socket, first: bytes = b"", more: bool = True
          ) -> None:
    """Copy `first`, then src until EOF (if `more`), to dst; then half-close dst."""
    try:
        if first:
            dst.sendall(first)
        while more:
            d = src.recv(65536)
            if not d:
                break
            dst.sendall(d)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
