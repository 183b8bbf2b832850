"""`tox -e system`: the engine tested against a fresh kernel in a disposable VM.

The molecule-like sequence, per kernel of the matrix (v2 = Debian 12's default, pure cgroup v2;
v1 = the same box booted with systemd.unified_cgroup_hierarchy=0):

    host      scripts/bootstrap-vm (host packages), virtlogd/libvirtd, our storage pool
    sweep     destroy leftovers of earlier runs (our prefix only)
    box       build or reuse the cached box (vm/build-box)
    up        vagrant up (libvirt; KVM or TCG), repo rsynced to /srv/skiff
    provision ansible-playbook provision/site.yml over the VM's SSH
    idempotence  the same again: must report changed=0
    verify    testinfra checks of the provisioned VM (vm/verify)
    suites    tests/system and tests/property run INSIDE the VM as root (--target local)
    collect   JUnit XML, Hypothesis statistics, skiffd/registry journals, serial console log
    destroy   vagrant destroy, sweep, stop the daemons this run started

Results land in results/<run>/<kernel>/ and results/<run>/summary.md. Nothing is left behind
(VM, domain, volume, pool, forwarded port), also on Ctrl-C, SIGTERM or a failing step, unless
--keep. `--tests-only` reruns rsync + suites + collect on a VM kept by an earlier --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import box as boxmod
from . import hostutil, wheels
from . import libvirt as lv

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PREFIX = os.environ.get("SKIFF_VM_PREFIX", "skt6-")
POOL = os.environ.get("SKIFF_VM_POOL", "skt6-pool")
RUN_ROOT = Path(os.environ.get("SKIFF_VM_RUN_DIR", "/var/tmp/skt6-run"))
POOL_PATH = Path(os.environ.get("SKIFF_VM_POOL_PATH", "/var/tmp/skt6-pool"))
MACHINES = ("v2", "v1")
GUEST_RESULTS = "/var/tmp/skiff-results"
# the same list as the synced folder's rsync__exclude in vm/Vagrantfile
RSYNC_EXCLUDES = (".vagrant/", ".git/", ".tox/", ".venv/", "results/", "__pycache__/",
                  "*.egg-info/", ".mypy_cache/", ".ruff_cache/", ".pytest_cache/", ".hypothesis/",
                  "build/", "dist/")


class StepFailed(Exception):
    pass


@dataclass
class Step:
    kernel: str
    name: str
    seconds: float = 0.0
    status: str = "running"
    detail: str = ""


@dataclass
class Run:
    """One harness invocation: its steps, log directory and the state we must undo."""

    run_id: str
    results: Path
    steps: list[Step] = field(default_factory=list)
    daemons_started: list[int] = field(default_factory=list)
    kvm_restore: tuple[int, int] | None = None
    children: set[subprocess.Popen] = field(default_factory=set)

    @contextlib.contextmanager
    def step(self, kernel: str, name: str) -> Iterator[Step]:
        s = Step(kernel, name)
        self.steps.append(s)
        say(f"[{kernel}] {name} ...")
        t0 = time.monotonic()
        try:
            yield s
            s.status = "ok"
        except KeyboardInterrupt:
            s.status = "interrupted"
            raise
        except Exception as e:  # noqa: BLE001 - reported, then re-raised
            s.status = "FAILED"
            s.detail = s.detail or str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise
        finally:
            s.seconds = time.monotonic() - t0
            say(f"[{kernel}] {name}: {s.status} in {s.seconds:.1f} s"
                + (f" ({s.detail})" if s.detail else ""))

    def sh(self, cmd: list[str], *, log: Path | None = None, env: dict[str, str] | None = None,
           check: bool = True, echo: bool = False, cwd: Path | None = None,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command in its own session (Ctrl-C reaches us, not it: we tear down in order).

        Output goes to `log` (appended) and is returned; with echo it is also streamed.
        """
        full_env = dict(os.environ, **(env or {}))
        out_lines: list[str] = []
        logf = open(log, "a") if log else None  # noqa: SIM115 - closed below
        try:
            if logf:
                logf.write(f"$ {shlex.join(cmd)}\n")
                logf.flush()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                 text=True, env=full_env, cwd=cwd, start_new_session=True)
            self.children.add(p)
            if input is not None and p.stdin:
                p.stdin.write(input)
                p.stdin.close()
            assert p.stdout is not None
            for line in p.stdout:
                out_lines.append(line)
                if logf:
                    logf.write(time.strftime("%H:%M:%S ") + line)
                    logf.flush()
                if echo:
                    sys.stdout.write("    " + line)
                    sys.stdout.flush()
            rc = p.wait()
        finally:
            if logf:
                logf.close()
        self.children.discard(p)
        out = "".join(out_lines)
        if check and rc != 0:
            tail = "\n".join(out.splitlines()[-15:])
            raise StepFailed(f"{cmd[0]} {' '.join(cmd[1:3])} exited {rc}\n{tail}")
        return subprocess.CompletedProcess(cmd, rc, out, "")

    def kill_children(self) -> None:
        for p in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in list(self.children):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)


