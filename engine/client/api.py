"""The Engine API client used by `skiff`: httpx over the unix socket for ordinary requests,
plain sockets for the two things httpx does not do (hijacked attach/exec streams, and a wait
whose headers must be seen before its body).

Hosts: SKIFF_HOST, then DOCKER_HOST, then unix:///run/skiff/skiff.sock.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import urllib.parse
from collections.abc import Iterator
from typing import Any

DEFAULT_HOST = "unix:///run/skiff/skiff.sock"
API_VERSION = "1.44"


class APIError(Exception):
    """The daemon answered with an error status (message is docker's {"message": ...})."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(message)


class ConnectError(APIError):
    def __init__(self, host: str, err: BaseException) -> None:
        super().__init__(0, f"Cannot connect to the Skiff daemon at {host}. Is skiffd running? "
                            f"({err})")


def default_host() -> str:
    return os.environ.get("SKIFF_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _qs(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    items: list[tuple[str, str]] = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "1" if v else "0"
        if isinstance(v, dict):
            v = json.dumps(v)
        if isinstance(v, list):
            items.extend((k, str(x)) for x in v)
            continue
        items.append((k, str(v)))
    return ("?" + urllib.parse.urlencode(items)) if items else ""


def _error(status: int, body: bytes) -> APIError:
    try:
        msg = json.loads(body).get("message") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        msg = body.decode(errors="replace").strip() or f"HTTP {status}"
    return APIError(status, msg)


class RawResponse:
    """An HTTP response read by hand from a socket: status, headers, then a body reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1])
        self.headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self._buf:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("connection closed by the daemon")
            self._buf += d
        head, self._buf = self._buf.split(sep, 1)
        return head

    def _read_n(self, n: int) -> bytes:
        while len(self._buf) < n:
            d = self.sock.recv(65536)
            if not d:
                break
            self._buf += d
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def leftover(self) -> bytes:
        """Bytes already read past the headers (the start of a hijacked stream)."""
        out, self._buf = self._buf, b""
        return out

    def iter_body(self) -> Iterator[bytes]:
        if self.status in (204, 304) or 100 <= self.status < 200 and self.status != 101:
            return
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0] or b"0", 16)
                if size == 0:
                    return
                yield self._read_n(size)
                self._read_n(2)
        elif "content-length" in self.headers:
            n = int(self.headers["content-length"])
            if n:
                yield self._read_n(n)
        else:
            if self._buf:
                yield self.leftover()
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return
                yield d

    def read(self) -> bytes:
        return b"".join(self.iter_body())


class Client:
    def __init__(self, host: str | None = None, version: str = API_VERSION,
                 timeout: float | None = None) -> None:
        self.host = host or default_host()
        self.version = version
        self.timeout = timeout
        if self.host.startswith("unix://") or self.host.startswith("/"):
            self.unix: str | None = self.host[len("unix://"):] if self.host.startswith("unix://") \
                else self.host
            self.tcp: tuple[str, int] | None = None
            self._base = "http://api.moby.localhost"
        elif self.host.startswith("tcp://") or self.host.startswith("http://"):
            hp = self.host.split("://", 1)[1].rstrip("/")
            h, _, p = hp.rpartition(":")
            self.unix = None
            self.tcp = (h or "127.0.0.1", int(p or 2375))
            self._base = f"http://{self.tcp[0]}:{self.tcp[1]}"
        else:
            raise APIError(0, f"unsupported host {self.host!r} (unix:// or tcp://)")
        self._http: Any = None
        self._sock: socket.socket | None = None

    # plumbing -----------------------------------------------------------------------------
    @property
    def http(self) -> Any:
        """An httpx client on the same socket, for callers that want httpx's API."""
        if self._http is None:
            import httpx

            transport = httpx.HTTPTransport(uds=self.unix) if self.unix else None
            self._http = httpx.Client(transport=transport, base_url=self._base,
                                      timeout=httpx.Timeout(self.timeout))
        return self._http

    def url(self, path: str, params: dict | None = None) -> str:
        return f"/v{self.version}{path}{_qs(params)}"

    def _send(self, sock: socket.socket, method: str, url: str, data: Any,
              headers: dict | None) -> None:
        """Write one request; an iterator body goes out chunked (load/import stream tars)."""
        hdr = [f"{method} {url} HTTP/1.1", "Host: api.moby.localhost", "User-Agent: skiff"]
        hdr += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if data is None or isinstance(data, bytes | bytearray):
            body = bytes(data or b"")
            hdr.append(f"Content-Length: {len(body)}")
            sock.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode() + body)
            return
        hdr.append("Transfer-Encoding: chunked")
        sock.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode())
        for chunk in data:
            if chunk:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")

    def request(self, method: str, path: str, params: dict | None = None, body: Any = None,
                data: Any = None, headers: dict | None = None) -> Any:
        """A request answered with JSON (or nothing); raises APIError on error statuses.

        Plain sockets with keep-alive rather than httpx: the CLI starts for every command,
        and importing httpx costs more than the whole request."""
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        url = self.url(path, params)
        for attempt in (0, 1):
            fresh = self._sock is None
            if self._sock is None:
                self._sock = self.connect()
            try:
                self._send(self._sock, method, url, data, headers)
                r = RawResponse(self._sock)
                content = r.read() if method != "HEAD" else b""
                break
            except (ConnectionError, OSError):
                self._drop()
                if fresh or attempt or not isinstance(data, bytes | None):
                    raise ConnectError(self.host, ConnectionError("connection lost")) from None
        if r.headers.get("connection", "").lower() == "close":
            self._drop()
        if r.status >= 400:
            raise _error(r.status, content)
        if not content:
            return None
        if "json" in r.headers.get("content-type", ""):
            return json.loads(content)
        return content

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params, body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params)

    def stream(self, method: str, path: str, params: dict | None = None, data: Any = None,
               headers: dict | None = None, body: Any = None) -> Iterator[bytes]:
        """Raw body chunks of a streamed answer, on a connection of its own."""
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        sock = self.connect()
        try:
            try:
                self._send(sock, method, self.url(path, params), data, headers)
                r = RawResponse(sock)
            except OSError as e:
                raise ConnectError(self.host, e) from None
            if r.status >= 400:
                raise _error(r.status, r.read())
            yield from r.iter_body()
        finally:
            sock.close()

    def stream_json(self, method: str, path: str, params: dict | None = None, data: Any = None,
                    headers: dict | None = None) -> Iterator[dict]:
        """JSON messages of a JSON-lines (or concatenated JSON) stream."""
        dec = json.JSONDecoder()
        buf = ""
        for chunk in self.stream(method, path, params, data, headers):
            buf += chunk.decode(errors="replace")
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    obj, end = dec.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                yield obj

    def connect(self) -> socket.socket:
        try:
            if self.unix:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.unix)
            else:
                assert self.tcp
                s = socket.create_connection(self.tcp)
        except OSError as e:
            raise ConnectError(self.host, e) from None
        return s

    def raw(self, method: str, path: str, params: dict | None = None, body: Any = None,
            upgrade: bool = False) -> RawResponse:
        """Send one request on a fresh socket and read the status and headers."""
        s = self.connect()
        data = json.dumps(body).encode() if body is not None else b""
        hdr = [f"{method} {self.url(path, params)} HTTP/1.1", "Host: api.moby.localhost",
               "User-Agent: skiff", f"Content-Length: {len(data)}"]
        if body is not None:
            hdr.append("Content-Type: application/json")
        if upgrade:
            hdr += ["Connection: Upgrade", "Upgrade: tcp"]
        s.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode() + data)
        r = RawResponse(s)
        if r.status >= 400:
            body_bytes = r.read()
            s.close()
            raise _error(r.status, body_bytes)
        return r

    def hijack(self, path: str, params: dict | None = None, body: Any = None
               ) -> tuple[socket.socket, bytes]:
        """-> (socket now carrying the raw stream, bytes of it already read)."""
        r = self.raw("POST", path, params, body, upgrade=True)
        if r.status not in (101, 200):
            r.sock.close()
            raise APIError(r.status, f"unexpected status {r.status} for {path}")
        return r.sock, r.leftover()

    def close(self) -> None:
        self._drop()
        if self._http is not None:
            self._http.close()

    # a few typed helpers the CLI shares ----------------------------------------------------
    @staticmethod
    def auth_header(auth: dict | None = None) -> dict[str, str]:
        return {"X-Registry-Auth": base64.urlsafe_b64encode(
            json.dumps(auth or {}).encode()).decode()}


def demux(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """Split a multiplexed stream into (stream number, payload) frames."""
    buf = b""
    for c in chunks:
        buf += c
        while len(buf) >= 8:
            st, size = buf[0], struct.unpack(">I", buf[4:8])[0]
            if len(buf) < 8 + size:
                break
            yield st, buf[8:8 + size]
            buf = buf[8 + size:]
    if buf:
        yield 1, buf[8:] if len(buf) >= 8 else buf


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data
