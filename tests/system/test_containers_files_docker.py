"""docker cp / export / diff / commit / ps --size / healthchecks / stats --no-stream through the
unmodified docker CLI, docker-py and skiff against a real skiffd (root, real kernel)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.system.daemon import Skiffd, until

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def d(require_root, busybox_image):
    with Skiffd("skt14a", subnet="10.214.0.0/26") as dm:
        dm.load_busybox(busybox_image)
        yield dm


@pytest.fixture
def docker_cli(d):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    return d.docker


def ok(r):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr}"
    return r


def _overlay_mounts(d: Skiffd) -> int:
    return sum(1 for line in open("/proc/self/mounts") if str(d.root) in line)


def _run(d: Skiffd, name: str, script: str, *extra: str) -> str:
    r = ok(d.skiff("run", "-d", "--name", name, *extra, "busybox", "sh", "-c", script))
    return r.stdout.strip()


def _wait_file(d: Skiffd, name: str, path: str) -> None:
    until(lambda: d.skiff("exec", name, "test", "-e", path).returncode == 0,
           what=f"{path} in {name}")


def test_cp_both_ways_running_and_stopped(d, docker_cli, tmp_path):
    _run(d, "skt12-cp", "echo hi > /tmp/f; mkdir -p /tmp/dir/sub; echo deep > /tmp/dir/sub/x;"
         " touch /tmp/ready; sleep 600")
    _wait_file(d, "skt12-cp", "/tmp/ready")
    ok(docker_cli("cp", "skt12-cp:/tmp/f", str(tmp_path / "f")))
    assert (tmp_path / "f").read_text() == "hi\n"
    ok(docker_cli("cp", "skt12-cp:/tmp/dir", str(tmp_path)))
    assert (tmp_path / "dir" / "sub" / "x").read_text() == "deep\n"
    (tmp_path / "in.txt").write_text("to the container\n")
    ok(docker_cli("cp", str(tmp_path / "in.txt"), "skt12-cp:/tmp/"))
    ok(docker_cli("cp", str(tmp_path / "in.txt"), "skt12-cp:/tmp/renamed.txt"))
    assert ok(d.skiff("exec", "skt12-cp", "cat", "/tmp/in.txt", "/tmp/renamed.txt")).stdout \
        == "to the container\n" * 2
    ok(docker_cli("stop", "-t", "0", "skt12-cp"))
    before = _overlay_mounts(d)
    (tmp_path / "stopped.txt").write_text("while stopped\n")
    ok(docker_cli("cp", str(tmp_path / "stopped.txt"), "skt12-cp:/tmp/"))
    ok(docker_cli("cp", "skt12-cp:/tmp/stopped.txt", str(tmp_path / "back.txt")))
    assert (tmp_path / "back.txt").read_text() == "while stopped\n"
    r = docker_cli("cp", "skt12-cp:/nope", str(tmp_path / "x"))
    assert r.returncode != 0 and "Could not find the file /nope" in r.stderr
    assert _overlay_mounts(d) == before  # the stopped rootfs was unmounted again
    ok(docker_cli("start", "skt12-cp"))
    assert ok(d.skiff("exec", "skt12-cp", "cat", "/tmp/stopped.txt")).stdout == "while stopped\n"
    ok(d.skiff("rm", "-f", "skt12-cp"))


def test_cp_symlinks_cannot_escape_to_the_host(d, docker_cli, tmp_path):
    marker = f"skt12-escape-{os.getpid()}"
    _run(d, "skt12-esc", "ln -s / /tmp/root; ln -s ../../../../../../tmp /tmp/up; "
         "ln -s /etc/hostname /tmp/hn; touch /tmp/ready; sleep 600")
    _wait_file(d, "skt12-esc", "/tmp/ready")
    (tmp_path / marker).write_text("x")
    try:
        ok(docker_cli("cp", str(tmp_path / marker), "skt12-esc:/tmp/root/"))
        ok(docker_cli("cp", str(tmp_path / marker), "skt12-esc:/tmp/up/"))
        assert not Path("/" + marker).exists() and not Path("/tmp/" + marker).exists()
        assert ok(d.skiff("exec", "skt12-esc", "ls", "/" + marker, "/tmp/" + marker)).stdout
        # reading through links gives the container's files, not the host's
        ok(docker_cli("cp", "-L", "skt12-esc:/tmp/hn", str(tmp_path / "hn")))
        cid = ok(d.skiff("inspect", "-f", "{{.Id}}", "skt12-esc")).stdout.strip()
        assert (tmp_path / "hn").read_text().strip() == cid[:12]
        ok(docker_cli("cp", "skt12-esc:/tmp/root/etc/hostname", str(tmp_path / "hn2")))
        assert (tmp_path / "hn2").read_text().strip() == cid[:12]
        ok(docker_cli("cp", "skt12-esc:/tmp/hn", str(tmp_path / "link")))
        assert os.readlink(tmp_path / "link") == "/etc/hostname"  # a link stays a link
    finally:
        for p in ("/" + marker, "/tmp/" + marker):
            if Path(p).exists():
                os.unlink(p)
        d.skiff("rm", "-f", "skt12-esc")


def test_cp_into_a_bind_mount_and_read_only_rootfs(d, docker_cli, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    _run(d, "skt12-vol", "sleep 600", "-v", f"{vol}:/data", "--read-only")
    (tmp_path / "a.txt").write_text("a")
    ok(docker_cli("cp", str(tmp_path / "a.txt"), "skt12-vol:/data/"))
    assert (vol / "a.txt").read_text() == "a"
    r = docker_cli("cp", str(tmp_path / "a.txt"), "skt12-vol:/tmp/")
    assert r.returncode != 0 and "read-only" in r.stderr
    ok(d.skiff("rm", "-f", "skt12-vol"))


def test_cp_reaches_volumes_and_etc_files_below_the_path(d, docker_cli, tmp_path):
    """As docker (which mounts the volumes into the rootfs for cp): `cp c:/srv` holds the bind
    mount at /srv/vol and `cp c:/etc` the container's own hosts file; a directory copied into
    /srv lands in the bind mount, where the container sees it."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in-volume.txt").write_text("v")
    _run(d, "skt12-nest", "mkdir -p /srv; echo r > /srv/r.txt; sleep 600",
         "-v", f"{vol}:/srv/vol", "--add-host", "skt12-peer:10.214.0.9")
    _wait_file(d, "skt12-nest", "/srv/r.txt")
    out = tmp_path / "out"
    ok(docker_cli("cp", "skt12-nest:/srv", str(out)))
    assert (out / "vol" / "in-volume.txt").read_text() == "v"
    assert (out / "r.txt").read_text() == "r\n"
    ok(docker_cli("cp", "skt12-nest:/etc", str(tmp_path / "etc")))
    assert "skt12-peer" in (tmp_path / "etc" / "hosts").read_text()
    src = tmp_path / "src"
    (src / "vol" / "deep").mkdir(parents=True)
    (src / "vol" / "deep" / "n.txt").write_text("n")
    ok(docker_cli("cp", f"{src}/.", "skt12-nest:/srv"))
    assert (vol / "deep" / "n.txt").read_text() == "n"
    assert ok(d.skiff("exec", "skt12-nest", "cat", "/srv/vol/deep/n.txt")).stdout == "n"
    ok(d.skiff("rm", "-f", "skt12-nest"))


