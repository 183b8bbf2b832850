"""The cp/export/diff/commit/health routes' request checks, over the fake backends: clear 400s
and 404s naming the field and value, before any backend work."""

from __future__ import annotations

import pytest

from engine.client.api import APIError, Client
from engine.daemon.fakes import fake_daemon


@pytest.fixture
def c():
    with fake_daemon() as (path, b):
        b.images.pull("busybox:latest")
        yield Client("unix://" + path)


def status_of(fn) -> tuple[int, str]:
    with pytest.raises(APIError) as ei:
        fn()
    return ei.value.status, ei.value.message


def test_commit_needs_a_container(c):
    st, msg = status_of(lambda: c.request("POST", "/commit", {"repo": "x"}))
    assert st == 400 and "container" in msg
    st, msg = status_of(lambda: c.request("POST", "/commit", {"container": "x"}, data=b"[1]",
                                          headers={"Content-Type": "application/json"}))
    assert st == 400 and "Config" in msg


def test_commit_body_healthcheck_is_validated(c):
    st, msg = status_of(lambda: c.request("POST", "/commit", {"container": "x"},
                                          body={"Healthcheck": {"Test": ["RUN", "x"]}}))
    assert st == 400 and "Healthcheck.Test" in msg


@pytest.mark.parametrize("hc,word", [
    ({"Test": ["CMD"]}, "needs a command"),
    ({"Test": ["CMD", "true"], "Interval": 10}, "Interval"),
    ({"Test": ["CMD", "true"], "Retries": -2}, "Retries"),
])
def test_create_rejects_bad_healthchecks(c, hc, word):
    st, msg = status_of(lambda: c.post("/containers/create", {"Image": "busybox",
                                                               "Cmd": ["true"],
                                                               "Healthcheck": hc}))
    assert st == 400 and word in msg and "Config.Healthcheck" in msg


def test_archive_and_changes_of_unknown_container_are_404(c):
    for method, path in (("GET", "/containers/nope/archive"), ("PUT", "/containers/nope/archive"),
                         ("GET", "/containers/nope/export"), ("GET", "/containers/nope/changes")):
        st, msg = status_of(lambda m=method, p=path: c.request(m, p, {"path": "/"}))
        assert st == 404 and "nope" in msg, (method, path, st, msg)
