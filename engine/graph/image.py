"""An image as the graph knows it: its config, references and layer chain; docker's JSON shapes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Chain IDs as the OCI image spec defines them: one per layer, naming the stack below it."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def parse_time(s: str) -> float:
    if not s:
        return 0.0
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    # Go writes nanoseconds; Python takes at most microseconds.
    if "." in s:
        head, _, rest = s.partition(".")
        frac = ""
        tz = ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                frac, tz = rest[:i], rest[i:]
                break
        else:
            frac = rest
        s = f"{head}.{frac[:6]}{tz}"
    try:
        return datetime.fromisoformat(s).timestamp()
    except ValueError:
        return 0.0


@dataclass
class Image:
    id: str
    config_raw: bytes
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0
    parent: str = ""
    layer_chain: list[str] = field(default_factory=list)  # chain IDs, base first
    driver: str = ""
    driver_data: dict[str, str] = field(default_factory=dict)
    layer_sizes: list[int] = field(default_factory=list)
    pull_status: str = ""  # after a pull: "Downloaded newer image for X" / "Image is up to date"

    @property
    def config(self) -> dict[str, Any]:
        """The image configuration (OCI/docker config JSON) as a dict."""
        return json.loads(self.config_raw)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids") or [])

    @property
    def created(self) -> str:
        return str(self.config.get("created") or "")

    @property
    def parent_chain(self) -> list[str]:
        """The layer chain (chain IDs, base first): what this image stands on."""
        return list(self.layer_chain)

    @property
    def short_id(self) -> str:
        return self.id[7:19]

    def history(self) -> list[dict[str, Any]]:
        """GET /images/{name}/history: newest first, one entry per config history item."""
        hist = list(self.config.get("history") or [])
        sizes = iter(self.layer_sizes)
        rows = []
        for h in hist:
            size = 0 if h.get("empty_layer") else next(sizes, 0)
            rows.append({"Id": "<missing>", "Created": int(parse_time(h.get("created", ""))),
                         "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                         "Comment": h.get("comment", "")})
        if not rows:
            rows.append({"Id": self.id, "Created": int(parse_time(self.created)),
                         "CreatedBy": "", "Tags": None, "Size": self.size, "Comment": ""})
        rows.reverse()
        rows[0]["Id"] = self.id
        rows[0]["Tags"] = list(self.repo_tags) or None
        return rows

    def to_docker(self, inspect: bool = False) -> dict[str, Any]:
        """The /images/json item, or (inspect=True) the /images/{id}/json document."""
        cfg = self.config
        if not inspect:
            return {
                "Id": self.id,
                "ParentId": self.parent,
                "RepoTags": list(self.repo_tags),
                "RepoDigests": list(self.repo_digests),
                "Created": int(parse_time(self.created)),
                "Size": self.size,
                "VirtualSize": self.size,
                "SharedSize": -1,
                "Labels": (cfg.get("config") or {}).get("Labels") or None,
                "Containers": -1,
            }
        return {
            "Id": self.id,
            "RepoTags": list(self.repo_tags),
            "RepoDigests": list(self.repo_digests),
            "Parent": self.parent,
            "Comment": cfg.get("comment", ""),
            "Created": self.created or "1970-01-01T00:00:00Z",
            "Container": cfg.get("container", ""),
            "ContainerConfig": cfg.get("container_config") or {},
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": cfg.get("config") or {},
            "Architecture": cfg.get("architecture", ""),
            "Variant": cfg.get("variant") or None,
            "Os": cfg.get("os", ""),
            "Size": self.size,
            "VirtualSize": self.size,
            "GraphDriver": {"Name": self.driver, "Data": self.driver_data or None},
            "RootFS": {"Type": "layers", "Layers": self.diff_ids},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }
