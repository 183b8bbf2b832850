"""The `skiff` client: parsing helpers, --format, and whole verbs against a fake daemon."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.client import cli
from engine.client import format as fmt
from engine.client.api import demux, frame
from engine.client.stream import parse_detach_keys
from engine.daemon.fakes import fake_daemon


@pytest.mark.parametrize("v,n", [("512m", 512 << 20), ("1g", 1 << 30), ("100k", 102400),
                                 ("1024", 1024), ("1.5g", int(1.5 * (1 << 30))), ("6MB", 6 << 20)])
def test_parse_bytes(v, n):
    assert cli.parse_bytes(v) == n


def test_parse_bytes_rejects_garbage():
    with pytest.raises(cli.CLIError):
        cli.parse_bytes("lots")


def test_parse_ports():
    exposed, binds = cli.parse_ports(["127.0.0.1:18080:80", "53/udp", "8000:8000"])
    assert exposed == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}}
    assert binds["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "18080"}]
    assert binds["53/udp"] == [{"HostIp": "", "HostPort": ""}]
    with pytest.raises(cli.CLIError):
        cli.parse_ports(["a:b:c:d"])


def test_parse_ports_is_the_network_drivers_parser():
    """Ranges expand per port (docker's CLI does), --expose ranges too, and what the daemon's
    parser rejects the client rejects with the same words (one parser, not two)."""
    from engine.drivers.network import portspec

    specs = ["8000-8001:80-81", "127.0.0.1::53/udp", "9000-9005:90"]
    exposed, binds = cli.parse_ports(specs, ["7000-7001/udp", "443"])
    want_exposed, want_binds = portspec.parse_port_specs(specs)
    assert binds == want_binds
    assert binds["81/tcp"] == [{"HostIp": "", "HostPort": "8001"}]
    assert binds["90/tcp"] == [{"HostIp": "", "HostPort": "9000-9005"}]
    assert exposed == {k: {} for k in [*want_exposed, "7000/udp", "7001/udp", "443/tcp"]}
    for bad in ("70000", "80/sctp", "1-3:80-81", "x:80:80"):
        with pytest.raises(cli.CLIError) as ei:
            cli.parse_ports([bad])
        with pytest.raises(portspec.InvalidParameter) as pe:
            portspec.parse_port_specs([bad])
        assert str(ei.value) == str(pe.value)
    with pytest.raises(cli.CLIError):
        cli.parse_ports([], ["0"])


def test_parse_restart_filters_env(monkeypatch):
    assert cli.parse_restart("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    with pytest.raises(cli.CLIError):
        cli.parse_restart("always:3")
    assert cli.parse_filters(["status=exited", "name=a", "name=b"]) == {
        "status": ["exited"], "name": ["a", "b"]}
    monkeypatch.setenv("SKT4_X", "1")
    assert cli.parse_env(["A=b", "SKT4_X", "SKT4_UNSET"], []) == ["A=b", "SKT4_X=1"]


def test_detach_keys():
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"


def test_templates():
    obj = {"ID": "abc", "Names": "web", "State": {"Running": True, "Pid": 3},
           "Labels": {"a": "b"}, "List": ["x", "y"]}
    assert fmt.render("{{.ID}} {{.Names}}", obj) == "abc web"
    assert fmt.render("{{.State.Running}}/{{.State.Pid}}", obj) == "true/3"
    assert json.loads(fmt.render("{{json .}}", obj)) == obj
    assert fmt.render("{{json .Labels}}", obj) == '{"a": "b"}'
    assert fmt.render('{{index .Labels "a"}}', obj) == "b"
    assert fmt.render('{{join .List ","}}|{{len .List}}|{{upper .Names}}', obj) == "x,y|2|WEB"
    assert fmt.render("{{.Missing}}", obj) == "<no value>"
    assert fmt.render("a\\tb", obj) == "a\tb"
    out = fmt.format_rows("table {{.ID}}\\t{{.Names}}", [obj], [])
    assert out.splitlines()[0].split() == ["CONTAINER", "ID", "NAMES"]


def test_human_units():
    assert fmt.human_size(1_980_000) == "1.98MB"
    assert fmt.human_size(512) == "512B"
    assert fmt.human_duration(0.2) == "Less than a second"
    assert fmt.human_duration(3 * 3600) == "3 hours"


def test_demux_and_frame_roundtrip():
    data = frame(1, b"out") + frame(2, b"err") + frame(1, b"")
    chunks = [data[i:i + 5] for i in range(0, len(data), 5)]
    assert list(demux(iter(chunks))) == [(1, b"out"), (2, b"err"), (1, b"")]


@pytest.fixture
def host():
    with fake_daemon() as (path, b):
        b.images.pull("busybox:latest")
        yield "unix://" + path, b


def run(host, capsys, *argv):
    rc = cli.main(["-H", host, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_run_rm_prints_output_and_returns_exit_code(host, capsys):
    h, b = host
    assert run(h, capsys, "run", "--rm", "busybox", "echo", "hi") == (0, "hi\n", "")
    rc, _, _ = run(h, capsys, "run", "--rm", "busybox", "exit", "7")
    assert rc == 7
    assert b.containers.cs == {}


def test_run_survives_a_late_waiter_and_a_late_attach(host, capsys, monkeypatch):
    """The daemon answers wait's 200 and attach's 101 before its threads look at the
    container; a fast (auto-removed) run must still stream its output and exit code.

    This hung in a full unit run: the fake looked at the exit count only when its wait
    thread ran, so a run that had already exited waited forever for the 'next' exit."""
    import threading
    import time

    from engine.daemon.fakes import FakeContainers

    attach_prepare, prepare = FakeContainers.attach_prepare, FakeContainers.wait_prepare

    def late_attach(self, *a, **k):
        stream = attach_prepare(self, *a, **k)  # registered before the 101, like the daemon

        def late_stream(sock):
            time.sleep(0.3)
            return stream(sock)

        return late_stream

    def late_prepare(self, *a, **k):
        block = prepare(self, *a, **k)

        def late_block(timeout=None):
            time.sleep(0.3)
            return block(timeout)

        return late_block

    def late_wait(self, *a, **k):
        time.sleep(0.3)
        return FakeContainers.wait_prepare(self, *a, **k)(None)

    monkeypatch.setattr(FakeContainers, "attach_prepare", late_attach)
    monkeypatch.setattr(FakeContainers, "wait_prepare", late_prepare)
    monkeypatch.setattr(FakeContainers, "wait", late_wait)
    h, b = host
    results = []

    def runs():
        for argv in (["--rm", "busybox", "echo", "hi"], ["--rm", "busybox", "exit", "7"],
                     ["busybox", "echo", "x"], ["busybox", "exit", "3"]):
            results.append(run(h, capsys, "run", *argv))

    t = threading.Thread(target=runs, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), f"skiff run hung after {results}"
    assert results == [(0, "hi\n", ""), (7, "", ""), (0, "x\n", ""), (3, "", "")]
    assert len(b.containers.cs) == 2


def test_detached_run_leaves_no_wait_behind(host, capsys):
    """`run -d` closes its wait connection so the daemon's wait job ends (not at exit)."""
    import time

    h, b = host
    rc, out, _ = run(h, capsys, "run", "-d", "busybox", "sleep")
    assert rc == 0
    deadline = time.monotonic() + 5
    while any(j.name == "container.wait" for j in b.engine.jobs()):
        assert time.monotonic() < deadline, [j.name for j in b.engine.jobs()]
        time.sleep(0.05)


def test_run_pulls_a_missing_image(host, capsys):
    h, b = host
    b.images.images.clear()
    rc, out, err = run(h, capsys, "run", "--rm", "busybox", "echo", "x")
    assert rc == 0 and out.endswith("x\n") and "Unable to find image" in err


def test_run_errors_are_125(host, capsys):
    h, _ = host
    rc, _, err = run(h, capsys, "run", "--rm", "nothere", "true")
    assert rc == 125 and "nothere" in err
    rc, _, err = run(h, capsys, "run", "--memory", "1k", "busybox", "true")
    assert rc == 125 and "Minimum memory" in err
    rc, _, err = run(h, capsys, "run", "--rm", "busybox", "nosuch")
    assert rc == 127 and "executable file not found" in err


def test_daemon_down_is_reported(capsys):
    rc, _, err = run("unix:///nonexistent/skiff.sock", capsys, "run", "busybox")
    assert rc == 125 and "Cannot connect" in err
    rc, _, err = run("unix:///nonexistent/skiff.sock", capsys, "ps")
    assert rc == 1


def test_run_d_ps_logs_inspect_stop_rm(host, capsys):
    h, b = host
    rc, out, _ = run(h, capsys, "run", "-d", "--name", "web", "-p", "8080:80", "-e", "A=1",
                     "--memory", "64m", "--restart", "on-failure:2", "busybox", "sleep")
    cid = out.strip()
    assert rc == 0 and len(cid) == 64
    c = b.containers.cs[cid]
    assert c.host_config["Memory"] == 64 << 20
    assert c.host_config["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert c.host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert c.config["Env"] == ["A=1"] and c.config["Cmd"] == ["sleep"]
    rc, out, _ = run(h, capsys, "ps")
    assert out.splitlines()[0].split()[:2] == ["CONTAINER", "ID"] and "web" in out
    assert run(h, capsys, "ps", "-q")[1].strip() == cid[:12]
    assert run(h, capsys, "ps", "--format", "{{.Names}}:{{.State}}")[1] == "web:running\n"
    rc, out, _ = run(h, capsys, "inspect", "-f", "{{.State.Running}} {{.Name}}", "web")
    assert out == "true /web\n"
    rc, out, err = run(h, capsys, "inspect", "nothing-here")
    assert rc == 1 and "No such object" in err
    assert run(h, capsys, "stop", "web")[:2] == (0, "web\n")
    rc, out, err = run(h, capsys, "rm", "web", "ghost")
    assert rc == 1 and out == "web\n" and "No such container: ghost" in err


def test_logs_and_exec(host, capsys):
    h, b = host
    run(h, capsys, "run", "-d", "--name", "e1", "busybox", "echo", "logged")
    assert run(h, capsys, "logs", "e1")[1] == "logged\n"
    assert run(h, capsys, "logs", "-t", "e1")[1].startswith("2026-01-01T")
    run(h, capsys, "run", "-d", "--name", "e2", "busybox", "sleep")
    assert run(h, capsys, "exec", "e2", "echo", "hi") == (0, "hi\n", "")
    assert run(h, capsys, "exec", "e2", "exit", "5")[0] == 5
    assert run(h, capsys, "exec", "-d", "e2", "echo", "x")[0] == 0


def test_images_rmi_tag_pull_load_save(host, capsys, tmp_path):
    h, b = host
    rc, out, _ = run(h, capsys, "images")
    assert out.splitlines()[1].split()[:2] == ["busybox", "latest"]
    assert run(h, capsys, "images", "--format", "{{.Repository}}:{{.Tag}}")[1] == \
        "busybox:latest\n"
    assert run(h, capsys, "tag", "busybox", "mine:1")[0] == 0
    rc, out, _ = run(h, capsys, "rmi", "mine:1")
    assert out == "Untagged: mine:1\n"
    rc, out, _ = run(h, capsys, "pull", "busybox")
    assert rc == 0 and "Image is up to date for busybox:latest" in out
    rc, out, _ = run(h, capsys, "pull", "localhost:5000/busybox:1")
    assert rc == 0 and "Downloaded newer image for localhost:5000/busybox:1" in out
    rc, out, err = run(h, capsys, "pull", "nope")
    assert rc == 1 and "nope" in err
    tar = tmp_path / "x.tar"
    assert run(h, capsys, "save", "-o", str(tar), "busybox")[0] == 0
    assert tar.read_bytes() == b"FAKE:busybox"
    tar.write_bytes(b"FAKE:other:2")
    assert run(h, capsys, "load", "-i", str(tar))[1] == "Loaded image: other:2\n"
    rootfs = tmp_path / "r.tar"
    rootfs.write_bytes(b"root")
    rc, out, _ = run(h, capsys, "import", str(rootfs), "imp:1")
    assert rc == 0 and out.startswith("sha256:")


def test_version_info_jobs_network_volume(host, capsys):
    h, _ = host
    rc, out, _ = run(h, capsys, "version")
    assert rc == 0 and "Skiff Engine" in out and "1.44" in out
    assert run(h, capsys, "version", "--format", "{{.Server.ApiVersion}}")[1] == "1.44\n"
    assert "Containers:" in run(h, capsys, "info")[1]
    assert run(h, capsys, "jobs", "-a")[1].splitlines()[0].split()[:3] == ["ID", "NAME",
                                                                           "STATUS"]
    assert "bridge" in run(h, capsys, "network", "ls")[1]
    assert run(h, capsys, "network", "create", "--subnet", "10.204.2.0/24", "n1")[0] == 0
    assert json.loads(run(h, capsys, "network", "inspect", "n1")[1])[0]["Name"] == "n1"
    assert run(h, capsys, "network", "rm", "n1")[1] == "n1\n"
    assert run(h, capsys, "volume", "create", "v1")[1] == "v1\n"
    assert "v1" in run(h, capsys, "volume", "ls")[1]
    assert run(h, capsys, "volume", "rm", "v1")[1] == "v1\n"


def test_update_and_top_and_stats(host, capsys):
    h, b = host
    cid = run(h, capsys, "run", "-d", "busybox", "sleep")[1].strip()
    assert run(h, capsys, "update", "--memory", "128m", "--cpus", "0.5", cid)[0] == 0
    assert b.containers.cs[cid].host_config["Memory"] == 128 << 20
    assert b.containers.cs[cid].host_config["NanoCpus"] == 500_000_000
    assert "PID" in run(h, capsys, "top", cid)[1]
    assert "MEM USAGE" in run(h, capsys, "stats", "--no-stream", cid)[1]


def test_bad_flags_exit_125(capsys):
    assert cli.main(["run", "--no-such-flag", "busybox"]) == 125


def test_run_sends_ranges_as_docker_does_and_rejects_bad_ports(host, capsys):
    h, b = host
    rc, out, _ = run(h, capsys, "run", "-d", "-p", "8000-8001:80-81", "--expose", "53/udp",
                     "busybox", "sleep")
    assert rc == 0
    c = b.containers.cs[out.strip()]
    assert c.config["ExposedPorts"] == {"80/tcp": {}, "81/tcp": {}, "53/udp": {}}
    assert c.host_config["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8000"}],
                                             "81/tcp": [{"HostIp": "", "HostPort": "8001"}]}
    n = len(b.containers.cs)
    rc, _, err = run(h, capsys, "run", "-d", "-p", "8080:99999", "busybox", "sleep")
    assert rc == 125 and "out of range" in err and len(b.containers.cs) == n


