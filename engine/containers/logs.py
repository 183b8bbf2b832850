"""docker's json-file log driver: one {"log","stream","time"} object per line, size rotation
(max-size / max-file), and the reader behind `docker logs` (tail, since/until, follow)."""

from __future__ import annotations

import collections
import json
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.errors import InvalidParameter

from .state import iso_from_ns, parse_iso

STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}
MAX_PARTIAL = 16 * 1024  # docker splits lines longer than this into partial entries
LOG_DRIVERS = ("json-file", "local", "none")
JSON_FILE_OPTS = {"max-size", "max-file", "compress", "labels", "env", "env-regex", "tag",
                  "labels-regex", "mode", "max-buffer-size"}


def frame(stream: int, payload: bytes) -> bytes:
    """docker's multiplexed stream frame: [stream, 0, 0, 0, size BE32] + payload."""
    return struct.pack(">BxxxI", stream, len(payload)) + payload


def ram_in_bytes(s: str) -> int:
    """go-units RAMInBytes ("10m" = 10 MiB), as engine.units parses it; -1 means unlimited."""
    if s.strip() == "-1":
        return -1
    try:
        from engine import units
    except ImportError:
        units = None  # type: ignore[assignment]
    if units is not None:
        try:
            return units.ram_in_bytes(s)
        except ValueError as e:
            raise InvalidParameter(f"invalid size: '{s}': {e}") from None
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*", s, re.IGNORECASE)
    if not m:
        raise InvalidParameter(f"invalid size: '{s}'")
    num = float(m.group(1))
    mult = 1024 ** "kmgtp".find(m.group(2).lower()) * 1024 if m.group(2) else 1
    return int(num * mult)


def parse_log_config(log_config: dict | None) -> tuple[str, int, int]:
    """(driver, max_size bytes or -1, max_file) with dockerd's validation messages."""
    log_config = log_config or {}
    driver = log_config.get("Type") or "json-file"
    if driver not in LOG_DRIVERS:
        raise InvalidParameter(f'failed to create task for container: logger: no log driver named'
                               f' \'{driver}\' is registered')
    opts = log_config.get("Config") or {}
    max_size, max_file = -1, 1
    if driver == "none":
        if opts:
            raise InvalidParameter(f"unknown log opt '{next(iter(opts))}' for none log driver")
        return driver, max_size, max_file
    for k in opts:
        if k not in JSON_FILE_OPTS:
            raise InvalidParameter(f"unknown log opt '{k}' for {driver} log driver")
    if "max-size" in opts:
        max_size = ram_in_bytes(str(opts["max-size"]))
        if max_size == 0:
            max_size = -1
    if "max-file" in opts:
        try:
            max_file = int(opts["max-file"])
        except ValueError:
            raise InvalidParameter(f"invalid value for max-file: {opts['max-file']}") from None
        if max_file < 1:
            raise InvalidParameter("max-file cannot be less than 1")
        if max_file > 1 and max_size == -1:
            raise InvalidParameter("max-file can only be used together with max-size")
    return driver, max_size, max_file


