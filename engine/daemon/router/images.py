"""Images area: pull (create), import (create fromSrc=-), push, list, inspect, tag, delete,
load, save (get). The backend is engine.graph.Graph (CONTRACTS.md)."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import queue
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from engine.daemon.errors import InvalidParameter
from engine.daemon.router import Backends, filters, json_line, progress_stream
from engine.daemon.server import Request, Response, Stream


def registry_auth(req: Request) -> dict | None:
    """X-Registry-Auth: base64url(JSON); `e30=` ({}) means anonymous."""
    raw = req.headers.get("x-registry-auth", "")
    if not raw:
        return None
    try:
        pad = raw + "=" * (-len(raw) % 4)
        d = json.loads(base64.urlsafe_b64decode(pad.encode()))
    except (ValueError, binascii.Error):
        raise InvalidParameter("invalid X-Registry-Auth header") from None
    if not isinstance(d, dict):
        raise InvalidParameter("invalid X-Registry-Auth header")
    return d or None


def join_ref(image: str, tag: str | None) -> str:
    """fromImage + tag -> one reference (tag may be a digest); default tag latest."""
    image = image.strip()
    if not image:
        raise InvalidParameter("invalid reference format: image name is empty")
    if tag:
        return f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in last:
        return image
    return image + ":latest"


def _ref_matches(img: dict, patterns: list[str]) -> bool:
    for tag in (img.get("RepoTags") or []) + (img.get("RepoDigests") or []):
        repo = tag.split("@")[0].rsplit(":", 1)[0] if "@" not in tag else tag.split("@")[0]
        for p in patterns:
            if fnmatch.fnmatch(tag, p) or fnmatch.fnmatch(repo, p) \
                    or fnmatch.fnmatch(tag, "docker.io/library/" + p):
                return True
    return False


def _loaded_ref(r: str) -> str:
    """The graph may answer "Loaded image: busybox:latest" or just the reference."""
    for prefix in ("Loaded image ID: ", "Loaded image: "):
        if r.startswith(prefix):
            return r[len(prefix):].strip()
    return r.strip()


def _spool(req: Request) -> Any:
    """Copy the request body to a spooled temp file before answering.

    Why: the answer streams while the graph reads; the connection's h11 state must not be
    read and written from two threads, so the body is fully received first."""
    f = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
    while True:
        chunk = req.body.read(1 << 20) if req.body is not None else b""
        if not chunk:
            break
        f.write(chunk)
    f.seek(0)
    return f


class _QueueWriter:
    """A write-only file whose writes become stream chunks (for save/get)."""

    def __init__(self) -> None:
        self.q: queue.Queue[bytes | None | BaseException] = queue.Queue(maxsize=64)

    def write(self, data: bytes) -> int:
        if data:
            self.q.put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


def routes(b: Backends) -> list:
    eng = b.engine

    def g() -> Any:
        return b.need("images")

    def tracked(action: str, ref: str, work: Callable[[Callable[[dict], None]], Any]
                ) -> Callable[[Callable[[dict], None]], Any]:
        """For progress_stream: run work(progress) as job image.<action> (its progress visible
        in /jobs), then emit the <action> event. Pull and push both stream this way."""
        def run(progress: Callable[[dict], None]) -> Any:
            job = eng.job("image." + action, ref=ref)
            with eng.track(job):
                def prog(d: dict) -> None:
                    job.set_progress(d)
                    progress(d)

                res = work(prog)
            emit(action, ref)
            return res

        return run

    def emit(action: str, ref: str, **attrs: str) -> None:
        eng.emit("image", action, ref, {"name": ref, **attrs})

    def create(req: Request) -> Stream:
        src = req.arg("fromSrc")
        if src is not None:
            return _import(req, src)
        image = req.arg("fromImage")
        if not image:
            raise InvalidParameter("fromImage or fromSrc is required")
        ref = join_ref(image, req.arg("tag"))
        auth = registry_auth(req)
        platform = req.arg("platform") or None
        graph = g()

        run = tracked("pull", ref, lambda prog: graph.pull(ref, auth=auth, progress=prog,
                                                          platform=platform))

        def last(img: Any) -> list[dict]:
            digest = ""
            for d in getattr(img, "repo_digests", None) or []:
                digest = d.split("@", 1)[-1]
            out = []
            if digest:
                out.append({"status": f"Digest: {digest}"})
            # the graph knows whether anything new arrived ("Image is up to date for ...")
            status = getattr(img, "pull_status", "") or f"Downloaded newer image for {ref}"
            out.append({"status": f"Status: {status}"})
            return out

        return Stream(progress_stream(run, last))

    def _import(req: Request, src: str) -> Stream:
        if src != "-":
            raise InvalidParameter("only fromSrc=- (the request body) is supported")
        repo = req.arg("repo") or None
        ref = join_ref(repo, req.arg("tag")) if repo else None
        changes = req.query.get("changes") or None
        graph = g()
        img = eng.run("image.import", graph.import_tar, _spool(req), ref=ref, changes=changes)
        emit("import", img.id)
        return Stream(iter([json_line({"status": img.id})]))

    def push(req: Request, name: str) -> Stream:
        ref = join_ref(name, req.arg("tag"))
        auth = registry_auth(req)
        graph = g()

        run = tracked("push", ref, lambda prog: graph.push(ref, auth=auth, progress=prog))

        def last(res: Any) -> list[dict]:
            res = dict(res or {})
            return [{"status": f"{res.get('Tag', '')}: digest: {res.get('Digest', '')} "
                               f"size: {res.get('Size', 0)}"},
                    {"progressDetail": {}, "aux": res}]

        return Stream(progress_stream(run, last))

    def list_(req: Request) -> Response:
        flt = filters(req.json_arg("filters"))
        if req.arg("filter"):  # pre-1.25 clients
            flt.setdefault("reference", []).append(req.arg("filter") or "")
        out = [img.to_docker() for img in g().list()]
        if flt.get("reference"):
            out = [i for i in out if _ref_matches(i, flt["reference"])]
        if flt.get("dangling"):
            want_dangling = flt["dangling"][0].lower() in ("true", "1")
            out = [i for i in out if (not [t for t in (i.get("RepoTags") or [])
                                          if t != "<none>:<none>"]) == want_dangling]
        for lab in flt.get("label", []):
            k, _, v = lab.partition("=")
            out = [i for i in out if k in (i.get("Labels") or {})
                   and (not v or (i.get("Labels") or {}).get(k) == v)]
        return Response.json(out)

    def inspect(req: Request, name: str) -> Response:
        img = g().get(name)
        try:
            return Response.json(img.to_docker(inspect=True))
        except TypeError:  # an image type without the inspect shape
            return Response.json(img.to_docker())

    def history(req: Request, name: str) -> Response:
        img = g().get(name)
        fn = getattr(img, "history", None)
        if callable(fn):
            return Response.json(fn())
        return Response.json([{"Id": img.id, "Created": 0, "CreatedBy": "", "Tags":
                               img.repo_tags, "Size": img.size, "Comment": ""}])

    def tag(req: Request, name: str) -> Response:
        repo = req.arg("repo")
        if not repo:
            raise InvalidParameter("repo is required")
        ref = join_ref(repo, req.arg("tag"))
        eng.run("image.tag", g().tag, name, ref)
        emit("tag", ref)
        return Response(201)

    def delete(req: Request, name: str) -> Response:
        res = eng.run("image.remove", g().remove, name, force=req.bool("force"),
                      prune=not req.bool("noprune"))
        for d in res or []:
            if "Untagged" in d:
                emit("untag", d["Untagged"])
            if "Deleted" in d:
                emit("delete", d["Deleted"])
        return Response.json(list(res or []))

    def load(req: Request) -> Stream:
        quiet = req.bool("quiet")
        graph = g()
        body = _spool(req)
        streamed: set[str] = set()

        def run(progress):
            job = eng.job("image.load")
            with eng.track(job):
                def prog(d: dict) -> None:
                    job.set_progress(d)
                    if "stream" in d:
                        streamed.add(d["stream"].strip())
                    if not quiet:
                        progress(d)

                try:
                    refs = graph.load(body, progress=prog)
                finally:
                    body.close()
            for r in refs or []:
                emit("load", _loaded_ref(r))
            return refs

        def last(refs: Any) -> list[dict]:
            out = []
            for r in refs or []:
                ref = _loaded_ref(r)
                text = f"Loaded image ID: {ref}" if ref.startswith("sha256:") \
                    else f"Loaded image: {ref}"
                if quiet or text not in streamed:
                    out.append({"stream": text + "\n"})
            return out

        return Stream(progress_stream(run, last))

    def save(req: Request, name: str | None = None) -> Stream:
        names = [name] if name else (req.query.get("names") or [])
        if not names:
            raise InvalidParameter("names is required")
        graph = g()
        for n in names:
            graph.get(n)  # 404 before the 200 goes out
        w = _QueueWriter()

        def worker() -> None:
            try:
                eng.run("image.save", graph.save, list(names), w)
                w.q.put(None)
            except BaseException as e:  # noqa: BLE001 - ends the stream
                w.q.put(e)

        threading.Thread(target=worker, daemon=True).start()

        def gen():
            while True:
                try:
                    item = w.q.get(timeout=1.0)
                except queue.Empty:
                    yield None
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        return Stream(gen(), content_type="application/x-tar")

    def prune(req: Request) -> Response:
        flt = filters(req.json_arg("filters"))
        dangling_only = (flt.get("dangling") or ["true"])[0].lower() in ("true", "1")
        graph = g()
        deleted: list[dict] = []
        for img in list(graph.list()):
            tags = [t for t in (img.repo_tags or []) if t != "<none>:<none>"]
            if dangling_only and tags:
                continue
            try:
                deleted += eng.run("image.remove", graph.remove, img.id) or []
            except Exception:  # noqa: BLE001 - images in use stay
                continue
        return Response.json({"ImagesDeleted": deleted, "SpaceReclaimed": 0})

    return [
        ("POST", "/images/prune", prune),
        ("POST", "/images/create", create),
        ("POST", "/images/load", load),
        ("GET", "/images/json", list_),
        ("GET", "/images/get", save),
        ("GET", "/images/{name:.+}/get", save),
        ("GET", "/images/{name:.+}/json", inspect),
        ("GET", "/images/{name:.+}/history", history),
        ("POST", "/images/{name:.+}/push", push),
        ("POST", "/images/{name:.+}/tag", tag),
        ("DELETE", "/images/{name:.+}", delete),
    ]
