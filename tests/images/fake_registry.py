"""An in-memory distribution registry behind httpx.MockTransport, for unit tests.

It speaks enough of the v2 API for pull and push (manifests by tag/digest, blobs, uploads,
cross-repo mounts) and reproduces the traps of distribution 2.8 that matter to a client: a
schema2 manifest asked for without the docker Accept type comes back as (fake) schema1, an OCI
manifest asked for with docker types only is MANIFEST_UNKNOWN. Auth modes: None, "bearer"
(token realm on another host, scope checked) and "basic". Faults: `corrupt` (digests whose
bytes are served altered), `missing` (blobs answered 404).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import parse_qs, urlparse

import httpx

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _err(status: int, code: str, msg: str, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "message": msg}]},
                          headers=headers or {})


class FakeRegistry:
    def __init__(self, host: str = "registry.test", auth: str | None = None,
                 user: str = "alice", password: str = "secret") -> None:
        self.host = host
        self.auth = auth
        self.user, self.password = user, password
        self.blobs: dict[str, bytes] = {}
        self.repo_blobs: dict[str, set[str]] = {}
        self.manifests: dict[str, dict[str, tuple[bytes, str]]] = {}  # repo -> ref -> (raw, mt)
        self.uploads: dict[str, bytearray] = {}
        self.requests: list[httpx.Request] = []
        self.corrupt: set[str] = set()
        self.missing: set[str] = set()
        self.token_requests: list[dict] = []
        self.issued: dict[str, str] = {}  # token -> scope

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- content helpers ---------------------------------------------------------------------
    def put_blob(self, repo: str, data: bytes) -> str:
        d = sha(data)
        self.blobs[d] = data
        self.repo_blobs.setdefault(repo, set()).add(d)
        return d

    def put_manifest(self, repo: str, tag: str | None, raw: bytes, mt: str) -> str:
        d = sha(raw)
        m = self.manifests.setdefault(repo, {})
        m[d] = (raw, mt)
        if tag:
            m[tag] = (raw, mt)
        return d

    def put_image(self, repo: str, tag: str | None, image, docker: bool = True) -> str:
        """Store a tests.images.builder.Image (config, gzip layers, manifest)."""
        self.put_blob(repo, image.config())
        for lay in image.layers:
            self.put_blob(repo, lay.gz)
        return self.put_manifest(repo, tag, image.manifest(docker=docker),
                                 MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST)

    # -- HTTP ---------------------------------------------------------------------------------
    def _authorized(self, request: httpx.Request, repo: str | None, push: bool) -> bool:
        if self.auth is None:
            return True
        h = request.headers.get("authorization", "")
        if self.auth == "basic":
            want = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return h == f"Basic {want}"
        if not h.startswith("Bearer "):
            return False
        scope = self.issued.get(h[7:])
        if scope is None:
            return False
        if repo is None:
            return True
        need = "push" if push else "pull"
        for s in scope.split(" "):
            parts = s.split(":")
            if len(parts) == 3 and parts[1] == repo and need in parts[2].split(","):
                return True
        return False

    def _challenge(self, repo: str | None, push: bool) -> httpx.Response:
        if self.auth == "basic":
            return _err(401, "UNAUTHORIZED", "authentication required",
                        {"WWW-Authenticate": 'Basic realm="fake"'})
        scope = f',scope="repository:{repo}:{"pull,push" if push else "pull"}"' if repo else ""
        return _err(401, "UNAUTHORIZED", "authentication required", {
            "WWW-Authenticate": f'Bearer realm="https://auth.test/token",'
                                f'service="{self.host}"{scope}'})

    def _token(self, request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlparse(str(request.url)).query)
        self.token_requests.append({k: v for k, v in q.items()} | {
            "authorization": request.headers.get("authorization", "")})
        want = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if request.headers.get("authorization", "") != f"Basic {want}":
            return httpx.Response(401, json={"details": "bad credentials"})
        tok = f"tok{len(self.issued)}"
        self.issued[tok] = " ".join(q.get("scope", []))
        return httpx.Response(200, json={"token": tok, "expires_in": 300})

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = urlparse(str(request.url))
        if url.hostname == "auth.test":
            return self._token(request)
        path = url.path
        if path == "/v2/":
            if not self._authorized(request, None, False):
                return self._challenge(None, False)
            return httpx.Response(200, json={})
        m = re.match(r"^/v2/(.+)/(manifests|blobs)/(uploads/?.*|[^/]+)$", path)
        if not m:
            return _err(404, "NOT_FOUND", path)
        repo, kind, ref = m.groups()
        push = request.method in ("POST", "PUT", "PATCH", "DELETE") or (
            request.method == "HEAD" and False)
        if not self._authorized(request, repo, push):
            return self._challenge(repo, push)
        if kind == "manifests":
            return self._manifest(request, repo, ref)
        if ref.startswith("uploads"):
            return self._upload(request, repo, ref, url.query)
        return self._blob(request, repo, ref)

    def _manifest(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        if request.method == "PUT":
            raw = request.read()
            mt = request.headers.get("content-type", "")
            doc = json.loads(raw)
            for desc in [doc.get("config")] + list(doc.get("layers") or []):
                if desc and desc["digest"] not in self.repo_blobs.get(repo, set()):
                    return _err(400, "MANIFEST_BLOB_UNKNOWN", desc["digest"])
            d = self.put_manifest(repo, None if ref.startswith("sha256:") else ref, raw, mt)
            return httpx.Response(201, headers={"Docker-Content-Digest": d,
                                                "Location": f"/v2/{repo}/manifests/{d}"})
        got = self.manifests.get(repo, {}).get(ref)
        if got is None:
            return _err(404, "MANIFEST_UNKNOWN", "manifest unknown")
        raw, mt = got
        accept = request.headers.get("accept", "")
        if mt == MT_DOCKER_MANIFEST and MT_DOCKER_MANIFEST not in accept:
            fake1 = json.dumps({"schemaVersion": 1, "name": repo, "tag": ref}).encode()
            return httpx.Response(200, content=fake1, headers={
                "Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws",
                "Docker-Content-Digest": sha(fake1)})
        if mt in (MT_OCI_MANIFEST, MT_OCI_INDEX) and mt not in accept:
            return _err(404, "MANIFEST_UNKNOWN", "OCI manifest found, but accept header does "
                        "not support OCI manifests")
        body = raw
        d = sha(raw)
        if d in self.corrupt:
            body = raw.replace(b"schemaVersion", b"schemaversion")
        headers = {"Content-Type": mt, "Docker-Content-Digest": d}
        if request.method == "HEAD":
            return httpx.Response(200, headers=headers | {"Content-Length": str(len(raw))})
        return httpx.Response(200, content=body, headers=headers)

    def _blob(self, request: httpx.Request, repo: str, digest: str) -> httpx.Response:
        if digest in self.missing or digest not in self.repo_blobs.get(repo, set()):
            return _err(404, "BLOB_UNKNOWN", "blob unknown to registry")
        data = self.blobs[digest]
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(data)),
                                                "Docker-Content-Digest": digest})
        if digest in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return httpx.Response(200, content=data, headers={"Docker-Content-Digest": digest})

    def _upload(self, request: httpx.Request, repo: str, ref: str, query: str) -> httpx.Response:
        q = parse_qs(query)
        if request.method == "POST":
            if "mount" in q:
                d, src = q["mount"][0], q.get("from", [""])[0]
                if d in self.repo_blobs.get(src, set()):
                    self.repo_blobs.setdefault(repo, set()).add(d)
                    return httpx.Response(201, headers={"Location": f"/v2/{repo}/blobs/{d}"})
            uid = f"u{len(self.uploads)}"
            self.uploads[uid] = bytearray()
            return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{uid}?_state=x"})
        uid = ref.split("/", 1)[1]
        if uid not in self.uploads:
            return _err(404, "BLOB_UPLOAD_UNKNOWN", uid)
        if request.method == "PATCH":
            self.uploads[uid] += request.read()
            return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{uid}?_state=y"})
        if request.method == "PUT":
            self.uploads[uid] += request.read()
            data = bytes(self.uploads.pop(uid))
            d = q.get("digest", [""])[0]
            if sha(data) != d:
                return _err(400, "DIGEST_INVALID", "digest mismatch")
            self.put_blob(repo, data)
            return httpx.Response(201, headers={"Location": f"/v2/{repo}/blobs/{d}",
                                                "Docker-Content-Digest": d})
        if request.method == "DELETE":
            self.uploads.pop(uid, None)
            return httpx.Response(204)
        return _err(405, "UNSUPPORTED", request.method)
