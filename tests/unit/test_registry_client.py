"""Registry client and pull/push against an in-memory registry (httpx.MockTransport).

Covers the auth flows (anonymous, Bearer token from WWW-Authenticate with scopes, basic), the
distribution 2.8 Accept-type traps, index platform selection, digest verification of manifests
and blobs, download de-duplication, progress messages, push with HEAD checks and cross-repo
mounts, and that a failed pull leaves nothing behind.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from engine.errors import NotFound, Unavailable
from engine.graph import Graph
from engine.registry.client import (
    MANIFEST_ACCEPT,
    DigestMismatch,
    Registry,
    Unauthorized,
    is_insecure,
    parse_challenge,
)
from engine.registry.distribution import choose_manifest
from tests.images.builder import Image, canonical, file_layer, sha256
from tests.images.fake_registry import MT_OCI_INDEX, FakeRegistry

HOST = "registry.test"
BASE = file_layer({"bin/sh": "#!fake", "etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
APP = file_layer({"app/run": "run"})


def graph(tmp_path: Path, reg: FakeRegistry, name: str = "root") -> Graph:
    return Graph(tmp_path / name, "vfs", transport=reg.transport())


@pytest.fixture
def reg():
    return FakeRegistry(HOST)


def assert_empty(g: Graph) -> None:
    assert g.list() == []
    assert g.layers() == []
    assert g.blobs.all() == []
    assert g.driver.ids() == []


# -- pure helpers ------------------------------------------------------------------------------

def test_parse_challenge():
    scheme, p = parse_challenge('Bearer realm="https://auth.docker.io/token",'
                                'service="registry.docker.io",scope="repository:library/a:pull"')
    assert scheme == "bearer"
    assert p == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                 "scope": "repository:library/a:pull"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


@pytest.mark.parametrize("host,extra,want", [
    ("127.0.0.1:5000", (), True), ("127.9.9.9", (), True), ("localhost:5000", (), True),
    ("[::1]:5000", (), True), ("registry.test", (), False), ("10.1.2.3:5000", (), False),
    ("10.1.2.3:5000", ("10.0.0.0/8",), True), ("reg.lan:5000", ("reg.lan:5000",), True),
])
def test_is_insecure(host, extra, want):
    assert is_insecure(host, extra) is want


def test_choose_manifest_picks_linux_amd64():
    idx = {"manifests": [
        {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
    ]}
    assert choose_manifest(idx)["digest"] == "sha256:" + "2" * 64
    assert choose_manifest(idx, "linux/arm64")["digest"] == "sha256:" + "1" * 64
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        choose_manifest(idx, "linux/s390x")


# -- manifests ------------------------------------------------------------------------------------

def test_manifest_sent_with_every_accept_type(reg):
    reg.put_image("lib/a", "1", Image([BASE]))
    with Registry(HOST, transport=reg.transport()) as r:
        raw, mt, digest = r.get_manifest("lib/a", "1")
    assert mt == "application/vnd.docker.distribution.manifest.v2+json"
    accept = reg.requests[-1].headers["accept"]
    for t in MANIFEST_ACCEPT:
        assert t in accept
    assert digest == sha256(raw)


def test_trap_schema2_without_docker_accept_becomes_schema1(reg):
    """Why we send the docker type: without it distribution 2.8 converts to schema1."""
    reg.put_image("lib/a", "1", Image([BASE]))
    resp = httpx.Client(transport=reg.transport()).get(
        f"https://{HOST}/v2/lib/a/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert json.loads(resp.content)["schemaVersion"] == 1


def test_trap_oci_with_docker_types_only_is_unknown(reg):
    reg.put_image("lib/o", "1", Image([BASE]), docker=False)
    resp = httpx.Client(transport=reg.transport()).get(
        f"https://{HOST}/v2/lib/o/manifests/1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert resp.status_code == 404
    with Registry(HOST, transport=reg.transport()) as r:
        _, mt, _ = r.get_manifest("lib/o", "1")
    assert mt == "application/vnd.oci.image.manifest.v1+json"


def test_manifest_digest_mismatch(reg):
    d = reg.put_image("lib/a", "1", Image([BASE]))
    reg.corrupt.add(d)
    with Registry(HOST, transport=reg.transport()) as r:
        with pytest.raises(DigestMismatch, match="digest mismatch"):
            r.get_manifest("lib/a", "1")
        with pytest.raises(DigestMismatch):
            r.get_manifest("lib/a", d)


def test_unknown_tag_is_not_found(reg):
    with Registry(HOST, transport=reg.transport()) as r:
        with pytest.raises(NotFound, match="manifest for registry.test/lib/a:nope not found"):
            r.get_manifest("lib/a", "nope")


def test_connection_error_is_unavailable():
    def boom(request):
        raise httpx.ConnectError("connection refused")

    with Registry(HOST, transport=httpx.MockTransport(boom)) as r:
        with pytest.raises(Unavailable, match="connection refused"):
            r.get_manifest("lib/a", "1")


# -- auth -------------------------------------------------------------------------------------------

def test_bearer_token_flow_with_scope():
    reg = FakeRegistry(HOST, auth="bearer")
    reg.put_image("lib/a", "1", Image([BASE]))
    with Registry(HOST, transport=reg.transport(),
                  auth={"username": "alice", "password": "secret"}) as r:
        r.get_manifest("lib/a", "1")
        r.get_manifest("lib/a", "1")  # token reused: no second token request
    assert len(reg.token_requests) == 1
    tr = reg.token_requests[0]
    assert tr["scope"] == ["repository:lib/a:pull"] and tr["service"] == [HOST]
    assert tr["authorization"].startswith("Basic ")
    assert reg.requests[-1].headers["authorization"].startswith("Bearer tok")


def test_bearer_wrong_password():
    reg = FakeRegistry(HOST, auth="bearer")
    reg.put_image("lib/a", "1", Image([BASE]))
    with Registry(HOST, transport=reg.transport(),
                  auth={"username": "alice", "password": "nope"}) as r:
        with pytest.raises(Unauthorized, match="authentication required"):
            r.get_manifest("lib/a", "1")


def test_basic_auth_and_docker_auth_field():
    reg = FakeRegistry(HOST, auth="basic")
    reg.put_image("lib/a", "1", Image([BASE]))
    with Registry(HOST, transport=reg.transport(),
                  auth={"username": "alice", "password": "secret"}) as r:
        r.get_manifest("lib/a", "1")
    token = base64.b64encode(b"alice:secret").decode()
    with Registry(HOST, transport=reg.transport(), auth={"auth": token}) as r:
        r.get_manifest("lib/a", "1")
    with Registry(HOST, transport=reg.transport()) as r:
        with pytest.raises(Unauthorized):
            r.get_manifest("lib/a", "1")


def test_pull_and_push_with_bearer_auth(tmp_path):
    reg = FakeRegistry(HOST, auth="bearer")
    reg.put_image("lib/a", "1", Image([BASE, APP]))
    auth = {"username": "alice", "password": "secret"}
    g = graph(tmp_path, reg)
    img = g.pull(f"{HOST}/lib/a:1", auth=auth)
    g.tag(img.id, f"{HOST}/lib/b:2")
    res = g.push(f"{HOST}/lib/b:2", auth=auth)
    assert res["Tag"] == "2"
    push_scopes = [t["scope"] for t in reg.token_requests]
    assert any("repository:lib/b:pull,push" in s for s in push_scopes)
    g.close()


# -- pull ---------------------------------------------------------------------------------------------

def test_pull_docker_and_oci_share_layers(tmp_path, reg):
    reg.put_image("lib/d", "1", Image([BASE, APP]))
    reg.put_image("lib/o", "1", Image([BASE, file_layer({"other": "o"})]), docker=False)
    g = graph(tmp_path, reg)
    msgs: list[dict] = []
    a = g.pull(f"{HOST}/lib/d:1", progress=msgs.append, summary=True)
    assert a.repo_tags == [f"{HOST}/lib/d:1"]
    assert a.repo_digests[0].startswith(f"{HOST}/lib/d@sha256:")
    statuses = [m.get("status") for m in msgs]
    assert statuses[0] == f"Pulling from {HOST}/lib/d"
    for s in ("Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete",
              "Extracting", "Pull complete"):
        assert s in statuses
    assert statuses[-1] == f"Status: Downloaded newer image for {HOST}/lib/d:1"
    dl = next(m for m in msgs if m.get("status") == "Downloading")
    assert set(dl) == {"status", "progressDetail", "progress", "id"} and len(dl["id"]) == 12
    msgs.clear()
    b = g.pull(f"{HOST}/lib/o:1", progress=msgs.append, summary=True)
    assert [m["status"] for m in msgs].count("Already exists") == 1
    assert len(g.layers()) == 3
    assert sorted(g.layer_users(BASE.diff_id)) == sorted([a.id, b.id])
    msgs.clear()
    g.pull(f"{HOST}/lib/d:1", progress=msgs.append, summary=True)
    assert msgs[-1]["status"] == f"Status: Image is up to date for {HOST}/lib/d:1"
    g.close()


def test_pull_by_digest(tmp_path, reg):
    d = reg.put_image("lib/a", "1", Image([BASE]))
    g = graph(tmp_path, reg)
    img = g.pull(f"{HOST}/lib/a@{d}")
    assert img.repo_tags == [] and img.repo_digests == [f"{HOST}/lib/a@{d}"]
    assert g.get(f"{HOST}/lib/a@{d}").id == img.id
    g.close()


def test_pull_index_picks_linux_amd64(tmp_path, reg):
    amd = Image([BASE])
    arm = Image([file_layer({"arm": "64"})], architecture="arm64")
    descs = []
    for img in (arm, amd):
        d = reg.put_image("lib/multi", None, img, docker=False)
        raw = img.manifest()
        descs.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d,
                      "size": len(raw), "platform": {"os": "linux",
                                                     "architecture": img.architecture}})
    idx = canonical({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": descs})
    idx_digest = reg.put_manifest("lib/multi", "latest", idx, MT_OCI_INDEX)
    g = graph(tmp_path, reg)
    img = g.pull(f"{HOST}/lib/multi")
    assert img.diff_ids == [BASE.diff_id]
    assert img.repo_digests == [f"{HOST}/lib/multi@{idx_digest}"]
    g.close()


@pytest.mark.parametrize("fault", ["corrupt-layer", "missing-layer", "corrupt-config"])
def test_failed_pull_leaves_nothing_and_retry_succeeds(tmp_path, reg, fault):
    image = Image([BASE, APP])
    reg.put_image("lib/a", "1", image)
    target = sha256(APP.gz) if "layer" in fault else sha256(image.config())
    (reg.corrupt if "corrupt" in fault else reg.missing).add(target)
    g = graph(tmp_path, reg)
    err = DigestMismatch if "corrupt" in fault else NotFound
    with pytest.raises(err) as e:
        g.pull(f"{HOST}/lib/a:1")
    assert target in str(e.value)
    assert_empty(g)
    reg.corrupt.clear()
    reg.missing.clear()
    img = g.pull(f"{HOST}/lib/a:1")
    assert img.diff_ids == [BASE.diff_id, APP.diff_id]
    g.close()


def test_layer_diff_id_mismatch_with_config(tmp_path, reg):
    """Blob digests fine, but the config's diff_ids lie: the layer is refused, nothing kept."""
    image = Image([BASE])
    cfg = json.loads(image.config())
    cfg["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    bad_cfg = canonical(cfg)
    reg.put_blob("lib/a", bad_cfg)
    reg.put_blob("lib/a", BASE.gz)
    m = json.loads(image.manifest(docker=True))
    m["config"] = {"mediaType": m["config"]["mediaType"], "digest": sha256(bad_cfg),
                   "size": len(bad_cfg)}
    reg.put_manifest("lib/a", "1", canonical(m),
                     "application/vnd.docker.distribution.manifest.v2+json")
    g = graph(tmp_path, reg)
    with pytest.raises(Exception, match="diff ID mismatch"):
        g.pull(f"{HOST}/lib/a:1")
    assert_empty(g)
    g.close()


def test_downloads_are_deduplicated_against_the_store(tmp_path, reg):
    reg.put_image("lib/a", "1", Image([BASE, APP]))
    reg.put_image("lib/b", "1", Image([BASE, file_layer({"b": "b"})]))
    g = graph(tmp_path, reg)
    g.pull(f"{HOST}/lib/a:1")
    reg.requests.clear()
    g.pull(f"{HOST}/lib/b:1")
    blob_gets = [str(r.url) for r in reg.requests if "/blobs/" in str(r.url)]
    assert not any(sha256(BASE.gz) in u for u in blob_gets)
    g.close()


def test_concurrent_pulls_download_each_blob_once(tmp_path, reg):
    import threading

    reg.put_image("lib/a", "1", Image([BASE, APP]))
    reg.put_image("lib/a", "2", Image([BASE, APP], cmd=["other"]))
    g = graph(tmp_path, reg)
    errors: list[BaseException] = []

    def go(tag: str) -> None:
        try:
            g.pull(f"{HOST}/lib/a:{tag}")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=go, args=(t,)) for t in ("1", "2", "1")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert len(g.layers()) == 2 and len(g.list()) == 2
    g.close()