def test_cp_of_the_root_directory(d, docker_cli, tmp_path):
    """`cp c:/ out` makes out/ with the root's contents (hard links kept), with docker's CLI
    (whose rebase wrote "out./..." from entries named "./...") and with skiff."""
    _run(d, "skt12-root", "echo a > /tmp/a; ln /tmp/a /tmp/b; touch /tmp/ready; sleep 600")
    _wait_file(d, "skt12-root", "/tmp/ready")
    for cli, out in ((docker_cli, tmp_path / "out"), (d.skiff, tmp_path / "out2")):
        ok(cli("cp", "skt12-root:/", str(out)))
        assert (out / "tmp" / "a").read_text() == "a\n" and (out / "bin" / "busybox").exists()
        assert os.path.samefile(out / "tmp" / "a", out / "tmp" / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out2"]
    ok(d.skiff("rm", "-f", "skt12-root"))


def test_cp_through_a_bind_mount_whose_host_path_is_a_symlink(d, docker_cli, tmp_path):
    """The host side of a bind mount is the admin's path (the kernel follows its symlinks
    when mounting): cp both ways reaches it, also the mount's own directory."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "f.txt").write_text("f")
    _run(d, "skt12-lnk", "sleep 600", "-v", f"{tmp_path / 'link'}:/data")
    ok(docker_cli("cp", str(tmp_path / "f.txt"), "skt12-lnk:/data/"))
    assert (tmp_path / "real" / "f.txt").read_text() == "f"
    ok(docker_cli("cp", "skt12-lnk:/data", str(tmp_path / "out")))
    assert (tmp_path / "out" / "f.txt").read_text() == "f"
    ok(d.skiff("rm", "-f", "skt12-lnk"))


def test_export_diff_commit_and_run(d, docker_cli, tmp_path):
    _run(d, "skt12-com", "echo new > /new.txt; rm /bin/vi; echo more >> /etc/passwd; "
         "touch /tmp/ready; sleep 600")
    _wait_file(d, "skt12-com", "/tmp/ready")
    diff = ok(docker_cli("diff", "skt12-com")).stdout.splitlines()
    assert "A /new.txt" in diff and "D /bin/vi" in diff and "C /etc/passwd" in diff
    assert "C /bin" in diff and not any("hosts" in line for line in diff)
    exp = subprocess.run(f"docker -H {d.host} export skt12-com | tar tf -", shell=True,
                         capture_output=True, text=True, check=True).stdout.split()
    assert "new.txt" in exp and "bin/busybox" in exp and "bin/vi" not in exp
    iid = ok(docker_cli("commit", "-m", "msg", "-c", "ENV SKT=12", "skt12-com",
                        "skt12/committed:v1")).stdout.strip()
    assert iid.startswith("sha256:")
    r = ok(docker_cli("run", "--rm", "skt12/committed:v1", "sh", "-c",
                      "cat /new.txt; tail -1 /etc/passwd; echo $SKT; test -e /bin/vi || echo gone"))
    assert r.stdout.split() == ["new", "more", "12", "gone"]
    img = json.loads(ok(docker_cli("image", "inspect", "skt12/committed:v1")).stdout)[0]
    base = json.loads(ok(docker_cli("image", "inspect", "busybox")).stdout)[0]
    assert img["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(img["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
    # the committed layer is stored as a blob too: docker save (and push) can send it
    saved = subprocess.run(f"docker -H {d.host} save skt12/committed:v1 | tar tf -",
                           shell=True, capture_output=True, text=True)
    assert saved.returncode == 0 and "manifest.json" in saved.stdout, saved.stderr
    # --pause=false still freezes for the diff (safety), and the container runs on after
    ok(docker_cli("commit", "--pause=false", "skt12-com", "skt12/committed:v2"))
    st = json.loads(ok(docker_cli("inspect", "-f", "{{json .State}}", "skt12-com")).stdout)
    assert st["Status"] == "running" and not st["Paused"]
    ok(d.skiff("rm", "-f", "skt12-com"))
    ok(docker_cli("rmi", "skt12/committed:v1", "skt12/committed:v2"))


def test_ps_size(d, docker_cli):
    _run(d, "skt12-size", "head -c 100000 /dev/zero > /big; touch /tmp/ready; sleep 600")
    _wait_file(d, "skt12-size", "/tmp/ready")
    out = ok(docker_cli("ps", "--size", "--format", "{{.Names}} {{.Size}}",
                        "--filter", "name=skt12-size")).stdout
    assert out.startswith("skt12-size 100kB (virtual ")
    info = json.loads(ok(docker_cli("inspect", "--size", "skt12-size")).stdout)[0]
    assert info["SizeRw"] == 100000 and info["SizeRootFs"] > 100000
    ok(d.skiff("rm", "-f", "skt12-size"))


def test_health_turns_healthy_then_unhealthy(d, docker_cli):
    since = str(time.time() - 1)
    _run(d, "skt12-hc", "touch /tmp/ok; sleep 600", "--health-cmd", "test -f /tmp/ok",
         "--health-interval", "200ms", "--health-retries", "2")

    def status() -> str:
        return ok(docker_cli("inspect", "-f", "{{.State.Health.Status}}", "skt12-hc")
                  ).stdout.strip()

    assert status() in ("starting", "healthy")
    until(lambda: status() == "healthy", what="healthy")
    assert "(healthy)" in ok(docker_cli("ps", "--filter", "name=skt12-hc")).stdout
    ok(d.skiff("exec", "skt12-hc", "rm", "/tmp/ok"))
    until(lambda: status() == "unhealthy", what="unhealthy")
    h = json.loads(ok(docker_cli("inspect", "-f", "{{json .State.Health}}", "skt12-hc")).stdout)
    assert h["Status"] == "unhealthy" and h["FailingStreak"] >= 2 and len(h["Log"]) <= 5
    assert h["Log"][-1]["ExitCode"] == 1
    ps = ok(docker_cli("ps", "--filter", "health=unhealthy", "--format", "{{.Names}} {{.Status}}"
                       )).stdout
    assert "skt12-hc" in ps and "(unhealthy)" in ps
    ev = ok(docker_cli("events", "--since", since, "--until", str(time.time()), "--filter",
                       "container=skt12-hc", "--format", "{{.Action}}")).stdout.split("\n")
    assert "health_status: healthy" in ev and "health_status: unhealthy" in ev
    # finished probes do not pile up as execs (the user's rm, maybe one probe in flight),
    # and docker wait still works
    assert len(json.loads(ok(docker_cli("inspect", "-f", "{{json .ExecIDs}}", "skt12-hc")
                             ).stdout) or []) <= 2
    ok(docker_cli("kill", "skt12-hc"))
    assert ok(docker_cli("wait", "skt12-hc")).stdout.strip() == "137"
    ok(d.skiff("rm", "-f", "skt12-hc"))


def test_health_unhealthy_when_stopped_starting_again_on_start(d, docker_cli):
    """docker: stopping a container stops its probes and shows it unhealthy; the next start
    is "starting" with no failing streak, and the previous run's Log is kept."""
    _run(d, "skt12-hcs", "sleep 600", "--health-cmd", "true", "--health-interval", "200ms")

    def health() -> dict:
        return json.loads(ok(docker_cli("inspect", "-f", "{{json .State.Health}}", "skt12-hcs")
                             ).stdout)

    until(lambda: health()["Status"] == "healthy", what="healthy")
    ok(docker_cli("stop", "-t", "0", "skt12-hcs"))
    h = health()
    # (a probe in flight while the container dies may count one failure, in docker too)
    assert h["Status"] == "unhealthy" and h["Log"]
    ok(docker_cli("start", "skt12-hcs"))
    h2 = health()
    assert h2["Status"] in ("starting", "healthy") and h2["Log"][:len(h["Log"])] == h["Log"]
    assert h2["FailingStreak"] == 0
    until(lambda: health()["Status"] == "healthy", what="healthy again")
    ok(d.skiff("rm", "-f", "skt12-hcs"))


def test_no_healthcheck_and_bad_health_flags(d, docker_cli):
    r = docker_cli("run", "-d", "--health-cmd", "true", "--health-interval", "1ns", "busybox")
    assert r.returncode != 0 and "Interval" in r.stderr
    cid = _run(d, "skt12-nohc", "sleep 600", "--no-healthcheck")
    info = json.loads(ok(docker_cli("inspect", cid)).stdout)[0]
    assert "Health" not in info["State"] and info["Config"]["Healthcheck"]["Test"] == ["NONE"]
    ok(d.skiff("rm", "-f", cid))


def test_stats_no_stream_cpu(d, docker_cli):
    _run(d, "skt12-busy", "while :; do :; done")
    out = ok(docker_cli("stats", "--no-stream", "--format", "{{.CPUPerc}}", "skt12-busy")
             ).stdout.strip()
    assert out.endswith("%") and float(out[:-1]) > 5.0
    ok(d.skiff("rm", "-f", "skt12-busy"))


def test_dockerpy_archive_export_diff_commit(d):
    docker = pytest.importorskip("docker")
    cli = d.client()
    try:
        ct = cli.containers.run("busybox", ["sh", "-c", "echo x > /tmp/x; sleep 600"],
                                detach=True, name="skt12-py")
        until(lambda: ct.exec_run("test -e /tmp/x").exit_code == 0, what="/tmp/x")
        bits, st = ct.get_archive("/tmp/x")
        assert st["name"] == "x" and st["size"] == 2
        assert tarfile.open(fileobj=io.BytesIO(b"".join(bits))).extractfile("x").read() == b"x\n"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            ti = tarfile.TarInfo("py.txt")
            ti.size = 2
            t.addfile(ti, io.BytesIO(b"py"))
        assert ct.put_archive("/tmp", buf.getvalue()) is True
        assert {"Path": "/tmp/py.txt", "Kind": 1} in ct.diff()
        names = tarfile.open(fileobj=io.BytesIO(b"".join(ct.export()))).getnames()
        assert "tmp/py.txt" in names
        img = ct.commit("skt12/py", "t1", changes=["CMD cat /tmp/py.txt"])
        assert cli.containers.run("skt12/py:t1", remove=True) == b"py"
        with pytest.raises(docker.errors.NotFound):
            ct.get_archive("/does/not/exist")
        with pytest.raises(docker.errors.APIError) as e:
            ct.put_archive("/tmp/py.txt", buf.getvalue())
        assert e.value.status_code == 400
        layers_before = len(os.listdir(d.root / "overlay")) if (d.root / "overlay").exists() \
            else 0
        with pytest.raises(docker.errors.APIError) as e:
            cli.api.commit("skt12-py", repository="Bad Repo!")
        assert e.value.status_code == 400
        with pytest.raises(docker.errors.NotFound):
            cli.api.commit("skt12-nope", repository="skt12/x")
        after = len(os.listdir(d.root / "overlay")) if (d.root / "overlay").exists() else 0
        assert after == layers_before  # nothing half-made
        s = ct.stats(stream=False)
        assert s["precpu_stats"].get("system_cpu_usage")
        ct.remove(force=True)
        cli.images.remove(img.id)
    finally:
        cli.close()


def test_skiff_cp_diff_export_commit(d, tmp_path):
    _run(d, "skt12-sk", "echo s > /s.txt; touch /tmp/ready; sleep 600")
    _wait_file(d, "skt12-sk", "/tmp/ready")
    ok(d.skiff("cp", "skt12-sk:/s.txt", str(tmp_path / "s.txt")))
    assert (tmp_path / "s.txt").read_text() == "s\n"
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "u.txt").write_text("u")
    ok(d.skiff("cp", str(tmp_path / "up"), "skt12-sk:/tmp/up"))
    assert ok(d.skiff("exec", "skt12-sk", "cat", "/tmp/up/u.txt")).stdout == "u"
    assert "A /s.txt" in ok(d.skiff("diff", "skt12-sk")).stdout.splitlines()
    ok(d.skiff("export", "-o", str(tmp_path / "e.tar"), "skt12-sk"))
    assert "s.txt" in tarfile.open(tmp_path / "e.tar").getnames()
    iid = ok(d.skiff("commit", "skt12-sk", "skt12/sk:1")).stdout.strip()
    assert iid.startswith("sha256:")
    assert ok(d.skiff("run", "--rm", "skt12/sk:1", "cat", "/s.txt")).stdout == "s\n"
    ok(d.skiff("rm", "-f", "skt12-sk"))
    ok(d.skiff("rmi", "skt12/sk:1"))


