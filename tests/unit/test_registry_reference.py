"""Reference parsing with docker's defaults (docker.io, library/, latest)."""

import pytest

from engine.errors import InvalidParameter
from engine.registry.reference import is_image_id, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "s, full, familiar",
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/foo/bar:1", "docker.io/foo/bar:1", "foo/bar:1"),
        ("localhost/x:y", "localhost/x:y", "localhost/x:y"),
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
        (f"127.0.0.1:5000/team/app@{D}", f"127.0.0.1:5000/team/app@{D}",
         f"127.0.0.1:5000/team/app@{D}"),
        (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
        ("a.b/c/d/e:tag-1.2_x", "a.b/c/d/e:tag-1.2_x", "a.b/c/d/e:tag-1.2_x"),
    ],
)
def test_parse_normalizes(s, full, familiar):
    r = parse(s)
    assert str(r) == full
    assert r.familiar() == familiar


def test_parts_and_registry_host():
    r = parse("127.0.0.1:5000/team/app:v1")
    assert (r.domain, r.path, r.tag, r.digest) == ("127.0.0.1:5000", "team/app", "v1", None)
    assert r.registry_host == "127.0.0.1:5000"
    assert parse("busybox").registry_host == "registry-1.docker.io"


def test_no_default_tag_when_asked():
    assert parse("busybox", default_tag=False).tag is None


@pytest.mark.parametrize(
    "bad",
    ["", " busybox", "Busybox", "busy box", "busybox:", "busybox:-x", "a//b", "busybox@sha256:12",
     "busybox@sha256:" + "g" * 64, "-lead", "x:" + "t" * 200],
)
def test_bad_references_name_the_problem(bad):
    with pytest.raises(InvalidParameter, match="invalid reference format"):
        parse(bad)


def test_is_image_id():
    assert is_image_id("sha256:" + "0" * 64)
    assert is_image_id("0" * 64)
    assert not is_image_id("busybox")
