"""A distribution v2 / OCI registry client on httpx: auth, manifests, blobs, uploads.

What it guarantees to its callers (engine.registry.distribution): every manifest and blob it
returns was hashed and matched its digest; auth challenges are answered the way docker does
(Bearer tokens from the realm in WWW-Authenticate, or basic auth), per repository scope;
registries on 127.0.0.0/8 and those named insecure speak plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin

import httpx

from engine.errors import Forbidden, InvalidParameter, NotFound, SkiffError, Unavailable

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MT_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_ACCEPT = [MT_DOCKER_MANIFEST, MT_DOCKER_LIST, MT_OCI_INDEX, MT_DOCKER_SCHEMA1_SIGNED,
                   "application/json", MT_OCI_MANIFEST]
INDEX_TYPES = (MT_DOCKER_LIST, MT_OCI_INDEX)
IMAGE_MANIFEST_TYPES = (MT_DOCKER_MANIFEST, MT_OCI_MANIFEST)
CHUNK = 1 << 20
MAX_MANIFEST = 4 << 20  # as containerd: a manifest is small; a huge one is an attack


class RegistryError(SkiffError):
    """The registry answered with an error (its code and message are kept in the text)."""

    status = 500


class Unauthorized(Forbidden):
    status = 401


class DigestMismatch(InvalidParameter):
    """Content from the registry does not hash to the digest that named it."""


def is_insecure(host: str, insecure_registries: list[str] | tuple[str, ...] = ()) -> bool:
    """Plain HTTP for loopback registries (as dockerd) and the configured insecure ones."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
        if ip.is_loopback:
            return True
    except ValueError:
        ip = None
    for entry in insecure_registries:
        if entry == host or entry == name:
            return True
        if "/" in entry and ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    for k, v in re.findall(r'(\w+)=([^",\s]+)', rest):
        params.setdefault(k.lower(), v)
    return scheme.lower(), params


def _err_text(resp: httpx.Response, body: bytes | None = None) -> str:
    try:
        doc = json.loads(body) if body is not None else resp.json()
        errs = doc.get("errors") or []
        if errs:
            return "; ".join(f"{e.get('code', '').lower().replace('_', ' ')}: "
                             f"{e.get('message', '')}".strip(": ") for e in errs)
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        pass
    return f"HTTP {resp.status_code}"