def test_health_state_survives_a_daemon_restart(d):
    _run(d, "skt12-hcr", "sleep 600", "--health-cmd", "true", "--health-interval", "200ms")

    def health() -> dict:
        return json.loads(ok(d.skiff("inspect", "-f", "{{json .State.Health}}", "skt12-hcr")
                             ).stdout)

    until(lambda: health()["Status"] == "healthy", what="healthy")
    before = health()
    assert before["Status"] == "healthy"
    d.restart()
    after = health()
    assert after["Status"] == "healthy" and after["Log"][0]["Start"] >= before["Log"][0]["Start"]
    last = after["Log"][-1]["Start"]
    until(lambda: health()["Log"][-1]["Start"] > last, what="probing to resume")
    ok(d.skiff("rm", "-f", "skt12-hcr"))


@pytest.fixture(scope="module")
def dv(require_root, busybox_image):
    with Skiffd("skt14b", subnet="10.214.0.64/26", storage_driver="vfs") as dm:
        dm.load_busybox(busybox_image)
        yield dm


def test_vfs_diff_size_cp_commit(dv, tmp_path):
    _run(dv, "skt12-vfs", "echo v > /v.txt; rm /bin/vi; touch /tmp/ready; sleep 600")
    _wait_file(dv, "skt12-vfs", "/tmp/ready")
    diff = ok(dv.skiff("diff", "skt12-vfs")).stdout.splitlines()
    assert "A /v.txt" in diff and "D /bin/vi" in diff and "A /tmp/ready" in diff
    info = json.loads(ok(dv.skiff("inspect", "--size", "skt12-vfs")).stdout)[0]
    assert info["SizeRw"] == 2
    ok(dv.skiff("cp", "skt12-vfs:/v.txt", str(tmp_path / "v.txt")))
    assert (tmp_path / "v.txt").read_text() == "v\n"
    ok(dv.skiff("commit", "skt12-vfs", "skt12/vfs:1"))
    r = ok(dv.skiff("run", "--rm", "skt12/vfs:1", "sh", "-c", "cat /v.txt; ls /bin/vi || true"))
    assert r.stdout == "v\n"
    ok(dv.skiff("rm", "-f", "skt12-vfs"))


