"""Container start-to-exit: `skiff-runc run` vs `runc run` (and crun when installed).

    python -m bench runc [--runs 30] [--warmup 3] [--out docs/bench-runc.md]

Same bundle for every runtime: the busybox rootfs (tests/images), `true` as the process,
Docker's default capabilities and, so that all runtimes load the same filter, Docker's default
seccomp profile written explicitly into config.json. Runs are interleaved (bench/common.py).
skiff-runc is measured twice: as the installed console script and through a `python -I -S`
launcher (no site import: what a packaged skiff-runc would do).
Needs root; uses state roots /run/skt1-bench-* and cgroups /skt1/bench-*; removes them.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from bench.common import Series, interleave, run_cmd, table

REPO = Path(__file__).resolve().parent.parent


def _bundle(tmp: Path, rootfs: str, name: str) -> str:
    from engine.libcontainer import seccomp
    from engine.libcontainer.defaults import DOCKER_DEFAULT_CAPS, default_spec

    cfg = default_spec()
    cfg["root"]["path"] = rootfs
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["true"]
    cfg["linux"]["cgroupsPath"] = f"/skt1/bench-{name}"
    cfg["linux"]["seccomp"] = seccomp.docker_default(DOCKER_DEFAULT_CAPS)
    b = tmp / name
    b.mkdir()
    (b / "config.json").write_text(json.dumps(cfg))
    return str(b)


def _skiff_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # tox sets it: every start would recompile
    env["PYTHONPYCACHEPREFIX"] = "/var/tmp/skiff-bench-pycache"
    return env


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench runc")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench runc: needs root", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    from tests.images import busybox

    image = busybox.build()
    tmp = Path(tempfile.mkdtemp(prefix="skt1-bench-"))
    roots = {n: f"/run/skt1-bench-{n}" for n in ("skiff", "skiffI", "skiffZ", "runc", "crun")}
    for r in roots.values():  # a previous interrupted run may have left state behind
        shutil.rmtree(r, ignore_errors=True)
    cases = {}
    env = _skiff_env()
    script = shutil.which("skiff-runc") or str(Path(sys.executable).parent / "skiff-runc")
    if Path(script).exists():
        b = _bundle(tmp, str(image / "rootfs"), "skiff")
        cases["skiff-runc run (console script)"] = run_cmd(
            [script, "--root", roots["skiff"], "run", "-b", b, "skiffbench"], env=env)
    site = sysconfig.get_paths()["purelib"]
    # appended, not prepended: stdlib imports then do not stat the repo and site-packages first
    launcher = (f"import sys; sys.path += [{str(REPO)!r}, {site!r}]; "
                "from engine.libcontainer.cli import main; sys.exit(main())")
    b = _bundle(tmp, str(image / "rootfs"), "skiffI")
    cases["skiff-runc run (python -I -S)"] = run_cmd(
        [sys.executable, "-I", "-S", "-X", "pycache_prefix=/var/tmp/skiff-bench-pycache",
         "-c", launcher, "--root", roots["skiffI"], "run", "-b", b, "skiffbenchi"], env=env)
    zsock = "/run/skt1-bench-zygote.sock"
    zygote = subprocess.Popen(
        [sys.executable, "-I", "-S", "-X", "pycache_prefix=/var/tmp/skiff-bench-pycache", "-c",
         launcher.replace("engine.libcontainer.cli", "engine.libcontainer.zygote"), zsock,
         "--idle", "600"], env=env)
    b = _bundle(tmp, str(image / "rootfs"), "skiffZ")
    cases["skiff-runc run (python -I -S, via zygote)"] = run_cmd(
        [sys.executable, "-I", "-S", "-X", "pycache_prefix=/var/tmp/skiff-bench-pycache",
         "-c", launcher, "--root", roots["skiffZ"], "run", "-b", b, "skiffbenchz"],
        env={**env, "SKIFF_RUNC_ZYGOTE": zsock})
    if shutil.which("runc"):
        b = _bundle(tmp, str(image / "rootfs"), "runc")
        cases["runc run"] = run_cmd(["runc", "--root", roots["runc"], "run", "-b", b,
                                     "runcbench"])
    if shutil.which("crun"):
        b = _bundle(tmp, str(image / "rootfs"), "crun")
        # crun refuses the hybrid layout; hide the cgroup2 mount in a private mount ns
        hide = ("umount /sys/fs/cgroup/unified 2>/dev/null; " if os.path.ismount(
            "/sys/fs/cgroup/unified") else "")
        cases["crun run"] = run_cmd(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                     f"{hide}exec crun --root {roots['crun']} run -b {b} "
                                     "crunbench"])
    baseline = "runc run" if "runc run" in cases else next(iter(cases))
    cpu: dict[str, list[float]] = {name: [] for name in cases}

    def with_cpu(name: str, fn):
        """CPU time of the runtime and every child it waited for: less load-sensitive."""
        def go() -> None:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            fn()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        return go

    cases = {name: with_cpu(name, fn) for name, fn in cases.items()}
    for _ in range(100):  # the zygote is ready when its socket exists
        if os.path.exists(zsock):
            break
        time.sleep(0.05)
    try:
        series = interleave(cases, a.runs, warmup=a.warmup)
    finally:
        zygote.terminate()
        zygote.wait(timeout=10)
        for r in roots.values():
            shutil.rmtree(r, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        for d in glob.glob("/sys/fs/cgroup/*/skt1/bench-*") + glob.glob(
                "/sys/fs/cgroup/*/skt1") + glob.glob("/sys/fs/cgroup/skt1"):
            try:
                os.rmdir(d)
            except OSError:
                pass
    out = table(series, baseline)
    # the zygote's request children are not children of the measured command: no CPU row
    cpu_series = [Series(name, samples[a.warmup:]) for name, samples in cpu.items()
                  if "zygote" not in name]
    out += "\n\nCPU time (user+sys of the runtime and its children):\n\n" + table(
        cpu_series, baseline)
    versions = []
    for tool in ("runc", "crun"):
        if shutil.which(tool):
            v = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
            versions.append(v.splitlines()[0])
    text = (f"{out}\n\nstart-to-exit of `true`, busybox bundle, {a.runs} interleaved runs "
            f"after {a.warmup} warm-up rounds; {', '.join(versions)}; Python "
            f"{sys.version.split()[0]}; kernel {os.uname().release}\n")
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0