def say(msg: str) -> None:
    print(f"{dt.datetime.now().strftime('%H:%M:%S')} {msg}", flush=True)


def vagrant_env(box: boxmod.Box | None, accel: str, cpus: int, memory: int) -> dict[str, str]:
    env = {
        "VAGRANT_CWD": str(HERE),
        "VAGRANT_DOTFILE_PATH": str(RUN_ROOT / "vagrant"),
        "VAGRANT_DEFAULT_PROVIDER": os.environ.get("VAGRANT_DEFAULT_PROVIDER", "libvirt"),
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_PARALLEL": "1",
        "SKIFF_VM_STATE": str(RUN_ROOT / "state"),
        "SKIFF_VM_PREFIX": PREFIX,
        "SKIFF_VM_POOL": POOL,
        "SKIFF_VM_MACHINES": ",".join(MACHINES),
        "SKIFF_VM_ACCEL": accel,
        "SKIFF_VM_CPUS": str(cpus),
        "SKIFF_VM_MEMORY": str(memory),
        "LIBVIRT_DEFAULT_URI": lv.URI,
    }
    if box:
        env.update(box.env())
    else:
        # Vagrant reads the Vagrantfile for every command; destroy needs a box name only
        saved = RUN_ROOT / "state" / "box-env.json"
        if saved.exists():
            env.update(json.loads(saved.read_text()))
    return env


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run = Run(run_id, Path(args.results).resolve() / run_id)
        self.run.results.mkdir(parents=True, exist_ok=True)
        self.box: boxmod.Box | None = None
        self.wheels: Path | None = None
        cpuinfo = Path("/proc/cpuinfo").read_text()
        self.accel = hostutil.choose_accel(
            cpuinfo, os.environ.get("SKIFF_VM_ACCEL"), os.access("/dev/kvm", os.R_OK | os.W_OK)
        )
        self.kernels = list(MACHINES) if args.kernel == "all" else [args.kernel]
        # The property suites' Hypothesis profile: `ci` with KVM; under emulation (TCG, ~4x
        # slower) the smaller `vm` profile keeps a run of both kernels within CI's time.
        self.profile = args.hypothesis_profile or ("ci" if self.accel == "kvm" else "vm")
        self.ok = True

    # -- helpers -------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = vagrant_env(self.box, self.accel, self.a.cpus, self.a.memory)
        if self.wheels:
            env["SKIFF_VM_WHEELS"] = str(wheels.CURRENT)
        return env

    def vagrant(self, *args: str, log: Path | None = None, check: bool = True, echo: bool = False):
        return self.run.sh(["vagrant", *args], env=self.env(), log=log, check=check, echo=echo)

    def kdir(self, kernel: str) -> Path:
        d = self.run.results / kernel
        d.mkdir(parents=True, exist_ok=True)
        return d

    def ssh_config(self, kernel: str) -> Path:
        out = self.vagrant("ssh-config", kernel).stdout
        path = RUN_ROOT / "state" / f"{kernel}.ssh-config"
        # one multiplexed connection for every ssh user (testinfra runs one ssh per check:
        # 74 s for the verify step without, a few seconds with)
        out = out.rstrip("\n") + (f"\n  ControlMaster auto\n  ControlPath {RUN_ROOT}/cm-%C\n"
                                   "  ControlPersist 60s\n")
        path.write_text(out)
        return path

    def ssh_close(self, kernel: str) -> None:
        cfg = RUN_ROOT / "state" / f"{kernel}.ssh-config"
        if cfg.exists():
            subprocess.run(["ssh", "-F", str(cfg), "-O", "exit", kernel], capture_output=True,
                           timeout=30, check=False)

    def ssh(self, kernel: str, command: str, **kw) -> subprocess.CompletedProcess[str]:
        cfg = RUN_ROOT / "state" / f"{kernel}.ssh-config"
        return self.run.sh(["ssh", "-F", str(cfg), "-o", "LogLevel=ERROR", kernel, command], **kw)

    def ansible(self, kernel: str, log: Path) -> dict[str, int]:
        cfg = RUN_ROOT / "state" / f"{kernel}.ssh-config"
        entry = hostutil.parse_ssh_config(cfg.read_text())[kernel]
        inv = RUN_ROOT / "state" / f"{kernel}.inventory.ini"
        inv.write_text(hostutil.ansible_inventory(kernel, entry))
        bindir = Path(sys.executable).parent
        playbook = bindir / "ansible-playbook"
        cmd = [str(playbook) if playbook.exists() else "ansible-playbook", "-i", str(inv),
               str(REPO / "provision" / "site.yml"),
               "-e", "skiff_pip_args='--no-index --find-links /srv/wheels'"]
        docker = shutil.which("docker")
        if hostutil.static_executable(docker):  # the same CLI as the local compatibility tests
            cmd += ["-e", f"skiff_docker_cli={os.path.realpath(str(docker))}"]
        env = {"ANSIBLE_CONFIG": str(REPO / "provision" / "ansible.cfg"),
               "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(RUN_ROOT / "ansible-tmp"),
               "ANSIBLE_HOME": str(RUN_ROOT / "ansible-home")}
        r = self.run.sh(cmd, env=env, log=log, check=False)
        recap = hostutil.parse_recap(r.stdout).get(kernel, {})
        if r.returncode != 0 or recap.get("failed", 0) or recap.get("unreachable", 0):
            tail = "\n".join(r.stdout.splitlines()[-25:])
            raise StepFailed(f"ansible-playbook failed (see {log})\n{tail}")
        return recap

    # -- the sequence --------------------------------------------------------------------
    def prepare_host(self) -> None:
        with self.run.step("host", "host packages + libvirt"):
            if not self.a.no_bootstrap:
                self.run.sh(["bash", str(REPO / "scripts" / "bootstrap-vm")],
                            log=self.run.results / "host.log")
            # what an earlier --keep run changed on the host is ours to undo at the end
            host_state = RUN_ROOT / "state" / "host.json"
            earlier = json.loads(host_state.read_text()) if host_state.exists() else {}
            kvm = lv.fix_kvm_access(log=say)
            self.run.kvm_restore = kvm or (tuple(earlier["kvm"]) if earlier.get("kvm") else None)
            self.run.daemons_started = earlier.get("daemons", []) + lv.ensure_daemons(log=say)
            host_state.parent.mkdir(parents=True, exist_ok=True)
            host_state.write_text(json.dumps({"daemons": self.run.daemons_started,
                                              "kvm": self.run.kvm_restore}))
            lv.ensure_pool(POOL, POOL_PATH)
            (RUN_ROOT / "state").mkdir(parents=True, exist_ok=True)

    def sweep(self, label: str, *, drop_pool: bool) -> None:
        with self.run.step("host", label) as s:
            log = self.run.results / "destroy.log"
            if (RUN_ROOT / "vagrant").exists():
                self.vagrant("destroy", "-f", log=log, check=False)
            gone = lv.sweep(PREFIX, POOL, POOL_PATH, drop_pool=drop_pool, log=say)
            ports_file = RUN_ROOT / "state" / "ports.json"
            if ports_file.exists():
                ports = json.loads(ports_file.read_text())
                busy = [p for p in ports.values() if not hostutil.port_is_free(int(p))]
                if busy:
                    raise StepFailed(f"forwarded ports still listening: {busy}")
                ports_file.unlink()
            for f in (RUN_ROOT / "state").glob("*.ssh-config"):
                f.unlink()
            s.detail = ", ".join(gone) if gone else "nothing left"

    def build_box(self) -> None:
        with self.run.step("host", "box (build or reuse)") as s:
            self.box, built = boxmod.ensure(log=say)
            s.detail = f"{self.box.name} {'built' if built else 'cached'}"
        with self.run.step("host", "wheelhouse (build or reuse)") as s:
            self.wheels, built = wheels.ensure(REPO, log=say)
            s.detail = f"{self.wheels.name} {'built' if built else 'cached'}"
        saved = dict(self.box.env(), SKIFF_VM_WHEELS=str(wheels.CURRENT))
        (RUN_ROOT / "state" / "box-env.json").write_text(json.dumps(saved))

    def up(self, k: str) -> None:
        with self.run.step(k, "up (boot to SSH, rsync)") as s:
            hostutil.assign_ports(RUN_ROOT / "state" / "ports.json", MACHINES)
            self.vagrant("up", k, "--no-provision", log=self.kdir(k) / "vagrant-up.log")
            self.ssh_config(k)
            # the tree is shared and live: if pyproject.toml changed since the wheelhouse was
            # made, the synced source needs the new one
            if self.wheels and wheels.key(REPO / "pyproject.toml")[:16] != self.wheels.name:
                self.wheels, _ = wheels.ensure(REPO, log=say)
                self.vagrant("rsync", k, log=self.kdir(k) / "vagrant-up.log")
            s.detail = f"accel={self.accel}, {self.a.cpus} vCPU, {self.a.memory} MiB"

    def provision(self, k: str) -> None:
        with self.run.step(k, "provision") as s:
            recap = self.ansible(k, self.kdir(k) / "provision-1.log")
            s.detail = f"changed={recap.get('changed')}"
        with self.run.step(k, "idempotence") as s:
            recap = self.ansible(k, self.kdir(k) / "provision-2.log")
            s.detail = f"changed={recap.get('changed')}"
            if recap.get("changed", 1) != 0:
                raise StepFailed(f"second provision changed {recap.get('changed')} task(s)")

    def verify(self, k: str) -> None:
        with self.run.step(k, "verify (testinfra)") as s:
            cfg = RUN_ROOT / "state" / f"{k}.ssh-config"
            xml = self.kdir(k) / "verify.xml"
            self.run.sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         str(HERE / "verify"), f"--hosts=ssh://{k}", f"--ssh-config={cfg}",
                         "--sudo", f"--junitxml={xml}", "--rootdir", str(HERE / "verify")],
                        log=self.kdir(k) / "verify.log", cwd=REPO)
            c = hostutil.junit_counts(xml)
            s.detail = f"{c['passed']}/{c['tests']} passed"

    def suites(self, k: str) -> None:
        extra = " ".join(shlex.quote(x) for x in self.a.pytest_args)
        for suite in self.a.suites:
            with self.run.step(k, f"tests/{suite} in the VM") as s:
                prof = f"--hypothesis-profile {self.profile} --hypothesis-show-statistics" \
                    if suite == "property" else ""
                cmd = (
                    f"sudo mkdir -p {GUEST_RESULTS} && cd /srv/skiff && "
                    # the venv's bin first, as in a tox env (skiff, skiffd, skiff-runc)
                    f"sudo env PATH=/opt/skiff-venv/bin:/usr/local/sbin:/usr/local/bin:"
                    f"/usr/sbin:/usr/bin:/sbin:/bin SKIFF_HYPOTHESIS_PROFILE={self.profile} "
                    # the kernel-behaviour report lands with the results that collect copies
                    f"SKIFF_RESULTS_DIR={GUEST_RESULTS} "
                    f"timeout -k 30 {self.a.suite_timeout} "
                    f"/opt/skiff-venv/bin/pytest tests/{suite} --target local -p no:cacheprovider "
                    f"-o junit_family=xunit2 --junitxml={GUEST_RESULTS}/{suite}.xml {prof} {extra} "
                    f"2>&1 | sudo tee {GUEST_RESULTS}/{suite}.log; exit ${{PIPESTATUS[0]}}"
                )
                r = self.ssh(k, f"bash -c {shlex.quote(cmd)}", check=False,
                             log=self.kdir(k) / f"{suite}.log", echo=self.a.verbose)
                summary = next((ln for ln in reversed(r.stdout.splitlines())
                                if ln.startswith("=") and " in " in ln), "")
                s.detail = summary.strip("= ") or f"exit {r.returncode}"
                if r.returncode == 124:
                    s.detail = f"timed out after {self.a.suite_timeout} s; {s.detail}"
                if r.returncode not in (0, 5):  # 5: no tests collected
                    self.ok = False
                    say(failure_excerpt(r.stdout, k, suite))
                    raise StepFailed(f"pytest tests/{suite} exit {r.returncode}: {s.detail}")

    def collect(self, k: str) -> None:
        with self.run.step(k, "collect results") as s:
            d = self.kdir(k)
            cmd = (f"sudo mkdir -p {GUEST_RESULTS}; "
                   f"sudo journalctl -b --no-pager -u skiffd > /tmp/skiffd.log 2>&1; "
                   f"sudo journalctl -b --no-pager -u skiff-registry > /tmp/registry.log 2>&1; "
                   f"sudo dmesg > /tmp/dmesg.log 2>&1; "
                   f"sudo cp /tmp/skiffd.log /tmp/registry.log /tmp/dmesg.log {GUEST_RESULTS}/; "
                   f"sudo tar -C {GUEST_RESULTS} -cf - .")
            cfg = RUN_ROOT / "state" / f"{k}.ssh-config"
            with open(d / "guest-results.tar", "wb") as f:
                subprocess.run(["ssh", "-F", str(cfg), "-o", "LogLevel=ERROR", k, cmd],
                               stdout=f, check=False, timeout=300)
            subprocess.run(["tar", "-C", str(d), "-xf", str(d / "guest-results.tar")], check=False)
            (d / "guest-results.tar").unlink()
            stats = d / "property.log"
            if stats.exists():
                text = stats.read_text(errors="replace")
                i = text.find("Hypothesis Statistics")
                (d / "hypothesis-statistics.txt").write_text(text[i:] if i >= 0 else "")
            s.detail = f"{sum(1 for _ in d.iterdir())} files in {d}"

    def copy_serial(self, k: str) -> None:
        src = RUN_ROOT / "state" / f"{k}-serial.log"
        if src.exists():
            with contextlib.suppress(OSError):
                (self.kdir(k) / "serial.log").write_bytes(src.read_bytes())

    def destroy(self, k: str) -> None:
        with self.run.step(k, "destroy"):
            self.copy_serial(k)
            self.ssh_close(k)
            self.vagrant("destroy", "-f", k, log=self.kdir(k) / "destroy.log", check=False)
            for d in lv.domains(PREFIX + k):
                lv.virsh("destroy", d)
                lv.virsh("undefine", d, "--nvram")
            for v in lv.volumes(POOL):
                if v.startswith(PREFIX + k):
                    lv.virsh("vol-delete", v, "--pool", POOL)

    # -- drivers -------------------------------------------------------------------------
    def full(self) -> None:
        self.prepare_host()
        self.sweep("destroy leftovers", drop_pool=False)
        lv.ensure_pool(POOL, POOL_PATH)
        self.build_box()
        for k in self.kernels:
            try:
                self.up(k)
                self.provision(k)
                self.verify(k)
                try:
                    self.suites(k)
                finally:
                    self.collect(k)
            except StepFailed as e:
                self.ok = False
                say(f"[{k}] step failed: {e}")
            finally:
                if not self.a.keep:
                    self.destroy(k)
                else:
                    self.copy_serial(k)

    def tests_only(self) -> None:
        self.prepare_host()
        self.box = None
        self.wheels, _ = wheels.ensure(REPO, log=say)
        for k in self.kernels:
            try:
                with self.run.step(k, "rsync source"):
                    if self.vagrant("status", k, check=False).stdout.find("running") < 0:
                        raise StepFailed(f"no running VM {k}: run with --keep first")
                    cfg = self.ssh_config(k)
                    # our own rsync over the VM's ssh-config, not `vagrant rsync`: Vagrant
                    # replays the folders recorded at `up`, and the wheelhouse may have moved
                    ssh = f"ssh -F {cfg} -o LogLevel=ERROR"
                    excl = [f"--exclude={x}" for x in RSYNC_EXCLUDES]
                    self.run.sh(["rsync", "-a", "--delete", *excl, "-e", ssh,
                                 f"{REPO}/", f"{k}:/srv/skiff/"], log=self.kdir(k) / "rsync.log")
                    self.run.sh(["rsync", "-a", "--delete", "-e", ssh, f"{self.wheels}/",
                                 f"{k}:/srv/wheels/"], log=self.kdir(k) / "rsync.log")
                with self.run.step(k, "provision (update)") as s:
                    recap = self.ansible(k, self.kdir(k) / "provision.log")
                    s.detail = f"changed={recap.get('changed')}"
                try:
                    self.suites(k)
                finally:
                    self.collect(k)
                    self.copy_serial(k)
            except StepFailed as e:
                self.ok = False
                say(f"[{k}] step failed: {e}")

    def teardown(self) -> None:
        """Always runs: sweep our objects (unless kept) and stop the daemons we started."""
        self.run.kill_children()
        if not self.a.keep and not self.a.tests_only:
            try:
                self.sweep("sweep (domains, volumes, pool, ports)", drop_pool=True)
                with contextlib.suppress(FileNotFoundError):
                    (RUN_ROOT / "state" / "box-env.json").unlink()
            except Exception as e:  # noqa: BLE001
                self.ok = False
                say(f"sweep failed: {e}")
            if self.run.daemons_started:
                with self.run.step("host", "stop libvirtd/virtlogd started by the harness"):
                    lv.stop_daemons(self.run.daemons_started, log=say)
            for f in RUN_ROOT.glob("cm-*"):  # ssh control sockets of destroyed VMs
                f.unlink(missing_ok=True)
            lv.restore_kvm_access(self.run.kvm_restore)
            with contextlib.suppress(FileNotFoundError):
                (RUN_ROOT / "state" / "host.json").unlink()

    def summary(self) -> str:
        rows = [(s.kernel, s.name, s.status, f"{s.seconds:.1f}", s.detail) for s in self.run.steps]
        total = sum(s.seconds for s in self.run.steps)
        table = hostutil.format_table(rows, ("kernel", "step", "status", "s", "detail"))
        counts = []
        for k in self.kernels:
            for suite in ("system", "property"):
                c = hostutil.junit_counts(self.run.results / k / f"{suite}.xml")
                if c["tests"]:
                    counts.append((k, suite, str(c["tests"]), str(c["passed"]), str(c["failures"]),
                                   str(c["errors"]), str(c["skipped"])))
        text = f"# tox -e system, run {self.run.run_id} (accel {self.accel})\n\n{table}\n\n" \
               f"total {total:.1f} s\n"
        if counts:
            text += "\n" + hostutil.format_table(
                counts, ("kernel", "suite", "tests", "passed", "failed", "errors", "skipped")) + "\n"
        (self.run.results / "summary.md").write_text(text)
        (self.run.results / "summary.json").write_text(json.dumps(
            [s.__dict__ for s in self.run.steps], indent=1))
        return text


