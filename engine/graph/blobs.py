"""Content-addressed blob store: blobs/sha256/<hex>, written via a temp file and a verified rename.

A blob only ever appears under its name after its bytes were hashed and matched: a crash or a
digest mismatch leaves at most a temp file, which `cleanup_tmp` removes on start.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from engine.errors import InvalidParameter, NotFound

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class DigestMismatch(InvalidParameter):
    """The bytes received do not hash to the digest they were asked for."""


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest or ""):
        raise InvalidParameter(f"unsupported or malformed digest: {digest!r}")
    return digest


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BlobWriter:
    """Write a blob, hashing as it goes; commit() verifies and moves it into place."""

    def __init__(self, store: BlobStore, expect: str | None = None) -> None:
        self.store = store
        self.expect = check_digest(expect) if expect else None
        fd, name = tempfile.mkstemp(prefix="blob-", dir=store.tmp)
        self.path = Path(name)
        self.f = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def commit(self) -> str:
        self.f.close()
        d = self.digest
        if self.expect and d != self.expect:
            self.path.unlink(missing_ok=True)
            raise DigestMismatch(f"digest mismatch: expected {self.expect}, got {d}")
        os.rename(self.path, self.store.path(d))
        return d

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.f.closed:
            self.abort()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.tmp = root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.dir / check_digest(digest)[7:]

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def put(self, data: bytes, expect: str | None = None) -> str:
        w = self.writer(expect)
        w.write(data)
        return w.commit()

    def writer(self, expect: str | None = None) -> BlobWriter:
        return BlobWriter(self, expect)

    def adopt(self, path: Path, digest: str | None = None) -> str:
        """Move an existing file into the store (hashing it, or trusting a digest just computed)."""
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            digest = "sha256:" + h.hexdigest()
        os.rename(path, self.path(digest))
        return digest

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def all(self) -> list[str]:
        return ["sha256:" + p.name for p in self.dir.iterdir()]

    def cleanup_tmp(self) -> None:
        for p in self.tmp.iterdir():
            if p.is_file():
                p.unlink(missing_ok=True)
            else:
                import shutil

                shutil.rmtree(p, ignore_errors=True)
