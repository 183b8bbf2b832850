"""skiff-runc's hand-written runc-style command line parser."""

from __future__ import annotations

import pytest

from engine.libcontainer.cli import UsageError, parse_args


def test_globals_and_create_flags():
    a = parse_args(["--root", "/r", "--log=/l", "--log-format", "json", "--debug", "create",
                    "--bundle", "/b", "--pid-file=/p", "--console-socket", "/s", "cid"])
    assert (a.root, a.log, a.log_format, a.debug) == ("/r", "/l", "json", True)
    assert (a.cmd, a.bundle, a.pid_file, a.console_socket, a.id) == (
        "create", "/b", "/p", "/s", "cid")
    assert a.preserve_fds == 0 and a.detach is None


def test_defaults():
    a = parse_args(["run", "x"])
    assert a.root == "/run/skiff-runc" and a.bundle == "" and not a.detach


def test_go_style_single_dash_long_flags_and_flags_after_id():
    a = parse_args(["run", "-bundle", "/b", "x", "-d"])
    assert (a.bundle, a.id, a.detach) == ("/b", "x", True)


def test_kill_signal_optional():
    assert parse_args(["kill", "x"]).signal == "SIGTERM"
    a = parse_args(["kill", "--all", "x", "KILL"])
    assert (a.all, a.signal) == (True, "KILL")


def test_exec_keeps_process_flags():
    a = parse_args(["exec", "-t", "--env", "A=1", "-e", "B=2", "-u", "5:6", "x", "sh", "-c",
                    "echo -e hi"])
    assert a.tty and a.env == ["A=1", "B=2"] and a.user == "5:6"
    assert a.command == ["sh", "-c", "echo -e hi"]


@pytest.mark.parametrize("argv", [["bogus"], ["create"], ["start", "a", "b"],
                                  ["run", "--nope", "x"], ["run", "--bundle"],
                                  ["create", "--preserve-fds", "x", "id"]])
def test_usage_errors(argv):
    with pytest.raises(UsageError):
        parse_args(argv)


def test_fastjson_matches_json():
    import json

    from engine.libcontainer import fastjson

    doc = {"a": [1, 2.5, -3e10, None, True, False], "é": "x\"y\\\n", "n": {"z": 1, "b": []}}
    text = json.dumps(doc)
    assert fastjson.loads(text) == doc == fastjson.loads(text.encode())
    assert fastjson.loads(" \n" + text + "\n ") == doc
    assert fastjson.dumps(doc) == text
    assert fastjson.dumps(doc, sort_keys=True, compact=True) == json.dumps(
        doc, sort_keys=True, separators=(",", ":"))
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads("{bad")
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads("[1] trailing")
    with pytest.raises(TypeError):
        fastjson.dumps({"s": {1, 2}})
