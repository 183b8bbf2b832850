"""`-p`/`--expose` parsing and PortBindings normalization (docker's shapes and errors)."""

from __future__ import annotations

import pytest

from engine.drivers.network.portspec import (
    BindingRequest,
    PortRange,
    normalize_bindings,
    parse_expose,
    parse_port_spec,
    parse_port_specs,
)
from engine.errors import InvalidParameter


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("80", [("80/tcp", {"HostIp": "", "HostPort": ""})]),
        ("8080:80", [("80/tcp", {"HostIp": "", "HostPort": "8080"})]),
        ("8080:80/udp", [("80/udp", {"HostIp": "", "HostPort": "8080"})]),
        ("127.0.0.1:8080:80", [("80/tcp", {"HostIp": "127.0.0.1", "HostPort": "8080"})]),
        ("127.0.0.1::80", [("80/tcp", {"HostIp": "127.0.0.1", "HostPort": ""})]),
        ("8000-8010:80", [("80/tcp", {"HostIp": "", "HostPort": "8000-8010"})]),
        ("0:80", [("80/tcp", {"HostIp": "", "HostPort": ""})]),
        (
            "8080-8081:80-81/udp",
            [
                ("80/udp", {"HostIp": "", "HostPort": "8080"}),
                ("81/udp", {"HostIp": "", "HostPort": "8081"}),
            ],
        ),
        (
            "7000-7001",
            [
                ("7000/tcp", {"HostIp": "", "HostPort": ""}),
                ("7001/tcp", {"HostIp": "", "HostPort": ""}),
            ],
        ),
        ("80/TCP", [("80/tcp", {"HostIp": "", "HostPort": ""})]),
    ],
)
def test_parse_port_spec(spec, expected):
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("", "empty"),
        ("abc", "container port"),
        ("8080:", "no container port"),
        ("0", "out of range"),
        ("65536", "out of range"),
        ("70000:80", "out of range"),
        ("80/sctp", "protocol"),
        ("1.2.3:80:80", "not an IP address"),
        ("8080-8082:80-81", "invalid ranges"),
        ("90-80", "below its start"),
        ("[::1]:80:80", "IPv6"),
        ("a:b:c:d", "host IP"),
        ("-1:80", "host port"),
    ],
)
def test_parse_port_spec_errors(spec, fragment):
    with pytest.raises(InvalidParameter) as e:
        parse_port_spec(spec)
    assert fragment in str(e.value)
    assert repr(spec) in str(e.value) or spec == ""


def test_parse_port_specs_merges_and_dedups():
    exposed, bindings = parse_port_specs(["8080:80", "8080:80", "127.0.0.1:9090:80", "53:53/udp"])
    assert list(exposed) == ["80/tcp", "53/udp"]
    assert bindings == {
        "80/tcp": [
            {"HostIp": "", "HostPort": "8080"},
            {"HostIp": "127.0.0.1", "HostPort": "9090"},
        ],
        "53/udp": [{"HostIp": "", "HostPort": "53"}],
    }


def test_parse_expose():
    assert parse_expose("80") == ["80/tcp"]
    assert parse_expose("7000-7002/udp") == ["7000/udp", "7001/udp", "7002/udp"]
    with pytest.raises(InvalidParameter):
        parse_expose("x")


def test_normalize_bindings_shapes():
    reqs = normalize_bindings(
        {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5000-5010"}],
            "81": None,
            "82/tcp": [],
        }
    )
    assert reqs == [
        BindingRequest("tcp", 80, "0.0.0.0", PortRange(8080, 8080)),
        BindingRequest("udp", 53, "127.0.0.1", PortRange(5000, 5010)),
        BindingRequest("tcp", 81, "0.0.0.0", None),
        BindingRequest("tcp", 82, "0.0.0.0", None),
    ]


def test_normalize_publish_all_skips_bound():
    reqs = normalize_bindings(
        {"80/tcp": [{"HostPort": "8080"}]}, {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}, True
    )
    assert [(r.container_port, r.proto, r.host_range) for r in reqs] == [
        (80, "tcp", PortRange(8080, 8080)),
        (443, "tcp", None),
        (53, "udp", None),
    ]


@pytest.mark.parametrize(
    "bindings, fragment",
    [
        ({"80/tcp": [{"HostPort": "99999"}]}, "HostPort"),
        ({"80/tcp": [{"HostIp": "not-an-ip"}]}, "HostIp"),
        ({"80/xyz": []}, "protocol"),
        ({"0/tcp": []}, "out of range"),
        ({"80-81/tcp": []}, "single port"),
        ({"80/tcp": "8080"}, "expected a list"),
        ("80:80", "PortBindings"),
    ],
)
def test_normalize_bindings_errors(bindings, fragment):
    with pytest.raises(InvalidParameter) as e:
        normalize_bindings(bindings)
    assert fragment in str(e.value)