class JsonFileWriter:
    """Append-only writer used by the monitor: splits on newlines, rotates by size."""

    def __init__(self, path: Path, max_size: int = -1, max_file: int = 1) -> None:
        self.path = Path(path)
        self.max_size, self.max_file = max_size, max_file
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - long-lived
        self._size = self._fh.tell()

    def write(self, stream: str, data: bytes) -> None:
        """One entry per line (lines over 16 KiB are split, as docker does); one write(2) per
        call unless a rotation falls in between."""
        buf = self._partial.get(stream, b"") + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        pieces: list[bytes] = []
        for line in lines:
            while len(line) > MAX_PARTIAL:
                pieces.append(line[:MAX_PARTIAL])
                line = line[MAX_PARTIAL:]
            pieces.append(line + b"\n")
        while len(rest) > MAX_PARTIAL:
            pieces.append(rest[:MAX_PARTIAL])
            rest = rest[MAX_PARTIAL:]
        self._partial[stream] = rest
        if pieces:
            self._entries(stream, pieces)

    def flush(self) -> None:
        """At exit: a last line without its newline is still a log entry."""
        for stream, buf in self._partial.items():
            if buf:
                self._entries(stream, [buf])
            self._partial[stream] = b""

    def close(self) -> None:
        self.flush()
        self._fh.close()

    def _entries(self, stream: str, pieces: list[bytes]) -> None:
        tail = f',"stream":"{stream}","time":"{iso_from_ns(time.time_ns())}"}}\n'.encode()
        out = bytearray()
        for raw in pieces:
            line = b'{"log":' + json.dumps(raw.decode("utf-8", "replace"),
                                           ensure_ascii=False).encode() + tail
            if (self.max_size > 0 and self._size + len(out) > 0
                    and self._size + len(out) + len(line) > self.max_size):
                if out:
                    self._fh.write(out)
                    self._size += len(out)
                    out = bytearray()
                self._rotate()
            out += line
        if out:
            self._fh.write(out)
            self._size += len(out)

    def _rotate(self) -> None:
        self._fh.close()
        if self.max_file < 2:
            self._fh = open(self.path, "wb", buffering=0)  # noqa: SIM115
        else:
            last = self.path.with_name(f"{self.path.name}.{self.max_file - 1}")
            last.unlink(missing_ok=True)
            for i in range(self.max_file - 2, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.rename(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.rename(self.path, self.path.with_name(f"{self.path.name}.1"))
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._size = 0


def log_files(path: Path) -> list[Path]:
    """Oldest first: path.N ... path.1, path."""
    path = Path(path)
    rotated = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    out = [p for _, p in sorted(rotated, reverse=True)]
    if path.exists():
        out.append(path)
    return out


def _parse(line: bytes) -> dict | None:
    try:
        d = json.loads(line)
    except ValueError:
        return None
    return d if isinstance(d, dict) and "log" in d else None


def parse_time_arg(v: str | float | int | None) -> float:
    """since/until query values: unix seconds with optional fraction, or RFC 3339."""
    if v in (None, "", 0, "0"):
        return 0.0
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(v)
    except ValueError:
        pass
    try:
        return parse_iso(v)
    except ValueError:
        raise InvalidParameter(f"invalid value for time: {v!r}") from None


def render(entry: dict, *, tty: bool, timestamps: bool) -> bytes:
    payload = entry["log"].encode()
    if timestamps:
        payload = entry.get("time", "").encode() + b" " + payload
    if tty:
        return payload
    return frame(STREAMS.get(entry.get("stream", "stdout"), 1), payload)


def read_logs(path: Path, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
              since: float = 0.0, until: float = 0.0, timestamps: bool = False, tail: int = -1,
              tty: bool = False, running: Callable[[], bool] | None = None,
              poll: float = 0.05) -> Iterator[bytes]:
    """Rendered log entries (framed unless tty); with follow, until running() turns False."""
    wanted = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}

    def keep(e: dict) -> bool:
        if e.get("stream") not in wanted:
            return False
        if since or until:
            t = parse_iso(e.get("time", ""))
            if since and t < since:
                return False
            if until and t > until:
                return False
        return True

    # With follow, the live file is opened first and read on from where the history ended:
    # a reopen + seek to the end lost every line written in between (docker-py's run() follows
    # from the start, so a slow container's middle lines went missing).
    fh = None
    if follow:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed in the finally below
        except FileNotFoundError:
            fh = None
    rotated = [f for f in log_files(path) if f != Path(path)]
    entries: collections.deque[dict] | list[dict] = (
        collections.deque(maxlen=tail) if tail > 0 else []
    )
    buf = b""

    def history(lines: collections.abc.Iterable[bytes]) -> None:
        if tail == 0:
            return
        for line in lines:
            e = _parse(line)
            if e is not None and keep(e):
                entries.append(e)

    for f in rotated:
        with open(f, "rb") as h:
            history(h)
    if follow:
        if fh is not None:
            *lines, buf = fh.read().split(b"\n")  # a partial last line waits for its end
            history(lines)
    elif Path(path).exists():
        with open(path, "rb") as h:
            history(h)
    try:
        for entry in entries:
            yield render(entry, tty=tty, timestamps=timestamps)
        if not follow:
            return
        while True:
            got = False
            if fh is not None:
                chunk = fh.read()
                if chunk:
                    got = True
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        e = _parse(line)
                        if e is not None and keep(e):
                            if until and parse_iso(e.get("time", "")) > until:
                                return
                            yield render(e, tty=tty, timestamps=timestamps)
                try:
                    st = os.stat(path)
                    if st.st_ino != os.fstat(fh.fileno()).st_ino or st.st_size < fh.tell():
                        if not got:  # drained the old file: switch to the new one
                            fh.close()
                            fh = open(path, "rb")  # noqa: SIM115
                            buf = b""
                            continue
                except FileNotFoundError:
                    pass
            else:
                try:
                    fh = open(path, "rb")  # noqa: SIM115
                    continue
                except FileNotFoundError:
                    pass
            if got:
                continue
            if running is not None and not running():
                # one last read after the writer is gone
                if fh is not None:
                    rest = buf + fh.read()
                    for line in rest.split(b"\n"):
                        e = _parse(line)
                        if e is not None and keep(e):
                            yield render(e, tty=tty, timestamps=timestamps)
                return
            if until and time.time() > until:
                return
            time.sleep(poll)
    finally:
        if fh is not None:
            fh.close()
