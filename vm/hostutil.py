"""Small pure helpers of the harness, kept apart so that unit tests need no VM.

Port choice, ssh-config parsing, accelerator choice, the Ansible recap, result layout.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path


def free_port(host: str = "127.0.0.1", taken: Iterable[int] = ()) -> int:
    """A TCP port nobody listens on now and that no other VM of ours has been given.

    The kernel picks it (bind to port 0), so two harness runs do not race for a fixed range;
    ports already handed to our other machines (`taken`) are skipped because they are not
    bound while their VM is down.
    """
    taken = set(taken)
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
    raise RuntimeError("no free TCP port found")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (used to check no forwarded port is left)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def assign_ports(ports_file: Path, machines: Iterable[str]) -> dict[str, int]:
    """Give each machine a port once and keep it in ports_file for the VM's lifetime.

    The Vagrantfile reads the same file, so every later `vagrant` command (ssh-config,
    destroy) sees the same port; the harness removes the file when the VMs are destroyed.
    """
    ports: dict[str, int] = {}
    if ports_file.exists():
        ports = {k: int(v) for k, v in json.loads(ports_file.read_text()).items()}
    for m in machines:
        if m not in ports:
            ports[m] = free_port(taken=ports.values())
    ports_file.parent.mkdir(parents=True, exist_ok=True)
    ports_file.write_text(json.dumps(ports, sort_keys=True))
    return ports


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """`vagrant ssh-config` output -> {host: {option(lowercase): value}}.

    Only what the harness needs: HostName, Port, User, IdentityFile and the rest as given.
    Repeated options keep their first value, as ssh does. Quotes around values are removed.
    """
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"(\S+)\s*(?:=\s*|\s+)(.*)$", line)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "host":
            current = hosts.setdefault(value, {})
            continue
        if current is not None:
            current.setdefault(key, value)
    return hosts


def ansible_inventory(name: str, ssh: dict[str, str]) -> str:
    """An INI inventory line for one VM from its parsed ssh-config entry."""
    return (
        "[skiff]\n"
        f"{name} ansible_host={ssh.get('hostname', '127.0.0.1')} "
        f"ansible_port={ssh.get('port', '22')} ansible_user={ssh.get('user', 'vagrant')} "
        f"ansible_ssh_private_key_file={ssh.get('identityfile', '')}\n"
    )


def choose_accel(cpuinfo: str, override: str | None = None, kvm_usable: bool = True) -> str:
    """"kvm" when the CPU advertises VT-x/AMD-V (vmx/svm) and /dev/kvm is usable, else "tcg".

    /dev/kvm alone is not enough: on these machines it is a nested PVM implementation on
    which a stock kernel does not boot, and its CPU flags show neither vmx nor svm.
    An explicit override (SKIFF_VM_ACCEL) wins.
    """
    if override:
        override = override.strip().lower()
        if override not in ("kvm", "tcg"):
            raise ValueError(f"SKIFF_VM_ACCEL must be kvm or tcg, not {override!r}")
        return override
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            if flags & {"vmx", "svm"} and kvm_usable:
                return "kvm"
            break
    return "tcg"


def static_executable(path: str | None) -> bool:
    """An x86-64 ELF without a program interpreter (PT_INTERP): it runs on any Linux guest, so
    the host's copy can be handed to the VM (the docker CLI the local suites use)."""
    if not path:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:5] != b"\x7fELF\x02" or len(head) < 64:
                return False
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of ansible-playbook -> {host: {"ok": n, "changed": n, "failed": n, ...}}."""
    recap: dict[str, dict[str, int]] = {}
    seen = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            seen = True
            continue
        if not seen:
            continue
        m = re.match(r"^(\S+)\s*:\s*(.*)$", line.strip())
        if not m:
            continue
        counts = dict(re.findall(r"(\w+)=(\d+)", m.group(2)))
        if counts:
            recap[m.group(1)] = {k: int(v) for k, v in counts.items()}
    return recap


def junit_counts(path: Path) -> dict[str, int]:
    """tests/failures/errors/skipped summed over a JUnit XML file (pytest's format)."""
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return out
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        for k in out:
            out[k] += int(s.get(k, 0) or 0)
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    return out


def results_layout(root: Path, run_id: str, kernel: str) -> dict[str, Path]:
    """Where one kernel's results land on the host: results/<run>/<kernel>/..."""
    d = root / run_id / kernel
    return {
        "dir": d,
        "junit_system": d / "system.xml",
        "junit_property": d / "property.xml",
        "junit_verify": d / "verify.xml",
        "hypothesis": d / "hypothesis-statistics.txt",
        "skiffd_log": d / "skiffd.log",
        "serial_log": d / "serial.log",
    }


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A plain Markdown-compatible table (no dependency, readable in a terminal and a log)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])