# -- push ---------------------------------------------------------------------------------------------

def test_push_uploads_then_skips_then_mounts(tmp_path, reg):
    g = graph(tmp_path, reg)
    import io

    from tests.images.builder import write_docker_save

    write_docker_save({f"{HOST}/lib/a:1": Image([BASE, APP])}, tmp_path / "s.tar")
    g.load(io.BytesIO((tmp_path / "s.tar").read_bytes()))
    msgs: list[dict] = []
    res = g.push(f"{HOST}/lib/a:1", progress=msgs.append, summary=True)
    statuses = [m.get("status") for m in msgs]
    assert statuses[0] == f"The push refers to repository [{HOST}/lib/a]"
    assert statuses.count("Pushed") == 2
    assert msgs[-1]["aux"] == res and res["Tag"] == "1"
    raw, mt = reg.manifests["lib/a"]["1"]
    assert mt == "application/vnd.docker.distribution.manifest.v2+json"
    assert sha256(raw) == res["Digest"]
    assert any(m.get("status") == "Pushing" for m in msgs)
    # again: every layer already exists
    msgs.clear()
    g.push(f"{HOST}/lib/a:1", progress=msgs.append, summary=True)
    assert [m.get("status") for m in msgs].count("Layer already exists") == 2
    # to another repo of the same registry: cross-repo mount
    g.tag(f"{HOST}/lib/a:1", f"{HOST}/team/b:1")
    msgs.clear()
    g.push(f"{HOST}/team/b:1", progress=msgs.append, summary=True)
    assert [m.get("status") for m in msgs].count("Mounted from lib/a") == 0
    assert [m.get("status") for m in msgs].count(f"Mounted from {HOST}/lib/a") == 2
    mounts = [r for r in reg.requests if "mount=" in str(r.url)]
    assert len(mounts) == 2
    # pull back into an empty graph: same image
    g2 = graph(tmp_path, reg, "other")
    assert g2.pull(f"{HOST}/team/b:1").id == g.get(f"{HOST}/lib/a:1").id
    g2.close()
    g.close()


