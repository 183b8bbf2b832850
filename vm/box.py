"""The Vagrant box: cache key, build (vm/build-box.sh), `vagrant box add`, pruning.

Why a cache key: building the box takes minutes (debootstrap + kernel + packages), so it is
built once and reused until one of its inputs changes: the builder script, the package list
(provision/packages.txt), the kernel command line, the suite and the mirror. The key names the
cache directory (/var/tmp/skt6-box/<key>/) and the box (skiff-debian12-<key[:12]>), so an old
box is never used by mistake and a changed input rebuilds without any manual step.

Both kernels of the matrix share one image: "v2" boots it through grub (Debian 12's default,
pure cgroup v2), "v1" boots the same disk's kernel and initrd (saved beside the box) directly
with `systemd.unified_cgroup_hierarchy=0` added (libvirt direct kernel boot).

`SKIFF_BOX=debian/bookworm64` (or any box name) selects a public box instead, where one can be
downloaded; then only the "v2" kernel is available (no saved kernel for direct boot).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUILDER = HERE / "build-box.sh"
PACKAGES = REPO / "provision" / "packages.txt"
CACHE_ROOT = Path(os.environ.get("SKIFF_BOX_CACHE", "/var/tmp/skt6-box"))
BOX_PREFIX = "skiff-debian12-"
ROOT_UUID = "5c1ff0e0-5c1f-4f00-8000-00000000b0c5"
BASE_CMDLINE = "ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0"
# extra kernel arguments per kernel of the matrix (appended to BASE_CMDLINE)
KERNELS: dict[str, str] = {"v2": "", "v1": "systemd.unified_cgroup_hierarchy=0"}


def read_packages(path: Path = PACKAGES) -> list[str]:
    """The package list without comments and blank lines, in file order."""
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def cache_key(
    builder: bytes,
    packages: list[str],
    cmdline: str = BASE_CMDLINE,
    suite: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
) -> str:
    """A digest of everything that changes the box. Package order does not matter."""
    h = hashlib.sha256()
    doc = {
        "builder": hashlib.sha256(builder).hexdigest(),
        "packages": sorted(set(packages)),
        "cmdline": " ".join(cmdline.split()),
        "suite": suite,
        "mirror": mirror.rstrip("/"),
        "uuid": ROOT_UUID,
    }
    h.update(json.dumps(doc, sort_keys=True).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Box:
    """A built (or public) box, with what the Vagrantfile needs to boot it."""

    name: str
    key: str
    dir: Path | None  # cache dir with skiff.box, vmlinuz, initrd.img; None for a public box

    @property
    def kernel(self) -> Path | None:
        return self.dir / "vmlinuz" if self.dir else None

    @property
    def initrd(self) -> Path | None:
        return self.dir / "initrd.img" if self.dir else None

    def cmdline(self, kernel: str) -> str:
        """The full kernel cmdline for direct boot of `kernel` ("v1"/"v2")."""
        extra = KERNELS[kernel]
        return f"root=UUID={ROOT_UUID} {BASE_CMDLINE} {extra}".strip()

    def env(self) -> dict[str, str]:
        """Variables the Vagrantfile reads."""
        env = {"SKIFF_BOX": self.name}
        if self.dir:
            env["SKIFF_BOX_KERNEL"] = str(self.kernel)
            env["SKIFF_BOX_INITRD"] = str(self.initrd)
            env["SKIFF_BOX_CMDLINE_V1"] = self.cmdline("v1")
            env["SKIFF_BOX_CMDLINE_V2"] = self.cmdline("v2")
        return env


def current_key() -> str:
    return cache_key(
        BUILDER.read_bytes(),
        read_packages(),
        BASE_CMDLINE,
        os.environ.get("SKIFF_BOX_SUITE", "bookworm"),
        os.environ.get("SKIFF_BOX_MIRROR", "http://deb.debian.org/debian"),
    )


def box_name(key: str) -> str:
    return BOX_PREFIX + key[:12]


def installed_boxes() -> list[str]:
    """Names of the boxes Vagrant knows (`vagrant box list --machine-readable`)."""
    out = subprocess.run(
        ["vagrant", "box", "list", "--machine-readable"], capture_output=True, text=True
    ).stdout
    return parse_box_list(out)


def parse_box_list(machine_readable: str) -> list[str]:
    names = []
    for line in machine_readable.splitlines():
        parts = line.split(",", 3)
        if len(parts) == 4 and parts[2] == "box-name":
            names.append(parts[3])
    return names


def ensure(log=print) -> tuple[Box, bool]:
    """Build the box if its key is new, `vagrant box add` it; returns (box, built_now)."""
    public = os.environ.get("SKIFF_BOX")
    if public and not public.startswith(BOX_PREFIX):
        if public not in installed_boxes():
            subprocess.run(
                ["vagrant", "box", "add", "--provider", "libvirt", public], check=True
            )
        return Box(public, "", None), False
    key = current_key()
    name = box_name(key)
    d = CACHE_ROOT / key
    built = False
    if not (d / "skiff.box").exists():
        log(f"box {name}: building (key {key[:12]}) in {d}")
        env = dict(os.environ, SKIFF_BOX_UUID=ROOT_UUID, SKIFF_BOX_CMDLINE=BASE_CMDLINE,
                   SKIFF_BOX_PACKAGES=str(PACKAGES),
                   SKIFF_BOX_DEB_CACHE=str(CACHE_ROOT / "debs"))
        subprocess.run(["bash", str(BUILDER), str(d)], check=True, env=env)
        built = True
    boxes = installed_boxes()
    if name not in boxes:
        log(f"box {name}: vagrant box add")
        subprocess.run(
            ["vagrant", "box", "add", "--force", "--name", name, str(d / "skiff.box")],
            check=True, stdout=subprocess.DEVNULL,
        )
    prune(keep=name, boxes=boxes, log=log)
    return Box(name, key, d), built


def prune(keep: str, boxes: list[str] | None = None, log=print) -> None:
    """Remove older skiff-debian12-* boxes and their cache directories."""
    for b in boxes if boxes is not None else installed_boxes():
        if b.startswith(BOX_PREFIX) and b != keep:
            log(f"box {b}: removing (outdated)")
            subprocess.run(["vagrant", "box", "remove", "--force", "--all", b],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if CACHE_ROOT.is_dir():
        for d in CACHE_ROOT.iterdir():
            if len(d.name) == 64 and box_name(d.name) != keep:
                shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="vm/build-box", description=__doc__.split("\n")[0])
    ap.add_argument("--key", action="store_true", help="print the cache key and exit")
    ap.add_argument("--env", action="store_true", help="print the Vagrantfile variables")
    a = ap.parse_args(argv)
    if a.key:
        print(current_key())
        return 0
    box, built = ensure()
    if a.env:
        for k, v in box.env().items():
            print(f"export {k}='{v}'")
    else:
        print(f"{box.name} ({'built' if built else 'cached'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
