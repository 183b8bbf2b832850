"""skiff-runc and libcontainer against the real kernel (root), with the busybox bundle.

Every container lives under a private --root (/run/skt1-*) and cgroup /skt1/<id>; the
finalizers delete them (also on failure) and check nothing is left: state dirs, cgroups, pids.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from engine.libcontainer.defaults import default_spec

pytestmark = pytest.mark.root
CLI = [sys.executable, "-m", "engine.libcontainer.cli"]
DOCKER_DEFAULT_CAPEFF = "00000000a80425fb"


def cgroup_dirs(cid: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/skt1/{cid}") + glob.glob(f"/sys/fs/cgroup/skt1/{cid}")


@pytest.fixture(scope="module", autouse=True)
def _cgroup_parent():
    yield
    for d in glob.glob("/sys/fs/cgroup/*/skt1") + glob.glob("/sys/fs/cgroup/skt1"):
        try:
            os.rmdir(d)
        except OSError:
            pass


@pytest.fixture(scope="module")
def rootfs(busybox_image):
    """A private copy of the busybox rootfs: mount points that containers create stay out of
    the shared image cache, and the container's mapped root (userns) can traverse the path."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="skt1-rootfs-")
    os.chmod(d, 0o755)
    subprocess.run(["cp", "-a", str(busybox_image / "rootfs"), d], check=True)
    yield Path(d) / "rootfs"
    shutil.rmtree(d)


class Env:
    """A state root plus a helper to write bundles that reference the busybox rootfs."""

    def __init__(self, rootfs: Path, tmp: Path) -> None:
        self.rootfs, self.tmp = rootfs, tmp
        self.root = f"/run/skt1-{uuid.uuid4().hex[:8]}"
        self.ids: list[str] = []

    def new_id(self) -> str:
        cid = f"skt1-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def bundle(self, args: list[str], terminal: bool = False, **kw) -> tuple[str, str]:
        cid = self.new_id()
        cfg = default_spec()
        cfg["root"]["path"] = str(self.rootfs)
        cfg["process"]["args"] = args
        cfg["process"]["terminal"] = terminal
        cfg["linux"]["cgroupsPath"] = f"/skt1/{cid}"
        mutate = kw.pop("mutate", None)
        if mutate:
            mutate(cfg)
        b = self.tmp / cid
        b.mkdir()
        (b / "config.json").write_text(json.dumps(cfg))
        return cid, str(b)

    def cli(self, *args: str, check: bool = False, timeout: float = 30, **kw):
        """Output goes through files: a created container keeps its inherited stdio open."""
        import tempfile

        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([*CLI, "--root", self.root, *args], stdout=out, stderr=err,
                               stdin=subprocess.DEVNULL, text=True, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        if check and r.returncode:
            raise AssertionError(f"{args} failed ({r.returncode}): {r.stderr}")
        return r

    def run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        cid, b = self.bundle(args, **kw)
        return self.cli("run", "-b", b, cid)

    def cleanup(self) -> None:
        for cid in self.ids:
            if os.path.isdir(os.path.join(self.root, cid)):
                self.cli("delete", "--force", cid)
        leftovers = [c for c in self.ids if cgroup_dirs(c)]
        state = os.listdir(self.root) if os.path.isdir(self.root) else []
        subprocess.run(["rm", "-rf", self.root], check=False)
        assert not leftovers, f"cgroups left: {leftovers}"
        assert not state, f"state left: {state}"


@pytest.fixture
def env(rootfs, tmp_path):
    e = Env(rootfs, tmp_path)
    yield e
    e.cleanup()


def assert_nothing_left(env: Env, cid: str) -> None:
    assert not os.path.exists(os.path.join(env.root, cid)), "state dir left"
    assert not cgroup_dirs(cid), "cgroup left"
    assert cid not in open("/proc/self/mountinfo").read()


# --------------------------------------------------------------------------- basics

def test_pid1_hostname_exit_code(env):
    r = env.run(["sh", "-c", "echo pid=$$; hostname; exit 7"])
    assert r.returncode == 7, r.stderr
    assert r.stdout.split() == ["pid=1", "skiff"]


def test_mounts_devices_and_masked_paths(env):
    script = ("cat /proc/mounts; ls /dev; echo keys=$(wc -c < /proc/keys);"
              "ls /sys/firmware | wc -l; touch /x 2>/dev/null || echo rofs;"
              "echo hi > /proc/sys/kernel/hostname 2>/dev/null || echo roproc;"
              "readlink /dev/ptmx; readlink /dev/fd")
    r = env.run(["sh", "-c", script])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "proc /proc proc" in out
    assert "tmpfs /dev tmpfs rw,nosuid" in out
    assert "devpts /dev/pts devpts" in out and "mqueue /dev/mqueue" in out
    assert "sysfs /sys sysfs ro," in out
    assert "/sys/fs/cgroup/memory cgroup ro" in out or "cgroup2 /sys/fs/cgroup" in out
    for d in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "stdin"):
        assert f"\n{d}\n" in out
    assert "keys=0" in out
    assert "rofs" in out and "roproc" in out
    assert "pts/ptmx\n/proc/self/fd" in out


