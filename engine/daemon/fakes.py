"""In-memory backends with the CONTRACTS.md shapes, for router and client tests without root.

Why in the package: the router, the `skiff` client tests and docker-py compatibility tests all
drive a real skiffd server over a real socket against these fakes (like moby's per-area backend
interfaces with fake implementations), so anyone can start one with `fake_daemon()`.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Conflict, InvalidParameter, NotFound, NotModified


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


@dataclass
class FakeContainer:
    id: str
    name: str
    config: dict
    host_config: dict
    status: str = "created"
    exit_code: int = 0
    created: float = field(default_factory=time.time)
    output: list[tuple[int, bytes]] = field(default_factory=list)
    cv: threading.Condition = field(default_factory=threading.Condition)
    exits: int = 0


class FakeVolumes:
    def __init__(self) -> None:
        self.vols: dict[str, dict] = {}

    def create(self, name: str | None, labels: dict | None = None) -> dict:
        name = name or hashlib.sha256(os.urandom(8)).hexdigest()
        v = {"Name": name, "Driver": "local", "Mountpoint": f"/fake/volumes/{name}/_data",
             "Labels": labels or {}, "Scope": "local", "Options": {}, "CreatedAt": ""}
        self.vols.setdefault(name, v)
        return self.vols[name]

    def list(self) -> list[dict]:
        return list(self.vols.values())

    def inspect(self, name: str) -> dict:
        if name not in self.vols:
            raise NotFound(f"get {name}: no such volume")
        return self.vols[name]

    def remove(self, name: str, force: bool = False) -> None:
        if name not in self.vols:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        del self.vols[name]


class FakeContainers:
    """A ContainerManager whose containers 'run' their Cmd by a tiny interpreter:
    `echo ARGS` prints, `cat` echoes stdin, `sleep` runs until stopped, `exit N` exits N,
    `nosuch` fails to start like a missing executable."""

    def __init__(self, images: Any = None, emit: Any = None) -> None:
        self.images = images
        self.emit = emit or (lambda *a, **k: None)
        self.cs: dict[str, FakeContainer] = {}
        self.execs: dict[str, dict] = {}
        self.volumes = FakeVolumes()
        self.lock = threading.RLock()
        self.resized: list[tuple[str, int, int]] = []
        # what the routers handed over, so tests can check they pass the request's options
        self.exec_console_sizes: dict[str, Sequence[int] | None] = {}
        self.attach_detach_keys: list[str | None] = []

    # lookup -------------------------------------------------------------------------
    def get(self, ref: str) -> FakeContainer:
        with self.lock:
            if ref in self.cs:
                return self.cs[ref]
            for c in self.cs.values():
                if c.name == ref.lstrip("/"):
                    return c
            hits = [c for c in self.cs.values() if len(ref) >= 1 and c.id.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        raise NotFound(f"No such container: {ref}")

    # lifecycle ------------------------------------------------------------------------
    def create(self, name: str | None, config: dict, host_config: dict,
               networking_config: dict) -> tuple[str, list[str]]:
        image = config["Image"]
        if self.images is not None:
            self.images.get(image)
        elif image.startswith("missing"):
            raise NotFound(f"No such image: {image}")
        with self.lock:
            if name and any(c.name == name for c in self.cs.values()):
                raise Conflict(f'Conflict. The container name "/{name}" is already in use')
            cid = hashlib.sha256(os.urandom(16)).hexdigest()
            self.cs[cid] = FakeContainer(cid, name or f"fake_{cid[:6]}", dict(config),
                                         dict(host_config))
        self.emit("container", "create", cid, {"name": name or "", "image": image})
        return cid, []

    def start(self, ref: str) -> None:
        c = self.get(ref)
        if c.status == "running":
            raise NotModified("container already started")
        cmd = c.config.get("Cmd") or ["true"]
        if cmd[0] == "nosuch":
            raise InvalidParameter(
                'failed to create task: exec: "nosuch": executable file not found in $PATH')
        with c.cv:
            c.status = "running"
            c.cv.notify_all()
        self.emit("container", "start", c.id, {"name": c.name})
        if cmd[0] == "echo":
            self._exit(c, 0, [(1, (" ".join(cmd[1:]) + "\n").encode())])
        elif cmd[0] == "exit":
            self._exit(c, int(cmd[1]), [])
        elif cmd[0] == "true":
            self._exit(c, 0, [])
        # sleep / cat keep running

    def _exit(self, c: FakeContainer, code: int, out: list[tuple[int, bytes]]) -> None:
        with c.cv:
            c.output.extend(out)
            c.status, c.exit_code = "exited", code
            c.exits += 1
            c.cv.notify_all()
        self.emit("container", "die", c.id, {"name": c.name, "exitCode": str(code)})
        if c.host_config.get("AutoRemove"):
            self.remove(c.id, force=True)

    def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = self.get(ref)
        if c.status != "running":
            raise NotModified("container already stopped")
        self._exit(c, 143, [])

    def kill(self, ref: str, signal: str = "SIGKILL") -> None:
        c = self.get(ref)
        if c.status != "running":
            raise Conflict(f"Cannot kill container: {ref}: container is not running")
        self._exit(c, 137 if signal == "SIGKILL" else 143, [])

    def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        if c.status == "running":
            self._exit(c, 143, [])
        self.start(c.id)

    def pause(self, ref: str) -> None:
        self.get(ref).status = "paused"

    def unpause(self, ref: str) -> None:
        self.get(ref).status = "running"

    def update(self, ref: str, resources: dict) -> list[str]:
        c = self.get(ref)
        c.host_config.update(resources)
        return []

    def wait_prepare(self, ref: str, condition: str = "not-running"
                     ) -> Callable[[float | None], dict]:
        """Register the waiter now, block later, like ContainerManager.wait_prepare.

        Why: the router sends wait's 200 before the client starts the container; a waiter
        that looked at the container only when its thread got to run could miss a fast exit
        (next-exit then waited forever, the test hung on the wait socket) or find an
        auto-removed container gone."""
        c = self.get(ref)
        with c.cv:
            n = c.exits

        def block(timeout: float | None = None) -> dict:
            with c.cv:
                if condition == "next-exit":
                    ok = c.cv.wait_for(lambda: c.exits > n, timeout)
                elif condition == "removed":
                    ok = c.cv.wait_for(lambda: c.status == "removed", timeout)
                else:
                    ok = c.cv.wait_for(lambda: c.status not in ("running", "paused"), timeout)
            if not ok:
                raise TimeoutError(f"container {c.id} did not reach {condition!r}")
            return {"StatusCode": c.exit_code, "Error": None}

        return block

    def wait(self, ref: str, condition: str = "not-running") -> dict:
        return self.wait_prepare(ref, condition)(None)

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.status == "running" and not force:
            raise Conflict(f"You cannot remove a running container {c.id}. Stop the container "
                           "before attempting removal or force remove")
        if c.status == "running":
            self._exit(c, 137, [])
        with self.lock:
            self.cs.pop(c.id, None)
        with c.cv:
            c.status = "removed"
            c.cv.notify_all()
        self.emit("container", "destroy", c.id, {"name": c.name})

    # views --------------------------------------------------------------------------------
    def inspect(self, ref: str) -> dict:
        c = self.get(ref)
        return {"Id": c.id, "Name": "/" + c.name, "Created": "2026-01-01T00:00:00Z",
                "Path": (c.config.get("Cmd") or [""])[0],
                "Args": (c.config.get("Cmd") or [""])[1:],
                "State": {"Status": c.status, "Running": c.status == "running",
                          "Paused": c.status == "paused", "ExitCode": c.exit_code,
                          "Pid": 4242 if c.status == "running" else 0},
                "Image": "sha256:" + "0" * 64, "Config": c.config,
                "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {}},
                               **c.host_config},
                "NetworkSettings": {"IPAddress": "", "Ports": {}, "Networks": {}},
                "Mounts": []}

    def list(self, all: bool = False, limit: int = -1, filters: dict | None = None,
             size: bool = False) -> list[dict]:
        out = []
        for c in sorted(self.cs.values(), key=lambda c: -c.created):
            if not all and c.status != "running":
                continue
            out.append({"Id": c.id, "Names": ["/" + c.name], "Image": c.config["Image"],
                        "ImageID": "sha256:" + "0" * 64,
                        "Command": " ".join(c.config.get("Cmd") or []),
                        "Created": int(c.created), "State": c.status,
                        "Status": "Up 1 second" if c.status == "running"
                        else f"Exited ({c.exit_code}) 1 second ago",
                        "Ports": [], "Labels": c.config.get("Labels") or {},
                        "NetworkSettings": {"Networks": {}}, "Mounts": []})
        return out[:limit] if limit and limit > 0 else out

    def attach(self, ref: str, sock: socket.socket, *, stdin: bool, stdout: bool,
               stderr: bool, stream: bool = True, logs: bool = False,
               detach_keys: str | None = None) -> None:
        self.attach_prepare(ref, stdin=stdin, stdout=stdout, stderr=stderr, stream=stream,
                            logs=logs, detach_keys=detach_keys)(sock)

    def attach_prepare(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool,
                       stream: bool = True, logs: bool = False, detach_keys: str | None = None
                       ) -> Callable[[socket.socket], None]:
        """Look up now, stream later, like ContainerManager.attach_prepare (docker run attaches
        before start; the 101 goes out before the stream runs, and --rm may remove the
        container in between)."""
        c = self.get(ref)
        self.attach_detach_keys.append(detach_keys)
        with c.cv:
            start = 0 if logs else len(c.output)
        return lambda sock: self._attach(c, sock, start, stdin=stdin, stdout=stdout,
                                         stderr=stderr, stream=stream)

    def _attach(self, c: FakeContainer, sock: socket.socket, sent: int, *, stdin: bool,
                stdout: bool, stderr: bool, stream: bool) -> None:
        tty = bool(c.config.get("Tty"))
        cmd = c.config.get("Cmd") or []
        if stdin and cmd[:1] == ["cat"]:
            # echo stdin back as the container's stdout until EOF, then exit 0
            while True:
                d = sock.recv(65536)
                if not d:
                    break
                sock.sendall(d if tty else _frame(1, d))
            if c.status == "running":
                self._exit(c, 0, [])
            return
        with c.cv:  # attached before start (docker run): wait for the start
            c.cv.wait_for(lambda: c.status != "created", timeout=5)
        while True:
            with c.cv:
                n = sent

                def more(n: int = n) -> bool:
                    return len(c.output) > n or c.status != "running"

                c.cv.wait_for(more, timeout=5)
                chunk = c.output[sent:]
                sent = len(c.output)
                ended = c.status != "running"
            for st, data in chunk:
                if (st == 1 and stdout) or (st == 2 and stderr):
                    sock.sendall(data if tty else _frame(st, data))
            if ended or not stream:
                return

    def logs(self, ref: str, *, stdout: bool, stderr: bool, follow: bool, since: float,
             until: float, timestamps: bool, tail: int | str) -> Iterator[bytes]:
        # eager, like ContainerManager.logs: the container is looked up before the 200 goes
        # out, not when a producer thread first iterates (docker-py's run removes it
        # right after wait, which raced a lazy lookup)
        c = self.get(ref)
        tty = bool(c.config.get("Tty"))
        items = [(s, d) for s, d in c.output if (s == 1 and stdout) or (s == 2 and stderr)]
        if tail != "all":
            items = items[-int(tail):] if int(tail) > 0 else []
        out = []
        for s, d in items:
            if timestamps:
                d = b"2026-01-01T00:00:00.000000000Z " + d
            out.append(d if tty else _frame(s, d))
        return iter(out)

    def resize(self, ref: str, h: int, w: int) -> None:
        c = self.get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        self.resized.append((c.id, h, w))

    def top(self, ref: str, ps_args: str) -> dict:
        c = self.get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        return {"Titles": ["UID", "PID", "CMD"], "Processes": [["root", "4242", "sleep"]]}

    def stats(self, ref: str) -> dict:
        c = self.get(ref)
        return {"id": c.id, "name": "/" + c.name, "read": "2026-01-01T00:00:00Z",
                "cpu_stats": {"cpu_usage": {"total_usage": 1000}, "system_cpu_usage": 10000,
                              "online_cpus": 2},
                "memory_stats": {"usage": 1 << 20, "limit": 1 << 30},
                "pids_stats": {"current": 1}}

    # exec ---------------------------------------------------------------------------------
    def exec_create(self, ref: str, config: dict) -> str:
        c = self.get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        eid = hashlib.sha256(os.urandom(16)).hexdigest()
        self.execs[eid] = {"ID": eid, "ContainerID": c.id, "Running": False, "ExitCode": None,
                           "ProcessConfig": {"tty": bool(config.get("Tty")),
                                             "entrypoint": config["Cmd"][0],
                                             "arguments": config["Cmd"][1:]},
                           "OpenStdin": bool(config.get("AttachStdin")), "Pid": 0,
                           "_cmd": config["Cmd"]}
        return eid

    def exec_inspect(self, eid: str) -> dict:
        if eid not in self.execs:
            raise NotFound(f"No such exec instance: {eid}")
        return {k: v for k, v in self.execs[eid].items() if not k.startswith("_")}

    def exec_start(self, eid: str, sock: socket.socket | None, detach: bool, tty: bool,
                   console_size: Sequence[int] | None = None) -> None:
        e = self.execs[eid]
        self.exec_console_sizes[eid] = console_size
        cmd = e["_cmd"]
        e["Running"] = True
        time.sleep(0.05)  # a real process starts later than the 101: clients rely on that
        out = b""
        code = 0
        if cmd[0] == "echo":
            out = (" ".join(cmd[1:]) + "\n").encode()
        elif cmd[0] == "cat" and sock is not None:
            buf = b""
            while True:
                d = sock.recv(65536)
                if not d:
                    break
                buf += d
            out = buf
        elif cmd[0] == "exit":
            code = int(cmd[1])
        elif cmd[0] == "nosuch":
            code = 126 + 1
        if sock is not None and out:
            sock.sendall(out if tty else _frame(1, out))
        e["Running"], e["ExitCode"] = False, code

    def exec_resize(self, eid: str, h: int, w: int) -> None:
        self.exec_inspect(eid)


@dataclass
class FakeImage:
    id: str
    repo_tags: list[str]
    repo_digests: list[str] = field(default_factory=list)
    config: dict = field(default_factory=lambda: {"Cmd": ["sh"]})
    created: float = 1_700_000_000.0
    size: int = 4_000_000
    parent_chain: list[str] = field(default_factory=list)
    pull_status: str = ""
    platform: str | None = None

    def to_docker(self, inspect: bool = False) -> dict:
        return {"Id": self.id, "RepoTags": self.repo_tags, "RepoDigests": self.repo_digests,
                "Created": int(self.created), "Size": self.size, "VirtualSize": self.size,
                "SharedSize": -1, "Labels": self.config.get("Labels") or {}, "Containers": -1,
                "ParentId": ""}


class FakeGraph:
    """A Graph: `pull` knows 'busybox' and 'slow' (reports progress), fails otherwise."""

    def __init__(self) -> None:
        self.images: dict[str, FakeImage] = {}
        self.saved: list[list[str]] = []

    def _add(self, ref: str) -> FakeImage:
        if ":" not in ref.rsplit("/", 1)[-1]:
            ref += ":latest"
        img = FakeImage("sha256:" + hashlib.sha256(ref.encode()).hexdigest(), [ref],
                        [ref.rsplit(":", 1)[0] + "@sha256:" + "ab" * 32])
        self.images[img.id] = img
        return img

    def get(self, ref: str) -> FakeImage:
        full = ref if ":" in ref.rsplit("/", 1)[-1] or ref.startswith("sha256:") \
            else ref + ":latest"
        for img in self.images.values():
            if full in img.repo_tags or img.id == ref or img.id == "sha256:" + ref \
                    or (len(ref) >= 4 and img.id[7:].startswith(ref)):
                return img
        raise NotFound(f"No such image: {full}")

    def pull(self, ref: str, *, auth: dict | None = None, progress: Any = None,
             platform: str | None = None) -> FakeImage:
        name = ref.rsplit(":", 1)[0]
        if name not in ("busybox", "slow", "localhost:5000/busybox"):
            raise NotFound(f"pull access denied for {name}, repository does not exist")
        if progress:
            progress({"status": f"Pulling from library/{name}", "id": "latest"})
            for i in range(3):
                progress({"status": "Downloading", "id": "abc123",
                          "progressDetail": {"current": (i + 1) * 100, "total": 300},
                          "progress": "[==>   ]"})
                if name == "slow":
                    time.sleep(0.3)
            progress({"status": "Pull complete", "id": "abc123", "progressDetail": {}})
        try:
            self.get(ref)
            existed = True
        except NotFound:
            existed = False
        img = self._add(ref)
        img.platform = platform
        img.pull_status = (f"Image is up to date for {img.repo_tags[0]}" if existed
                           else f"Downloaded newer image for {img.repo_tags[0]}")
        return img

    def push(self, ref: str, *, auth: dict | None = None, progress: Any = None) -> dict:
        self.get(ref)
        if progress:
            progress({"status": "Pushed", "id": "abc123", "progressDetail": {}})
        return {"Tag": ref.rsplit(":", 1)[-1], "Digest": "sha256:" + "cd" * 32, "Size": 527}

    def load(self, fileobj: Any, progress: Any = None) -> list[str]:
        data = fileobj.read()
        if not data.startswith(b"FAKE:"):
            raise InvalidParameter("invalid tar header")
        refs = data[5:].decode().split()
        for r in refs:
            self._add(r)
        return [f"Loaded image: {r}" for r in refs]

    def save(self, refs: list[str], fileobj: Any) -> None:
        self.saved.append(list(refs))
        fileobj.write(b"FAKE:" + " ".join(refs).encode())

    def import_tar(self, fileobj: Any, ref: str | None = None,
                   changes: list[str] | None = None) -> FakeImage:
        data = fileobj.read()
        img = FakeImage("sha256:" + hashlib.sha256(data).hexdigest(), [ref] if ref else [])
        self.images[img.id] = img
        return img

    def list(self) -> list[FakeImage]:
        return list(self.images.values())

    def tag(self, src: str, ref: str) -> None:
        self.get(src).repo_tags.append(ref)

    def remove(self, ref: str, force: bool = False, prune: bool = True
               ) -> builtins.list[dict]:
        img = self.get(ref)
        out: list[dict] = []
        if ref in img.repo_tags and len(img.repo_tags) > 1:
            img.repo_tags.remove(ref)
            return [{"Untagged": ref}]
        out += [{"Untagged": t} for t in img.repo_tags]
        del self.images[img.id]
        out.append({"Deleted": img.id})
        return out


class FakeNetwork:
    def __init__(self) -> None:
        self.nets: dict[str, dict] = {
            n: {"Name": n, "Id": hashlib.sha256(n.encode()).hexdigest(), "Driver": d,
                "Scope": "local", "Containers": {}, "IPAM": {"Config": []}, "Internal": False}
            for n, d in (("bridge", "bridge"), ("host", "host"), ("none", "null"))}

    def list_networks(self) -> list[dict]:
        return list(self.nets.values())

    def inspect_network(self, name: str) -> dict:
        for n in self.nets.values():
            if name in (n["Name"], n["Id"]) or (len(name) >= 3 and n["Id"].startswith(name)):
                return n
        raise NotFound(f"network {name} not found")

    def create_network(self, name: str, subnet: str | None = None, **kw: Any) -> dict:
        if name in self.nets:
            raise Conflict(f"network with name {name} already exists")
        n = {"Name": name, "Id": hashlib.sha256(name.encode()).hexdigest(), "Driver": "bridge",
             "Scope": "local", "Containers": {}, "Internal": bool(kw.get("internal")),
             "Options": dict(kw.get("options") or {}), "Labels": dict(kw.get("labels") or {}),
             "IPAM": {"Config": [{"Subnet": subnet, **({"Gateway": kw["gateway"]}
                                                      if kw.get("gateway") else {})}]
                      if subnet else []}}
        self.nets[name] = n
        return n

    def remove_network(self, name: str) -> None:
        del self.nets[self.inspect_network(name)["Name"]]

    def info(self) -> dict:
        return {"ip_forward": True, "br_netfilter": False, "bridge": "fake0",
                "subnet": "10.99.0.0/24"}


@contextlib.contextmanager
def fake_daemon(*, containers: bool = True, images: bool = True, networks: bool = True
                ) -> Iterator[tuple[str, Any]]:
    """A real skiffd server on a temporary unix socket over fake backends.

    Yields (socket path, Backends)."""
    from engine.daemon.router import Backends, build
    from engine.daemon.server import Server
    from engine.jobs import Engine

    eng = Engine()
    g = FakeGraph() if images else None
    b = Backends(engine=eng, images=g, networks=FakeNetwork() if networks else None,
                 containers=FakeContainers(g, eng.emit) if containers else None,
                 config={"root": "/fake", "storage_driver": "fake"})
    d = tempfile.mkdtemp(prefix="skiff-fake-")
    path = os.path.join(d, "skiff.sock")
    srv = Server(build(b), [Server.listen("unix://" + path, group=None)])
    srv.start()
    try:
        yield path, b
    finally:
        srv.shutdown()
        eng.close()
        with contextlib.suppress(OSError):
            os.rmdir(d)


__all__ = ["FakeContainers", "FakeGraph", "FakeNetwork", "FakeVolumes", "fake_daemon", "io"]