def test_cli_does_not_import_the_network_driver() -> None:
    # every `skiff` command pays for its imports: -p parsing needs portspec only, not pyroute2
    code = ("import sys, engine.client.cli as c; c.parse_ports(['8080:80'], ['90']); "
            "import engine.drivers.network as n; n.parse_port_spec; "
            "print(sorted(m for m in sys.modules if m.startswith(('pyroute2', "
            "'engine.drivers.network.driver', 'engine.drivers.network.nftables'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_run_and_update_share_resource_flags() -> None:
    p = cli.build_parser()
    flags = ["-m", "64m", "--memory-swap", "-1", "--cpus", "1.5", "-c", "512",
             "--cpuset-cpus", "0", "--pids-limit", "10"]
    want = {"Memory": 64 << 20, "MemorySwap": -1, "NanoCpus": 1_500_000_000,
            "CpuShares": 512, "CpusetCpus": "0", "PidsLimit": 10}
    assert cli.resource_flags(p.parse_args(["run", *flags, "busybox"])) == want
    assert cli.resource_flags(p.parse_args(["update", *flags, "c1"])) == want
    a = p.parse_args(["container", "ls", "-a", "-n", "2", "--no-trunc", "-s"])
    b = p.parse_args(["ps", "-a", "-n", "2", "--no-trunc", "-s"])
    assert (a.all, a.last, a.no_trunc, a.size) == (b.all, b.last, b.no_trunc, b.size)
    a = p.parse_args(["image", "ls", "--digests", "-q", "busybox"])
    b = p.parse_args(["images", "--digests", "-q", "busybox"])
    assert (a.digests, a.quiet, a.reference) == (b.digests, b.quiet, b.reference)


def test_client_and_daemon_share_human_duration() -> None:
    # `skiff ps` columns and the daemon's Status must word durations the same way
    from engine import timefmt
    from engine.containers import state

    assert fmt.human_duration is state.human_duration is timefmt.human_duration
    assert [timefmt.human_duration(s) for s in (0, 1, 59, 90, 5400, 3 * 86400)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "2 hours", "3 days"]


def test_exec_t_sends_console_size(host, capsys, monkeypatch):
    from engine.client import stream

    h, b = host
    monkeypatch.setattr(stream, "terminal_size", lambda: (24, 80))
    assert run(h, capsys, "run", "-d", "--name", "cs", "busybox", "sleep")[0] == 0
    assert run(h, capsys, "exec", "-t", "cs", "echo", "hi")[0] == 0
    assert run(h, capsys, "exec", "cs", "echo", "hi")[0] == 0
    assert list(b.containers.exec_console_sizes.values()) == [[24, 80], None]