def failure_excerpt(out: str, kernel: str, suite: str, limit: int = 150) -> str:
    """What a failed suite said about its failures, bounded, for the console (CI keeps only
    the console: the results directory of a CI run is gone with its clone)."""
    lines = out.splitlines()
    start = next((i for i, ln in enumerate(lines)
                  if ln.startswith("=") and (" FAILURES " in ln or " ERRORS " in ln)), None)
    short = next((i for i, ln in enumerate(lines) if "short test summary info" in ln), None)
    body = lines[start:short] if start is not None else lines[-limit:]
    if len(body) > limit:
        body = body[: limit // 3] + [f"... ({len(body) - limit} lines cut) ..."] + \
            body[-(limit - limit // 3):]
    tail = lines[short:] if short is not None else []
    return "\n".join([f"---- [{kernel}] tests/{suite} failures ----", *body, *tail,
                      f"---- end of [{kernel}] tests/{suite} failures ----"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m vm.harness", description=__doc__.split("\n")[0])
    ap.add_argument("--kernel", choices=["v2", "v1", "all"],
                    default=os.environ.get("SKIFF_VM_KERNEL", "v2"))
    ap.add_argument("--keep", action="store_true", help="keep the VM (and libvirtd) afterwards")
    ap.add_argument("--tests-only", action="store_true",
                    help="rsync + suites + collect on a VM kept by an earlier --keep")
    ap.add_argument("--destroy", action="store_true",
                    help="only tear down what a --keep run left (VM, volumes, daemons, /dev/kvm)")
    ap.add_argument("--suites", default="system,property",
                    type=lambda s: [x for x in s.split(",") if x])
    ap.add_argument("--cpus", type=int, default=int(os.environ.get("SKIFF_VM_CPUS", "2")))
    ap.add_argument("--memory", type=int, default=int(os.environ.get("SKIFF_VM_MEMORY", "2048")))
    ap.add_argument("--suite-timeout", type=int,
                    default=int(os.environ.get("SKIFF_VM_SUITE_TIMEOUT", "2400")),
                    help="seconds per suite in the VM before it is stopped (default 2400)")
    ap.add_argument("--hypothesis-profile", choices=["ci", "vm", "dev", "soak"],
                    default=os.environ.get("SKIFF_VM_HYPOTHESIS_PROFILE"),
                    help="profile of the property suites in the VM (default: ci with KVM, "
                         "vm under TCG)")
    ap.add_argument("--results", default=str(REPO / "results"))
    ap.add_argument("--no-bootstrap", action="store_true",
                    help="do not run scripts/bootstrap-vm (host packages already there)")
    ap.add_argument("-v", "--verbose", action="store_true", help="stream the suites' output")
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest in the VM (after --)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("vm.harness: run as root (libvirt system connection, loop devices)", file=sys.stderr)
        return 2
    h = Harness(args)

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    say(f"run {h.run.run_id}: kernels {h.kernels}, accel {h.accel}, results {h.run.results}")
    interrupted = False
    try:
        if args.destroy:
            h.prepare_host()
        else:
            (h.tests_only if args.tests_only else h.full)()
    except KeyboardInterrupt:
        interrupted = True
        h.ok = False
        say("interrupted: tearing down")
    except StepFailed as e:
        h.ok = False
        say(f"step failed: {e}")
    finally:
        # a second Ctrl-C during teardown must not leave things behind either
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        h.teardown()
        print()
        print(h.summary())
    return 130 if interrupted else (0 if h.ok else 1)


if __name__ == "__main__":
    sys.exit(main())
