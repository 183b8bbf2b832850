"""Image references as docker spells them: `busybox`, `busybox:1.36`, `host:5000/a/b@sha256:...`.

Docker's defaults apply: no domain means `docker.io`, a one-component docker.io path gets
`library/`, no tag and no digest means `latest`. `familiar()` gives the short form docker shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$"
)
_SHA256_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """Fully qualified repository name, e.g. docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """The short repository name docker prints (busybox, user/app, host:5000/app)."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith("library/") and self.path.count("/") == 1:
                return self.path[len("library/"):]
            return self.path
        return self.repository

    def familiar(self) -> str:
        s = self.familiar_repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    @property
    def registry_host(self) -> str:
        """Where to connect: docker.io's API lives at registry-1.docker.io."""
        return "registry-1.docker.io" if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def name_only(self) -> bool:
        return self.tag is None and self.digest is None


def is_image_id(s: str) -> bool:
    return bool(_SHA256_RE.match(s)) or bool(re.fullmatch(r"[0-9a-f]{64}", s))


def parse(s: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalize a reference; raises InvalidParameter saying what is wrong with it."""
    if not s or s != s.strip():
        raise InvalidParameter(f"invalid reference format: {s!r}")
    rest = s
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidParameter(f"invalid reference format: bad digest in {s!r}")
        if digest.startswith("sha256:") and not _SHA256_RE.match(digest):
            raise InvalidParameter(f"invalid reference format: bad sha256 digest in {s!r}")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidParameter(f"invalid reference format: bad tag {tag!r} in {s!r}")
    if "/" in rest:
        first, remainder = rest.split("/", 1)
        if "." in first or ":" in first or first == "localhost" or first != first.lower():
            domain, path = first, remainder
        else:
            domain, path = DEFAULT_DOMAIN, rest
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if not _DOMAIN_RE.match(domain):
        raise InvalidParameter(f"invalid reference format: bad registry host {domain!r} in {s!r}")
    if path != path.lower() and _PATH_RE.match(path.lower()):
        raise InvalidParameter(
            f"invalid reference format: repository name must be lowercase: {s!r}")
    if not _PATH_RE.match(path) or len(path) > 255:
        raise InvalidParameter(f"invalid reference format: {s!r}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def normalize(s: str) -> str:
    """Full string form of a reference (docker.io/library/busybox:latest)."""
    return str(parse(s))