def test_health_timeout_and_image_healthcheck_from_commit(d):
    _run(d, "skt12-hto", "sleep 600", "--health-cmd", "sleep 30", "--health-interval", "200ms",
         "--health-timeout", "300ms", "--health-retries", "1")

    def health(name: str) -> dict:
        return json.loads(ok(d.skiff("inspect", "-f", "{{json .State.Health}}", name)).stdout)

    until(lambda: health("skt12-hto")["Status"] == "unhealthy", what="unhealthy by timeout")
    last = health("skt12-hto")["Log"][-1]
    assert last["ExitCode"] == -1 and "exceeded timeout" in last["Output"]
    n = len(health("skt12-hto")["Log"])
    until(lambda: len(health("skt12-hto")["Log"]) >= min(n + 2, 5), what="more probes")
    # timed-out probes are killed: at most the one in flight is left
    assert ok(d.skiff("top", "skt12-hto")).stdout.count("sleep 30") <= 1
    # a HEALTHCHECK committed into an image is what containers of that image run
    ok(d.skiff("commit", "-c", "HEALTHCHECK --interval=200ms CMD echo probe-out", "skt12-hto",
               "skt12/hc:1"))
    ok(d.skiff("rm", "-f", "skt12-hto"))
    cid = ok(d.skiff("run", "-d", "skt12/hc:1", "sleep", "600")).stdout.strip()
    until(lambda: health(cid)["Status"] == "healthy", what="healthy from the image's config")
    assert health(cid)["Log"][-1]["Output"] == "probe-out\n"
    ok(d.skiff("rm", "-f", cid))
    ok(d.skiff("rmi", "skt12/hc:1"))