class Registry:
    def __init__(
        self,
        host: str,
        *,
        auth: dict | None = None,
        insecure: bool = False,
        plain_http: bool | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        user_agent: str = "skiff",
    ) -> None:
        self.host = host
        self.auth = auth or {}
        self.insecure = insecure
        if plain_http is None:
            plain_http = insecure and is_insecure(host)
        self.scheme = "http" if plain_http else "https"
        self._fallback_http = insecure and not plain_http
        self.client = httpx.Client(
            transport=transport, timeout=httpx.Timeout(timeout, connect=10.0),
            verify=not insecure, follow_redirects=True,
            headers={"User-Agent": user_agent},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )
        self._tokens: dict[str, str] = {}
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def url(self, path: str, query: dict | None = None) -> str:
        u = self.base + path
        return u + ("?" + urlencode(query) if query else "")

    def _auth_header(self, scope: str) -> dict[str, str]:
        if self._challenge is None:
            return {}
        scheme, params = self._challenge
        if scheme == "bearer":
            tok = self._tokens.get(scope)
            if tok is None and scope:
                # the realm is known from an earlier challenge (GET /v2/): ask for this
                # scope's token now instead of paying a 401 round trip first
                with self._lock:
                    tok = self._tokens.get(scope)
                    if tok is None:
                        tok = self._tokens[scope] = self._fetch_token(params, scope)
            return {"Authorization": f"Bearer {tok}"} if tok else {}
        if scheme == "basic":
            b = self._basic()
            return {"Authorization": b} if b else {}
        return {}

    def _basic(self) -> str | None:
        if self.auth.get("auth"):
            return "Basic " + self.auth["auth"]
        user, pw = self.auth.get("username"), self.auth.get("password")
        if user is None or pw is None:
            return None
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise Unauthorized(f"{self.host}: Bearer challenge without a realm")
        if self.auth.get("registrytoken"):
            return str(self.auth["registrytoken"])
        scopes = [s for s in scope.split(" ") if s]
        q: list[tuple[str, str | int | float | bool | None]] = []
        if params.get("service"):
            q.append(("service", params["service"]))
        q += [("scope", s) for s in scopes]
        headers = {}
        if self.auth.get("identitytoken"):
            data = {"grant_type": "refresh_token", "refresh_token": self.auth["identitytoken"],
                    "service": params.get("service", ""), "scope": " ".join(scopes),
                    "client_id": "skiff"}
            resp = self.client.post(realm, data=data)
        else:
            b = self._basic()
            if b:
                headers["Authorization"] = b
            resp = self.client.get(realm, params=q, headers=headers)
        if resp.status_code in (401, 403):
            raise Unauthorized(f"unauthorized: authentication required for {self.host} "
                               f"({_err_text(resp)})")
        if resp.status_code != 200:
            raise RegistryError(f"{self.host}: token endpoint {realm}: {_err_text(resp)}")
        try:
            doc = resp.json()
        except ValueError:
            raise RegistryError(f"{self.host}: token endpoint answered no JSON") from None
        tok = doc.get("token") or doc.get("access_token")
        if not tok:
            raise RegistryError(f"{self.host}: token endpoint answered no token")
        return str(tok)

    def _answer(self, resp: httpx.Response, scope: str) -> bool:
        """Handle a 401: learn the challenge and get credentials; False if hopeless."""
        hdr = resp.headers.get("www-authenticate", "")
        if not hdr:
            return False
        scheme, params = parse_challenge(hdr)
        with self._lock:
            self._challenge = (scheme, params)
            if scheme == "bearer":
                if scope in self._tokens and params.get("error") != "insufficient_scope":
                    # the token we sent was refused: only retry with a fresh one once
                    self._tokens.pop(scope, None)
                self._tokens[scope] = self._fetch_token(params, scope)
                return True
            if scheme == "basic":
                return self._basic() is not None
        return False

    def request(self, method: str, url: str, *, scope: str, stream: bool = False,
                headers: dict | None = None, content: Any = None,
                rewind: Callable[[], Any] | None = None) -> httpx.Response:
        """One request with auth; answers a 401 once. With stream=True the caller closes."""
        self._ensure_scheme()
        for attempt in range(2):
            h = dict(headers or {})
            h.update(self._auth_header(scope))
            body = content
            if attempt and rewind is not None:
                body = rewind()
            req = self.client.build_request(method, url, headers=h, content=body)
            try:
                resp = self.client.send(req, stream=stream)
            except httpx.TransportError as e:
                raise Unavailable(f"{method} {url}: {type(e).__name__}: {e}") from None
            if resp.status_code == 401 and attempt == 0:
                if stream:
                    resp.read()
                    resp.close()
                if self._answer(resp, scope):
                    continue
                raise Unauthorized(f"unauthorized: authentication required ({self.host}: "
                                   f"{_err_text(resp)})")
            if resp.status_code == 401:
                if stream:
                    resp.read()
                raise Unauthorized(f"unauthorized: authentication required ({self.host}: "
                                   f"{_err_text(resp)})")
            return resp
        raise AssertionError("unreachable")

    def _ensure_scheme(self) -> None:
        """For an insecure registry not on loopback: HTTPS first, then plain HTTP (as dockerd)."""
        if not self._fallback_http:
            return
        with self._lock:
            if not self._fallback_http:
                return
            try:
                self.client.get(self.base + "/v2/")
            except httpx.TransportError:
                self.scheme = "http"
            self._fallback_http = False

    def ping(self) -> None:
        """GET /v2/ as dockerd does first: learns the auth challenge (401 is an answer)."""
        self._ensure_scheme()
        try:
            resp = self.client.get(self.url("/v2/"))
        except httpx.TransportError as e:
            raise Unavailable(f"GET {self.url('/v2/')}: {type(e).__name__}: {e}") from None
        if resp.status_code == 401 and resp.headers.get("www-authenticate"):
            with self._lock:
                self._challenge = parse_challenge(resp.headers["www-authenticate"])
        elif resp.status_code != 200:
            raise RegistryError(f"{self.host} is not a v2 registry: {_err_text(resp)}")

    # -- manifests ----------------------------------------------------------------------------
    @staticmethod
    def pull_scope(repo: str) -> str:
        return f"repository:{repo}:pull"

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest by tag or digest, digest-verified."""
        resp = self.request(
            "GET", self.url(f"/v2/{repo}/manifests/{ref}"), scope=self.pull_scope(repo),
            headers={"Accept": ", ".join(MANIFEST_ACCEPT)}, stream=True,
        )
        try:
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_MANIFEST:
                    raise RegistryError(f"manifest {repo}:{ref} from {self.host} is larger than "
                                        f"{MAX_MANIFEST} bytes")
        except httpx.TransportError as e:
            raise Unavailable(f"fetching manifest {repo}:{ref} from {self.host}: {e}") from None
        finally:
            resp.close()
        raw = bytes(body)
        if resp.status_code == 404:
            what = f"{self.host}/{repo}{'@' if ref.startswith('sha256:') else ':'}{ref}"
            raise NotFound(f"manifest for {what} not found: {_err_text(resp, raw)}")
        if resp.status_code != 200:
            raise RegistryError(f"fetching manifest {repo}:{ref} from {self.host}: "
                                f"{_err_text(resp, raw)}")
        actual = "sha256:" + hashlib.sha256(raw).hexdigest()
        expected = ref if ref.startswith("sha256:") else resp.headers.get("docker-content-digest")
        if expected and expected.startswith("sha256:") and expected != actual:
            raise DigestMismatch(f"manifest {repo}:{ref} from {self.host}: digest mismatch: "
                                 f"expected {expected}, got {actual}")
        mt = resp.headers.get("content-type", "").split(";")[0].strip()
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RegistryError(f"manifest {repo}:{ref} is not JSON") from None
        mt = doc.get("mediaType") or mt
        if not mt or mt == "application/json":
            if doc.get("schemaVersion") == 1:
                mt = MT_DOCKER_SCHEMA1
            elif "manifests" in doc:
                mt = MT_OCI_INDEX
            else:
                mt = MT_OCI_MANIFEST
        return raw, mt, actual

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        resp = self.request("PUT", self.url(f"/v2/{repo}/manifests/{ref}"),
                            scope=f"repository:{repo}:pull,push",
                            headers={"Content-Type": media_type}, content=raw)
        if resp.status_code not in (200, 201):
            raise RegistryError(f"pushing manifest {repo}:{ref} to {self.host}: "
                                f"{_err_text(resp)}")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        got = resp.headers.get("docker-content-digest")
        if got and got != digest:
            raise DigestMismatch(f"registry stored manifest as {got}, expected {digest}")
        return digest

    # -- blobs --------------------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str, scope: str | None = None) -> bool:
        resp = self.request("HEAD", self.url(f"/v2/{repo}/blobs/{digest}"),
                            scope=scope or self.pull_scope(repo))
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise RegistryError(f"checking blob {digest} in {repo}: HTTP {resp.status_code}")

    def fetch_blob(self, repo: str, digest: str, out: Any, *, size: int | None = None,
                   on_bytes: Callable[[int], None] | None = None) -> None:
        """Stream a blob into out.write(); raises DigestMismatch (the writer verifies too)."""
        h = hashlib.sha256()
        got = 0
        resp = self.request("GET", self.url(f"/v2/{repo}/blobs/{digest}"),
                            scope=self.pull_scope(repo), stream=True)
        try:
            if resp.status_code == 404:
                resp.read()
                raise NotFound(f"blob {digest} not found in {self.host}/{repo}: "
                               f"{_err_text(resp)}")
            if resp.status_code != 200:
                resp.read()
                raise RegistryError(f"fetching blob {digest} from {self.host}/{repo}: "
                                    f"{_err_text(resp)}")
            try:
                for chunk in resp.iter_bytes(CHUNK):
                    got += len(chunk)
                    if size is not None and got > size:
                        raise DigestMismatch(f"blob {digest} from {self.host}/{repo}: more "
                                             f"than the {size} bytes its descriptor declares")
                    h.update(chunk)
                    out.write(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            except httpx.TransportError as e:
                raise Unavailable(f"error pulling blob {digest} from {self.host}/{repo}: "
                                  f"connection lost after {got} bytes ({type(e).__name__}: "
                                  f"{e})") from None
        finally:
            resp.close()
        if size is not None and got != size:
            raise Unavailable(f"blob {digest} from {self.host}/{repo}: got {got} bytes, "
                              f"expected {size}")
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            raise DigestMismatch(f"blob {digest} from {self.host}/{repo}: digest mismatch "
                                 f"(content hashes to {actual})")

    def get_blob(self, repo: str, digest: str, size: int | None = None) -> bytes:
        class _Buf(bytearray):
            def write(self, b: bytes) -> None:
                self.extend(b)

        buf = _Buf()
        self.fetch_blob(repo, digest, buf, size=size)
        return bytes(buf)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True when the registry mounted it (201)."""
        scope = f"repository:{repo}:pull,push repository:{from_repo}:pull"
        resp = self.request("POST", self.url(f"/v2/{repo}/blobs/uploads/",
                                             {"mount": digest, "from": from_repo}),
                            scope=scope)
        if resp.status_code == 201:
            return True
        if resp.status_code == 202 and resp.headers.get("location"):
            # the registry started an ordinary upload instead: cancel it
            try:
                self.request("DELETE", urljoin(self.base + "/", resp.headers["location"]),
                             scope=f"repository:{repo}:pull,push")
            except SkiffError:
                pass
        return False

    def upload_blob(self, repo: str, digest: str, opener: Callable[[], BinaryIO], size: int,
                    on_bytes: Callable[[int], None] | None = None) -> None:
        """POST an upload session, PATCH the data, PUT with ?digest= (as dockerd does)."""
        scope = f"repository:{repo}:pull,push"
        resp = self.request("POST", self.url(f"/v2/{repo}/blobs/uploads/"), scope=scope)
        if resp.status_code != 202 or not resp.headers.get("location"):
            raise RegistryError(f"starting upload of {digest} to {self.host}/{repo}: "
                                f"{_err_text(resp)}")
        loc = urljoin(self.base + "/", resp.headers["location"])

        def body() -> Iterator[bytes]:
            with opener() as f:
                while chunk := f.read(CHUNK):
                    if on_bytes:
                        on_bytes(len(chunk))
                    yield chunk

        resp = self.request("PATCH", loc, scope=scope, content=body(), rewind=body,
                            headers={"Content-Type": "application/octet-stream"})
        if resp.status_code not in (202, 204):
            raise RegistryError(f"uploading {digest} to {self.host}/{repo}: {_err_text(resp)}")
        loc = urljoin(self.base + "/", resp.headers.get("location") or loc)
        sep = "&" if "?" in loc else "?"
        resp = self.request("PUT", f"{loc}{sep}{urlencode({'digest': digest})}", scope=scope,
                            headers={"Content-Length": "0"})
        if resp.status_code not in (201, 204):
            raise RegistryError(f"committing upload of {digest} to {self.host}/{repo}: "
                                f"{_err_text(resp)}")


def retrying(fn: Callable[[], Any], attempts: int = 3, delay: float = 0.2) -> Any:
    """Retry transport failures (not digest or HTTP errors): as dockerd does for downloads."""
    for i in range(attempts):
        try:
            return fn()
        except Unavailable:
            if i == attempts - 1:
                raise
            time.sleep(delay * (2 ** i))
    return None