def test_bind_mount_options(env, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("content")

    def mutate(c):
        c["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                            "options": ["rbind", "ro", "nosuid"]})
        c["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                            "options": ["size=1m"]})

    r = env.run(["sh", "-c", "cat /data/f; echo; touch /data/g || echo ro; touch /scratch/ok && "
                 "echo rw"], mutate=mutate)
    assert r.stdout.split() == ["content", "ro", "rw"], r.stderr
    assert not (src / "g").exists()


def test_capabilities_nnp_and_seccomp_status(env):
    r = env.run(["grep", "-E", "^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):",
                 "/proc/self/status"])
    st = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert st["CapEff"] == DOCKER_DEFAULT_CAPEFF
    assert st["CapBnd"] == DOCKER_DEFAULT_CAPEFF
    assert st["CapAmb"] == "0000000000000000"
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2"


def test_user_and_groups(env):
    def mutate(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [1002, 1003]}
        c["process"]["capabilities"] = {"bounding": ["CAP_KILL"], "ambient": []}

    r = env.run(["sh", "-c", "id -u; id -g; id -G; grep CapEff /proc/self/status"],
                mutate=mutate)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["1000", "1001"]
    assert set(r.stdout.split()[2:5]) == {"1001", "1002", "1003"}
    assert r.stdout.strip().endswith("0000000000000000")


def test_seccomp_blocks_unshare_by_default(env):
    r = env.run(["busybox", "unshare", "-U", "true"])
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr + r.stdout

    def unconfined(c):
        c["annotations"] = {"org.skiff.seccomp": "unconfined"}

    r = env.run(["busybox", "unshare", "-U", "true"], mutate=unconfined)
    assert r.returncode == 0, r.stderr


def test_explicit_seccomp_profile(env):
    def mutate(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
        c["mounts"].append({"destination": "/w", "type": "tmpfs", "source": "tmpfs"})

    r = env.run(["sh", "-c", "mkdir /w/d"], mutate=mutate)
    assert r.returncode != 0
    assert "Permission denied" in r.stderr


def test_rlimits_env_cwd(env):
    def mutate(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]
        c["process"]["env"].append("FOO=bar baz")
        c["process"]["cwd"] = "/etc"

    r = env.run(["sh", "-c", "ulimit -n; ulimit -Hn; echo $FOO; pwd"], mutate=mutate)
    assert r.stdout.splitlines() == ["321", "654", "bar baz", "/etc"], r.stderr


def test_user_namespace_mapping(env):
    def mutate(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]

    cid, b = env.bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; sleep 30"], mutate=mutate)
    p = subprocess.Popen([*CLI, "--root", env.root, "run", "-b", b, cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline().strip()
        second = p.stdout.readline().split()
        assert first == "0", p.stderr.read() if not first else first
        assert second == ["0", "200000", "65536"]
        st = json.loads(env.cli("state", cid, check=True).stdout)
        with open(f"/proc/{st['pid']}/status") as f:
            uid_line = next(line for line in f if line.startswith("Uid:"))
        assert uid_line.split()[1] == "200000"
    finally:
        env.cli("kill", cid, "KILL")
        p.wait(timeout=10)
    assert p.returncode == 137
    assert_nothing_left(env, cid)


def test_killed_by_signal_exit_code_and_forwarding(env):
    cid, b = env.bundle(["sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1;"
                         " done"])
    p = subprocess.Popen([*CLI, "--root", env.root, "run", "-b", b, cid],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)  # forwarded to the container's init, which traps it
    assert p.wait(timeout=10) == 42
    cid, b = env.bundle(["sleep", "60"])
    p = subprocess.Popen([*CLI, "--root", env.root, "run", "-b", b, cid])
    _wait_status(env, cid, "running")
    env.cli("kill", cid, "9", check=True)
    assert p.wait(timeout=10) == 137
    assert_nothing_left(env, cid)


def _wait_status(env: Env, cid: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    st: dict = {}
    while time.monotonic() < deadline:
        r = env.cli("state", cid)
        if r.returncode == 0:
            st = json.loads(r.stdout)
            if st["status"] == status:
                return st
        time.sleep(0.05)
    raise AssertionError(f"{cid} never became {status}: {st}")


# --------------------------------------------------------------------------- lifecycle

def test_create_start_state_kill_delete(env, tmp_path):
    cid, b = env.bundle(["sleep", "60"])
    pidfile = tmp_path / "pid"
    r = env.cli("create", "--bundle", b, "--pid-file", str(pidfile), cid)
    assert r.returncode == 0, r.stderr
    st = json.loads(env.cli("state", cid, check=True).stdout)
    assert st["status"] == "created" and st["id"] == cid and st["bundle"] == b
    assert st["ociVersion"].startswith("1.")
    assert int(pidfile.read_text()) == st["pid"]
    comm = Path(f"/proc/{st['pid']}/comm").read_text().strip()
    assert comm != "sleep"  # still our init, waiting on the exec fifo
    assert cgroup_dirs(cid)
    env.cli("start", cid, check=True)
    st = _wait_status(env, cid, "running")
    assert Path(f"/proc/{st['pid']}/comm").read_text().strip() == "sleep"
    listed = json.loads(env.cli("list", "--format", "json", check=True).stdout)
    assert [i["id"] for i in listed] == [cid]
    assert env.cli("start", cid).returncode == 1
    r = env.cli("delete", cid)
    assert r.returncode == 1 and "not stopped" in r.stderr
    env.cli("kill", cid, "KILL", check=True)
    _wait_status(env, cid, "stopped")
    assert env.cli("kill", cid).returncode == 1
    env.cli("delete", cid, check=True)
    assert env.cli("state", cid).returncode == 1
    assert_nothing_left(env, cid)


def test_delete_created_and_force_running(env):
    cid, b = env.bundle(["sleep", "60"])
    env.cli("create", "-b", b, cid, check=True)
    env.cli("delete", cid, check=True)
    assert_nothing_left(env, cid)
    cid, b = env.bundle(["sleep", "60"])
    env.cli("run", "-d", "-b", b, cid, check=True)
    pid = json.loads(env.cli("state", cid, check=True).stdout)["pid"]
    env.cli("delete", "--force", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}/stat") or "Z" in open(f"/proc/{pid}/stat").read()
    assert_nothing_left(env, cid)


def test_pid_reuse_is_detected(env):
    cid, b = env.bundle(["sleep", "60"])
    env.cli("run", "-d", "-b", b, cid, check=True)
    path = Path(env.root) / cid / "state.json"
    st = json.loads(path.read_text())
    st["init_start"] -= 1  # as if the pid now belonged to another process
    path.write_text(json.dumps(st))
    assert json.loads(env.cli("state", cid, check=True).stdout)["status"] == "stopped"
    st["init_start"] += 1
    path.write_text(json.dumps(st))
    env.cli("delete", "-f", cid, check=True)


def test_exec_joins_container(env):
    cid, b = env.bundle(["sleep", "60"])
    env.cli("run", "-d", "-b", b, cid, check=True)
    r = env.cli("exec", cid, "sh", "-c", "hostname; ps -o pid,comm | grep sleep; "
                "grep CapEff /proc/self/status; exit 5")
    assert r.returncode == 5, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "skiff"
    assert lines[1].split() == ["1", "sleep"]
    assert lines[2].split()[1] == DOCKER_DEFAULT_CAPEFF
    proc = {"args": ["sh", "-c", "id -u; pwd"], "cwd": "/tmp", "env": ["PATH=/bin"],
            "user": {"uid": 33, "gid": 33}}
    pf = Path(b) / "proc.json"
    pf.write_text(json.dumps(proc))
    r = env.cli("exec", "-p", str(pf), cid)
    assert r.stdout.split() == ["33", "/tmp"], r.stderr
    r = env.cli("exec", cid, "nosuchcmd")
    assert r.returncode == 1
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in r.stderr
    env.cli("delete", "-f", cid, check=True)


def test_pause_resume(env):
    cid, b = env.bundle(["sleep", "60"])
    env.cli("run", "-d", "-b", b, cid, check=True)
    env.cli("pause", cid, check=True)
    assert json.loads(env.cli("state", cid).stdout)["status"] == "paused"
    env.cli("resume", cid, check=True)
    assert json.loads(env.cli("state", cid).stdout)["status"] == "running"
    pids = json.loads(env.cli("ps", "--format", "json", cid, check=True).stdout)
    assert len(pids) == 1
    env.cli("delete", "-f", cid, check=True)


def test_spec_command(tmp_path):
    r = subprocess.run([*CLI, "spec", "-b", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0
    assert json.loads((tmp_path / "config.json").read_text()) == default_spec()
    r = subprocess.run([*CLI, "spec", "-b", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "exists" in r.stderr


# --------------------------------------------------------------------------- console

def test_console_socket(env, tmp_path):
    cid, b = env.bundle(["sh", "-c", "tty; echo hello-tty"], terminal=True)
    sock_path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    try:
        r = env.cli("create", "-b", b, "--console-socket", sock_path, cid)
        assert r.returncode == 0, r.stderr
        conn, _ = srv.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        conn.close()
        assert len(fds) == 1
        master = fds[0]
        env.cli("start", cid, check=True)
        out = b""
        deadline = time.monotonic() + 10
        while b"hello-tty" not in out and time.monotonic() < deadline:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
        os.close(master)
        assert b"/dev/pts/0" in out and b"hello-tty\r\n" in out
    finally:
        srv.close()
    _wait_status(env, cid, "stopped")
    env.cli("delete", cid, check=True)


def test_run_terminal_proxies_to_stdio(env):
    r = env.run(["sh", "-c", "test -t 0 && echo is-a-tty; exit 3"], terminal=True)
    assert r.returncode == 3, r.stderr
    assert "is-a-tty" in r.stdout


# --------------------------------------------------------------------------- cgroups

def _cg(cid: str, ctrl: str, f: str) -> str:
    path = f"/sys/fs/cgroup/{ctrl}/skt1/{cid}/{f}"
    return open(path).read().strip()


def test_resources_written_and_read_back(env):
    def mutate(c):
        c["linux"]["resources"].update({
            "memory": {"limit": 10000001}, "cpu": {"quota": 50000, "period": 100000},
            "pids": {"limit": 20}})

    cid, b = env.bundle(["sleep", "60"], mutate=mutate)
    env.cli("run", "-d", "-b", b, cid, check=True)
    try:
        if os.path.isdir("/sys/fs/cgroup/memory"):
            assert _cg(cid, "memory", "memory.limit_in_bytes") == "9998336"
            assert _cg(cid, "cpu", "cpu.cfs_quota_us") == "50000"
            assert _cg(cid, "pids", "pids.max") == "20"
        else:
            assert open(f"/sys/fs/cgroup/skt1/{cid}/cpu.max").read().split() == [
                "50000", "100000"]
    finally:
        env.cli("delete", "-f", cid, check=True)
    assert_nothing_left(env, cid)


def test_pids_limit_enforced(env):
    def mutate(c):
        c["linux"]["resources"]["pids"] = {"limit": 4}

    r = env.run(["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 2 & done; wait; echo done"],
                mutate=mutate)
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr


def test_memory_oom_kill_reported(env):
    from engine.libcontainer.container import Container

    cfg = default_spec()
    cid = env.new_id()
    cfg["root"]["path"] = str(env.rootfs)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"]
    cfg["linux"]["cgroupsPath"] = f"/skt1/{cid}"
    cfg["linux"]["resources"]["memory"] = {"limit": 16 * 1024 * 1024,
                                           "swap": 16 * 1024 * 1024}
    # run it in a child process that is the container's subreaper, as a daemon monitor would
    code = _in_subprocess(env.root, cid, str(env.tmp), cfg)
    assert code == {"exit": 137, "oom": True}
    assert_nothing_left(env, cid)
    assert Container  # imported for the library path used by _in_subprocess


def _in_subprocess(root: str, cid: str, bundle: str, cfg: dict) -> dict:
    prog = (
        "import json, sys\n"
        "from engine.libcontainer.container import Container\n"
        "root, cid, bundle, cfg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])\n"
        "c = Container.create(root, cid, bundle, cfg, subreaper=True,\n"
        "                     stdio=(0, 2, 2))\n"
        "c.start()\n"
        "code = c.wait()\n"
        "oom = c.oom_killed()\n"
        "c.destroy()\n"
        "print(json.dumps({'exit': code, 'oom': oom}))\n")
    r = subprocess.run([sys.executable, "-c", prog, root, cid, bundle, json.dumps(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_library_create_load_wait(env):
    cfg = default_spec()
    cid = env.new_id()
    cfg["root"]["path"] = str(env.rootfs)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "exit 9"]
    cfg["linux"]["cgroupsPath"] = f"/skt1/{cid}"
    assert _in_subprocess(env.root, cid, str(env.tmp), copy.deepcopy(cfg)) == {
        "exit": 9, "oom": False}


# --------------------------------------------------------------------------- failures

@pytest.mark.parametrize("case", ["missing-binary", "bad-mount", "bad-cwd", "bad-sysctl-value",
                                  "bad-ns-path"])
def test_failures_leave_nothing(env, case, tmp_path):
    args = ["true"]
    mutate = None
    want = ""
    if case == "missing-binary":
        args = ["nosuchbinary"]
        want = 'exec: "nosuchbinary": executable file not found in $PATH'
    elif case == "bad-mount":
        def mutate(c):
            c["mounts"].append({"destination": "/x", "type": "nosuchfs", "source": "none"})
        want = "mount("
    elif case == "bad-cwd":
        def mutate(c):
            c["process"]["cwd"] = "/does/not/exist"
        want = "cwd"
    elif case == "bad-sysctl-value":
        def mutate(c):
            c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "notanumber"}
        want = "Invalid argument"
    elif case == "bad-ns-path":
        bogus = tmp_path / "notans"
        bogus.write_text("")

        def mutate(c):
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"]
                                        if n["type"] != "network"]
            c["linux"]["namespaces"].append({"type": "network", "path": str(bogus)})
        want = "network namespace"
    cid, b = env.bundle(args, mutate=mutate)
    for cmd in ("create", "run"):
        r = env.cli(cmd, "-b", b, cid)
        assert r.returncode == 1
        assert want in r.stderr, r.stderr
        assert_nothing_left(env, cid)


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c["linux"]["resources"].update(memory={"limit": 100}), "memory"),
    (lambda c: c["linux"]["resources"].update(cpu={"quota": 10, "period": 100000}), "cpu"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces"),
    (lambda c: c["root"].update(path="/nonexistent-skt1"), "root.path"),
])
def test_invalid_config_fails_before_creating(env, mutate, field):
    cid, b = env.bundle(["true"], mutate=mutate)
    r = env.cli("create", "-b", b, cid)
    assert r.returncode == 1
    assert field in r.stderr, r.stderr
    assert_nothing_left(env, cid)


def test_duplicate_id(env):
    cid, b = env.bundle(["sleep", "60"])
    env.cli("create", "-b", b, cid, check=True)
    r = env.cli("create", "-b", b, cid)
    assert r.returncode == 1 and "already exists" in r.stderr
    env.cli("delete", cid, check=True)


def test_hooks_get_state_on_stdin(env, tmp_path):
    out = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$1 $(cat)\" >> {out}\n")
    hook.chmod(0o755)

    def mutate(c):
        c["hooks"] = {n: [{"path": str(hook), "args": ["hook.sh", n]}]
                      for n in ("prestart", "createRuntime", "poststart", "poststop")}

    r = env.run(["true"], mutate=mutate)
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["prestart", "createRuntime", "poststart",
                                               "poststop"]
    st = json.loads(lines[0].split(" ", 1)[1])
    assert st["status"] == "created" and st["pid"] > 0


def test_in_container_hooks_run_where_the_runtime_spec_says(env, tmp_path):
    """createContainer: in the container's mount namespace with its mounts in place, before
    pivot_root (a host path); startContainer: inside the container after `start`, just before
    the user process (a path in the container), with the container's own pid."""
    log = tmp_path / "create.log"
    host_hook = tmp_path / "create.sh"
    host_hook.write_text(f"#!/bin/sh\n{{ echo \"$(cat)\"; grep -c ' {env.rootfs}/proc ' "
                         f"/proc/self/mountinfo; }} >> {log}\n")
    host_hook.chmod(0o755)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "start.sh").write_text("#!/bin/sh\necho \"$(cat)\" > /hooks/start.log\n")
    (shared / "start.sh").chmod(0o755)

    def mutate(c):
        c["mounts"].append({"destination": "/hooks", "type": "bind", "source": str(shared),
                            "options": ["rbind", "rw"]})
        c["hooks"] = {"createContainer": [{"path": str(host_hook)}],
                      "startContainer": [{"path": "/hooks/start.sh"}]}

    r = env.run(["sh", "-c", "cat /hooks/start.log"], mutate=mutate)
    assert r.returncode == 0, r.stderr
    create_state, proc_mounts = log.read_text().splitlines()
    st = json.loads(create_state)
    assert st["status"] == "creating" and st["pid"] == 1 and st["id"] and st["bundle"]
    assert int(proc_mounts) >= 1  # the container's /proc was already mounted in its rootfs
    st = json.loads(r.stdout)  # the user process printed what startContainer was given
    assert st["status"] == "created" and st["pid"] == 1


@pytest.mark.parametrize("name", ["createContainer", "startContainer"])
def test_failing_in_container_hook_stops_the_container(env, name):
    def mutate(c):
        c["hooks"] = {name: [{"path": "/bin/false"}]}

    cid, b = env.bundle(["true"], mutate=mutate)
    r = env.cli("run", "-b", b, cid)
    assert r.returncode != 0 and f"{name} hook #0 (/bin/false) failed" in r.stderr, r.stderr
    assert_nothing_left(env, cid)


def test_failing_prestart_hook_leaves_nothing(env):
    def mutate(c):
        c["hooks"] = {"prestart": [{"path": "/bin/false"}]}

    cid, b = env.bundle(["true"], mutate=mutate)
    r = env.cli("run", "-b", b, cid)
    assert r.returncode == 1 and "prestart hook #0" in r.stderr
    assert_nothing_left(env, cid)


def test_detached_tty_needs_console_socket(env):
    cid, b = env.bundle(["true"], terminal=True)
    r = env.cli("run", "-d", "-b", b, cid)
    assert r.returncode == 1 and "console socket" in r.stderr
    assert_nothing_left(env, cid)


def test_join_namespaces_by_path(env):
    cid_a, b_a = env.bundle(["sleep", "60"])
    env.cli("run", "-d", "-b", b_a, cid_a, check=True)
    pid_a = json.loads(env.cli("state", cid_a, check=True).stdout)["pid"]

    def mutate(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"]
                                    if n["type"] not in ("network", "uts")]
        c["linux"]["namespaces"] += [{"type": "network", "path": f"/proc/{pid_a}/ns/net"},
                                     {"type": "uts", "path": f"/proc/{pid_a}/ns/uts"}]
        del c["hostname"]

    r = env.run(["sh", "-c", "readlink /proc/self/ns/net; hostname"], mutate=mutate)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [os.readlink(f"/proc/{pid_a}/ns/net"), "skiff"]
    env.cli("delete", "-f", cid_a, check=True)


def test_update_resources(env, tmp_path):
    cid, b = env.bundle(["sleep", "60"])
    env.cli("run", "-d", "-b", b, cid, check=True)
    try:
        env.cli("update", "--pids-limit", "33", "--cpu-quota", "20000", "--cpu-period",
                "100000", cid, check=True)
        rf = tmp_path / "res.json"
        rf.write_text(json.dumps({"memory": {"limit": 64 * 1024 * 1024}}))
        env.cli("update", "-r", str(rf), cid, check=True)
        r = env.cli("update", "--cpu-quota", "10", cid)
        assert r.returncode == 1 and "cpu" in r.stderr
        if os.path.isdir("/sys/fs/cgroup/pids"):
            assert _cg(cid, "pids", "pids.max") == "33"
            assert _cg(cid, "cpu", "cpu.cfs_quota_us") == "20000"
            assert _cg(cid, "memory", "memory.limit_in_bytes") == str(64 * 1024 * 1024)
        else:
            base = f"/sys/fs/cgroup/skt1/{cid}"
            assert open(f"{base}/pids.max").read().strip() == "33"
            assert open(f"{base}/memory.max").read().strip() == str(64 * 1024 * 1024)
    finally:
        env.cli("delete", "-f", cid, check=True)


def test_zygote_runs_commands(env, tmp_path):
    sock = f"/run/skt1-zyg-{uuid.uuid4().hex[:6]}.sock"
    z = subprocess.Popen([sys.executable, "-m", "engine.libcontainer.zygote", sock, "--idle",
                          "60"])
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        cid, b = env.bundle(["sh", "-c", "echo pid=$$; echo oops >&2; exit 4"])
        r = env.cli("run", "-b", b, cid, env={**os.environ, "SKIFF_RUNC_ZYGOTE": sock})
        assert r.returncode == 4, r.stderr
        assert r.stdout == "pid=1\n" and r.stderr == "oops\n"
        r = env.cli("state", "nope", env={**os.environ, "SKIFF_RUNC_ZYGOTE": sock})
        assert r.returncode == 1 and "does not exist" in r.stderr
        assert_nothing_left(env, cid)
    finally:
        z.terminate()
        z.wait(timeout=10)
    assert not os.path.exists(sock)
