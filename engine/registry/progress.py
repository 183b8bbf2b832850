"""docker's JSON-lines progress messages (what `docker pull` renders), produced per layer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Emit = Callable[[dict], None]


def human_size(n: float) -> str:
    """Decimal units with 3 significant digits, as docker's go-units HumanSize."""
    units = ["B", "kB", "MB", "GB", "TB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.3g}{units[i]}"


def bar(current: int, total: int, width: int = 50) -> str:
    if total <= 0:
        return f"{human_size(current)}"
    pct = min(1.0, current / total)
    n = int(pct * width)
    arrow = ">" if n < width else ""
    filled = "=" * n + arrow
    return f"[{filled}{' ' * (width - len(filled))}] {human_size(current):>8}/{human_size(total)}"


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class LayerProgress:
    """Throttled 'Downloading'/'Extracting'/'Pushing' messages for one layer."""

    def __init__(self, emit: Emit, id: str, status: str, total: int, interval: float = 0.1):
        self.emit, self.id, self.status, self.total = emit, id, status, total
        self.current = 0
        self.interval = interval
        self._last = 0.0
        self._done = False
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.current += n
            now = time.monotonic()
            done = self.total and self.current >= self.total
            if now - self._last < self.interval and not done:
                return
            if done and self._done:
                return
            self._done = bool(done)
            self._last = now
            cur = self.current
        self.emit({"status": self.status, "progressDetail": {"current": cur, "total": self.total},
                   "progress": bar(cur, self.total), "id": self.id})


def message(emit: Emit, status: str, id: str | None = None) -> None:
    d: dict = {"status": status}
    if id is not None:
        d["progressDetail"] = {}
        d["id"] = id
    emit(d)