def test_cp_archive_mode_owner_and_named_volume_when_stopped(d, docker_cli, tmp_path):
    cid = ok(docker_cli("create", "--name", "skt12-own", "--user", "1234:4321", "-v",
                        "skt12vol:/vol", "busybox", "sleep", "600")).stdout.strip()
    (tmp_path / "o.txt").write_text("o")
    ok(docker_cli("cp", "-a", str(tmp_path / "o.txt"), "skt12-own:/tmp/"))
    ok(docker_cli("cp", str(tmp_path / "o.txt"), "skt12-own:/tmp/plain.txt"))
    ok(docker_cli("cp", str(tmp_path / "o.txt"), "skt12-own:/vol/"))
    vol = json.loads(ok(docker_cli("volume", "inspect", "skt12vol")).stdout)[0]["Mountpoint"]
    assert (Path(vol) / "o.txt").read_text() == "o"  # the volume, not the rootfs under it
    ok(docker_cli("start", cid))
    out = ok(d.skiff("exec", cid, "stat", "-c", "%u:%g %n", "/tmp/o.txt", "/tmp/plain.txt"))
    assert out.stdout.split("\n")[:2] == ["1234:4321 /tmp/o.txt", "0:0 /tmp/plain.txt"]
    ok(d.skiff("rm", "-f", "-v", cid))
    d.skiff("volume", "rm", "skt12vol")


def test_user_lookup_reads_the_containers_passwd_never_the_hosts(d):
    """`exec -u NAME` resolves NAME in /etc/passwd as the container sees it: an absolute
    symlink there resolves inside the container, and a fifo there must not block the daemon."""
    name = "skt12-pw"
    _run(d, name, "echo 'skt14user:x:4321:4321::/:/bin/sh' > /tmp/pw; rm /etc/passwd; "
         "ln -s /tmp/pw /etc/passwd; mkfifo /tmp/fifo; touch /tmp/ready; sleep 600")
    try:
        _wait_file(d, name, "/tmp/ready")
        r = ok(d.skiff("exec", "-u", "skt14user", name, "id", "-u"))
        assert r.stdout.strip() == "4321"
        ok(d.skiff("exec", name, "ln", "-sf", "/tmp/fifo", "/etc/passwd"))
        r = d.skiff("exec", "-u", "skt14user", name, "id", "-u", timeout=60)
        assert r.returncode != 0 and "unable to find user skt14user" in r.stderr, r.stderr
    finally:
        d.skiff("rm", "-f", name)