def test_rmi_of_pulled_tag_also_untags_its_digest(tmp_path, reg):
    d = reg.put_image("lib/a", "1", Image([BASE]))
    g = graph(tmp_path, reg)
    img = g.pull(f"{HOST}/lib/a:1")
    out = g.remove(f"{HOST}/lib/a:1")
    assert out[:2] == [{"Untagged": f"{HOST}/lib/a:1"}, {"Untagged": f"{HOST}/lib/a@{d}"}]
    assert {"Deleted": img.id} in out
    assert_empty(g)
    g.close()


def test_pull_starts_with_get_v2_and_reuses_the_challenge(tmp_path):
    reg = FakeRegistry(HOST, auth="bearer")
    reg.put_image("lib/a", "1", Image([BASE]))
    g = graph(tmp_path, reg)
    g.pull(f"{HOST}/lib/a:1", auth={"username": "alice", "password": "secret"})
    first = reg.requests[0]
    assert (first.method, first.url.path) == ("GET", "/v2/")
    # after the /v2/ challenge: one token for the repository scope, then no more 401s
    assert len(reg.token_requests) == 1
    assert reg.token_requests[0]["scope"] == ["repository:lib/a:pull"]
    manifest_gets = [r for r in reg.requests if "/manifests/" in r.url.path]
    assert all("authorization" in r.headers for r in manifest_gets)
    g.close()


def test_not_a_registry():
    def handler(request):
        return httpx.Response(404, text="nope")

    with Registry(HOST, transport=httpx.MockTransport(handler)) as r:
        with pytest.raises(Exception, match="not a v2 registry"):
            r.ping()


def test_oversized_manifest_refused():
    def handler(request):
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(200, content=b"{" + b" " * (5 << 20) + b"}",
                              headers={"Content-Type": "application/json"})

    with Registry(HOST, transport=httpx.MockTransport(handler)) as r:
        with pytest.raises(Exception, match="larger than"):
            r.get_manifest("lib/a", "1")
