"""Images, networks and volumes areas against fake backends over a real socket."""

from __future__ import annotations

import base64
import json

import pytest

from engine.client.api import APIError, Client
from engine.daemon.fakes import fake_daemon
from engine.daemon.router.images import join_ref, registry_auth


@pytest.fixture
def d():
    with fake_daemon() as (path, b):
        yield Client("unix://" + path), b


def err(fn):
    with pytest.raises(APIError) as ei:
        fn()
    return ei.value.status, ei.value.message


@pytest.mark.parametrize("image,tag,ref", [
    ("busybox", "latest", "busybox:latest"),
    ("busybox", None, "busybox:latest"),
    ("busybox:1.36", None, "busybox:1.36"),
    ("localhost:5000/a/b", None, "localhost:5000/a/b:latest"),
    ("busybox", "sha256:" + "a" * 64, "busybox@sha256:" + "a" * 64),
])
def test_join_ref(image, tag, ref):
    assert join_ref(image, tag) == ref


def test_pull_streams_progress_then_status(d):
    c, b = d
    msgs = list(c.stream_json("POST", "/images/create", {"fromImage": "busybox", "tag": "latest"},
                              headers=Client.auth_header()))
    assert msgs[0]["status"].startswith("Pulling from")
    assert any(m.get("progressDetail", {}).get("total") == 300 for m in msgs)
    assert msgs[-1]["status"] == "Status: Downloaded newer image for busybox:latest"
    assert any(m["status"].startswith("Digest: sha256:") for m in msgs)
    assert [e["Action"] for e in b.engine._events] == ["pull"]


def test_a_second_pull_is_up_to_date_and_platform_reaches_the_graph(d):
    c, b = d
    q = {"fromImage": "busybox", "tag": "latest", "platform": "linux/arm64"}
    msgs = list(c.stream_json("POST", "/images/create", q))
    assert msgs[-1]["status"] == "Status: Downloaded newer image for busybox:latest"
    assert b.images.get("busybox:latest").platform == "linux/arm64"
    msgs = list(c.stream_json("POST", "/images/create", {"fromImage": "busybox"}))
    assert msgs[-1]["status"] == "Status: Image is up to date for busybox:latest"
    assert b.images.get("busybox:latest").platform is None


def test_pull_failure_is_an_in_stream_error(d):
    c, _ = d
    msgs = list(c.stream_json("POST", "/images/create", {"fromImage": "nope", "tag": "1"}))
    assert "error" in msgs[-1] and "nope" in msgs[-1]["errorDetail"]["message"]


def test_pull_requires_from_image_and_valid_auth(d):
    c, _ = d
    assert err(lambda: c.post("/images/create"))[0] == 400
    r = c.http.post("/v1.44/images/create?fromImage=busybox",
                    headers={"X-Registry-Auth": "!!notbase64"})
    assert r.status_code == 400


def test_registry_auth_decoding():
    class R:
        headers = {"x-registry-auth": base64.urlsafe_b64encode(
            json.dumps({"username": "u", "password": "p"}).encode()).decode().rstrip("=")}

    assert registry_auth(R()) == {"username": "u", "password": "p"}  # type: ignore[arg-type]
    R.headers = {"x-registry-auth": "e30="}
    assert registry_auth(R()) is None  # type: ignore[arg-type]


def test_slow_pull_is_a_visible_job(d):
    import threading
    import time

    c, b = d
    t = threading.Thread(target=lambda: list(c.stream_json(
        "POST", "/images/create", {"fromImage": "slow", "tag": "latest"})))
    t.start()
    seen = None
    for _ in range(50):
        jobs = Client(c.host).get("/jobs")
        if jobs and jobs[0]["Progress"]:
            seen = jobs[0]
            break
        time.sleep(0.05)
    t.join()
    assert seen and seen["Name"] == "image.pull" and seen["Args"] == {"ref": "slow:latest"}


def test_list_inspect_tag_delete(d):
    c, b = d
    b.images.pull("busybox:latest")
    imgs = c.get("/images/json")
    assert imgs[0]["RepoTags"] == ["busybox:latest"]
    assert c.get("/images/json", filters=json.dumps({"reference": ["bus*"]}))
    assert c.get("/images/json", filters=json.dumps({"reference": ["nope"]})) == []
    assert c.get("/images/json", filters=json.dumps({"dangling": ["true"]})) == []
    iid = imgs[0]["Id"]
    assert c.get("/images/busybox/json")["Id"] == iid
    assert c.get(f"/images/{iid}/json")["Id"] == iid
    st, msg = err(lambda: c.get("/images/nothere/json"))
    assert st == 404 and msg == "No such image: nothere:latest"
    c.post("/images/busybox/tag", repo="localhost:5000/busybox", tag="v1")
    assert c.get("/images/localhost:5000/busybox:v1/json")["Id"] == iid
    assert c.delete("/images/localhost:5000/busybox:v1") == [
        {"Untagged": "localhost:5000/busybox:v1"}]
    out = c.delete("/images/busybox")
    assert {"Deleted": iid} in out
    assert err(lambda: c.delete("/images/busybox"))[0] == 404


def test_push_ends_with_aux(d):
    c, b = d
    b.images.pull("busybox:latest")
    msgs = list(c.stream_json("POST", "/images/busybox/push", {"tag": "latest"}))
    assert msgs[-1]["aux"]["Digest"].startswith("sha256:")


