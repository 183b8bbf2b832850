"""SQLite (WAL) persistence of containers and volumes: one row per object, its record as JSON.

Names are unique through the database itself (a UNIQUE index), so two concurrent creates with
the same --name cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # containers
    def insert(self, cid: str, name: str, created: str, data: dict) -> None:
        """Raises sqlite3.IntegrityError when the id or the name is taken."""
        with self._lock:
            self._db.execute(
                "INSERT INTO containers (id, name, created, data) VALUES (?, ?, ?, ?)",
                (cid, name, created, json.dumps(data)),
            )

    def update(self, cid: str, data: dict, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._db.execute("UPDATE containers SET data = ? WHERE id = ?",
                                 (json.dumps(data), cid))
            else:
                self._db.execute("UPDATE containers SET data = ?, name = ? WHERE id = ?",
                                 (json.dumps(data), name, cid))

    def delete(self, cid: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM containers WHERE id = ?", (cid,))

    def id_by_name(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def all(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM containers ORDER BY created").fetchall()
        return [json.loads(r[0]) for r in rows]

    # volumes
    def put_volume(self, name: str, data: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO volumes (name, data) VALUES (?, ?)",
                             (name, json.dumps(data)))

    def get_volume(self, name: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM volumes WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_volume(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM volumes WHERE name = ?", (name,))

    def volumes(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM volumes ORDER BY name").fetchall()
        return [json.loads(r[0]) for r in rows]
