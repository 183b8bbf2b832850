"""The graph's metadata in SQLite (WAL): layers by chain ID, images, references, sources.

Reference counts are not stored but derived: a layer is in use while an image lists it (every
image row lists its whole chain, base first) or a container's rw layer sits on it. Deriving them
means they cannot drift when several images share layers and are removed in any order.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id  TEXT NOT NULL,
    parent   TEXT,                 -- parent chain ID
    cache_id TEXT NOT NULL UNIQUE, -- graphdriver id
    size     INTEGER NOT NULL,
    created  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS layer_blobs (  -- compressed (or plain) blobs known to hold a diff
    diff_id    TEXT NOT NULL,
    digest     TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL,
    PRIMARY KEY (diff_id, digest)
);
CREATE TABLE IF NOT EXISTS blob_sources (  -- where a blob is known to exist (cross-repo mounts)
    digest     TEXT NOT NULL,
    repository TEXT NOT NULL,            -- host/path, e.g. 127.0.0.1:5000/team/app
    PRIMARY KEY (digest, repository)
);
CREATE TABLE IF NOT EXISTS images (
    id      TEXT PRIMARY KEY,   -- sha256 of the config blob
    parent  TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    size    INTEGER NOT NULL,
    added   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    chain_id TEXT NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS refs (
    name     TEXT PRIMARY KEY,  -- normalized reference: repo:tag or repo@digest
    image_id TEXT NOT NULL,
    kind     TEXT NOT NULL,     -- 'tag' | 'digest'
    added    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
CREATE TABLE IF NOT EXISTS rw_layers (
    container_id TEXT PRIMARY KEY,
    image_id     TEXT NOT NULL,
    chain_id     TEXT,          -- the image's top layer (NULL for an image without layers)
    cache_id     TEXT NOT NULL
);
"""


class Database:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                    timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        with self.lock:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(SCHEMA)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock also serializes the graph's read-modify-write steps."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self.lock:
            return self.conn.execute(sql, args).fetchone()

    def close(self) -> None:
        with self.lock:
            self.conn.close()