def test_load_save_import(d):
    c, b = d
    msgs = list(c.stream_json("POST", "/images/load", data=b"FAKE:busybox:latest a:1"))
    assert [m["stream"] for m in msgs] == ["Loaded image: busybox:latest\n",
                                           "Loaded image: a:1\n"]
    bad = list(c.stream_json("POST", "/images/load", data=b"garbage"))
    assert "invalid tar" in bad[-1]["error"]
    tar = b"".join(c.stream("GET", "/images/get", {"names": ["busybox", "a:1"]}))
    assert tar == b"FAKE:busybox a:1"
    assert b"".join(c.stream("GET", "/images/a:1/get")) == b"FAKE:a:1"
    assert err(lambda: list(c.stream("GET", "/images/get", {"names": "zz"})))[0] == 404
    msgs = list(c.stream_json("POST", "/images/create", {"fromSrc": "-", "repo": "imp",
                                                          "tag": "2"}, data=b"rootfs"))
    assert msgs[0]["status"].startswith("sha256:")
    assert c.get("/images/imp:2/json")["RepoTags"] == ["imp:2"]


def test_networks(d):
    c, b = d
    names = [n["Name"] for n in c.get("/networks")]
    assert names == ["bridge", "host", "none"]
    assert [n["Name"] for n in c.get("/networks", filters=json.dumps({"name": ["brid"]}))] \
        == ["bridge"]
    r = c.http.post("/v1.44/networks/create", json={"Name": "skt4n", "IPAM": {
        "Config": [{"Subnet": "10.204.1.0/24"}]}})
    assert r.status_code == 201 and r.json()["Id"]
    assert err(lambda: c.post("/networks/create", {"Name": "skt4n"}))[0] == 409
    assert err(lambda: c.post("/networks/create", {"Name": "x", "Driver": "overlay"}))[0] == 400
    assert err(lambda: c.post("/networks/create", {"Name": "x", "IPAM": {
        "Config": [{"Subnet": "300.1.1.0/24"}]}}))[0] == 400
    assert err(lambda: c.post("/networks/create", {"Name": 3}))[0] == 400
    assert c.get("/networks/skt4n")["IPAM"]["Config"] == [{"Subnet": "10.204.1.0/24"}]
    c.delete("/networks/skt4n")
    assert err(lambda: c.get("/networks/skt4n"))[0] == 404
    assert err(lambda: c.delete("/networks/bridge"))[0] == 403


def test_network_create_passes_options_labels_internal_gateway(d):
    """`docker network create -o com.docker.network.bridge.name=X --label a=b --internal
    --gateway G` must reach NetworkDriver.create_network (options were once dropped)."""
    c, b = d
    body = {"Name": "skt8o", "Options": {"com.docker.network.bridge.name": "skt8brx"},
            "Labels": {"a": "b"}, "Internal": True,
            "IPAM": {"Config": [{"Subnet": "10.208.9.0/24", "Gateway": "10.208.9.254"}]}}
    assert c.post("/networks/create", body)["Id"]
    n = b.networks.nets["skt8o"]
    assert n["Options"] == {"com.docker.network.bridge.name": "skt8brx"}
    assert n["Labels"] == {"a": "b"} and n["Internal"] is True
    assert n["IPAM"]["Config"] == [{"Subnet": "10.208.9.0/24", "Gateway": "10.208.9.254"}]
    assert err(lambda: c.post("/networks/create", {"Name": "skt8p", "Options": {"x": 1}}))[0] \
        == 400
    assert "skt8p" not in b.networks.nets


def test_volumes(d):
    c, _ = d
    v = c.post("/volumes/create", {"Name": "skt4v", "Labels": {"a": "b"}})
    assert v["Name"] == "skt4v" and v["Driver"] == "local"
    assert [x["Name"] for x in c.get("/volumes")["Volumes"]] == ["skt4v"]
    assert c.get("/volumes/skt4v")["Labels"] == {"a": "b"}
    assert err(lambda: c.post("/volumes/create", {"Name": "bad/name"}))[0] == 400
    assert err(lambda: c.post("/volumes/create", {"Driver": "nfs"}))[0] == 400
    c.delete("/volumes/skt4v")
    assert err(lambda: c.get("/volumes/skt4v"))[0] == 404


def test_prunes_and_df(d):
    c, b = d
    b.images.pull("busybox:latest")
    cid = c.post("/containers/create", {"Image": "busybox", "Cmd": ["exit", "0"]})["Id"]
    c.post(f"/containers/{cid}/start")
    live = c.post("/containers/create", {"Image": "busybox", "Cmd": ["sleep"]})["Id"]
    c.post(f"/containers/{live}/start")
    assert c.post("/containers/prune")["ContainersDeleted"] == [cid]
    assert c.post("/images/prune")["ImagesDeleted"] == []  # busybox is tagged
    c.post("/volumes/create", {"Name": "pv"})
    assert c.post("/volumes/prune")["VolumesDeleted"] == ["pv"]
    c.post("/networks/create", {"Name": "pn"})
    assert c.post("/networks/prune")["NetworksDeleted"] == ["pn"]
    df = c.get("/system/df")
    assert [x["Id"] for x in df["Containers"]] == [live] and df["Images"]
