"""Device access control on cgroup v2: an eBPF BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no devices controller. Instead the kernel runs every BPF_CGROUP_DEVICE program
attached to a task's cgroup (and its ancestors) on each device open and mknod, with

    struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; };
    access_type = (access << 16) | type    type: 1 block, 2 char;  access: 1 m, 2 r, 4 w

and refuses the access with EPERM unless every program returns 1. This module turns the OCI
`linux.resources.devices` list into such a program, loads it with bpf(2) through ctypes and
attaches it to the container's cgroup directory. No compiler, tool or library is involved.

Rule semantics (`decide()` is the reference; the compiled program and `interpret()` agree with
it, which the unit and property tests check): each access bit the kernel asks for (r, w, m) is
decided by the LAST rule that matches the device (type "a" matches every type, a missing
major/minor matches any number) and whose access contains that bit; the request is allowed
when all its bits are. A device no rule matches is denied. This is "last match wins" as in
runc's device filter, per access bit, so two allows "r" and "w" grant "rw" (as cgroup v1 does)
and a later deny "r" takes read away even from a wildcard allow.

The program (registers: r1 ctx, r2 type, r3 access, r4 major, r5 minor, r6 still-undecided
access bits, r7 scratch) walks the rules from the last to the first; per rule:

    if r2 != TYPE goto next;  if r4 != MAJOR goto next;  if r5 != MINOR goto next
    w7 = w6 & ACCESS; if r7 == 0 goto next            (rule has none of the open bits)
    deny:  return 0
    allow: w6 &= ~ACCESS; if r6 != 0 goto next; return 1
    next:
    ... return DEFAULT

Everything before the last "a" rule with access rwm is dead: that rule becomes DEFAULT.

Attaching (runc's way): load the new program, attach it with BPF_F_ALLOW_MULTI (replacing the
single old one atomically with BPF_F_REPLACE where the kernel has it, 5.6+), then detach every
other device program on that cgroup. While old and new are both attached a device must pass
both, so an update never opens a window where something neither version allows gets through.
The cgroup keeps the program alive; removing the cgroup releases it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterable, Sequence

from ..errors import ConfigError
from .resources import DeviceRule

# include/uapi/linux/bpf.h
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4
TYPES = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}
ACCESS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
ALL_ACCESS = 7

BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY = 13, 15, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI, BPF_F_REPLACE = 2, 4

PROG_NAME = "skiff_devices"  # shown by `bpftool prog`; at most 15 characters
LICENSE = b"Apache\0"

# Instruction encoding: struct bpf_insn { u8 code; u8 dst:4, src:4; s16 off; s32 imm; }
_LDX_W = 0x61  # BPF_LDX | BPF_W | BPF_MEM: dst = *(u32 *)(src + off)
_AND32_K, _AND32_X, _RSH32_K, _MOV32_K, _MOV32_X = 0x54, 0x5C, 0x74, 0xB4, 0xBC
_JEQ_K, _JNE_K, _JNE_X, _EXIT = 0x15, 0x55, 0x5D, 0x95
R0, R1, R2, R3, R4, R5, R6, R7 = range(8)

# One instruction: (code, dst, src, off, imm). `off` None is a jump to the end of the rule's
# block, resolved when the block is complete.
Insn = tuple[int, int, int, "int | None", int]
Decoded = tuple[int, int, int, int, int]
_NEXT = None


def _i(code: int, dst: int = 0, src: int = 0, off: int | None = 0, imm: int = 0) -> Insn:
    return (code, dst, src, off, imm)


# -- rule semantics ---------------------------------------------------------------------------


def _bits(access: str) -> int:
    return sum(ACCESS[c] for c in set(access))


def _matches(rule: DeviceRule, dev_type: str, major: int, minor: int) -> bool:
    return ((rule.type == "a" or rule.type == dev_type)
            and (rule.type == "a" or rule.major is None or rule.major == major)
            and (rule.type == "a" or rule.minor is None or rule.minor == minor))


def decide(rules: Sequence[DeviceRule], dev_type: str, major: int, minor: int,
           access: str) -> bool:
    """The reference semantics: may a task open/mknod (`access`, non-empty subset of "rwm") the
    device `dev_type` ("b"/"c") `major`:`minor` under `rules`?"""
    for bit in set(access):
        verdict = False  # no rule matches: denied
        for rule in rules:
            if bit in rule.access and _matches(rule, dev_type, major, minor):
                verdict = rule.allow
        if not verdict:
            return False
    return True


def effective_rules(rules: Sequence[DeviceRule]) -> tuple[bool, list[DeviceRule]]:
    """(default verdict, the rules that can still matter): everything up to and including the
    last "a" rule with access rwm collapses into the default."""
    default, start = False, 0
    for i, r in enumerate(rules):
        if r.type == "a" and _bits(r.access) == ALL_ACCESS:
            default, start = r.allow, i + 1
    return default, list(rules[start:])


def check_rule(i: int, rule: DeviceRule) -> None:
    """Numbers the program can compare: u32 (the context's fields). ConfigError otherwise."""
    if rule.type not in ("a", "b", "c"):
        raise ConfigError(f"linux.resources.devices[{i}].type", rule.type, "must be a, b or c")
    for key in ("major", "minor"):
        n = getattr(rule, key)
        if n is not None and not 0 <= n <= 0xFFFFFFFF:
            raise ConfigError(f"linux.resources.devices[{i}].{key}", n,
                              "must fit in 32 bits (or be -1/null for any)")
    if not rule.access or not set(rule.access) <= set("rwm"):
        raise ConfigError(f"linux.resources.devices[{i}].access", rule.access,
                          "must be a non-empty combination of r, w, m")


# -- compiler ---------------------------------------------------------------------------------


def _jne(reg: int, value: int) -> list[Insn]:
    """if reg != value goto next. A jump immediate is sign-extended to 64 bits, so numbers
    >= 2**31 go through r7 (a 32-bit mov zero-extends, like the ctx load)."""
    if value < 0x80000000:
        return [_i(_JNE_K, reg, 0, _NEXT, value)]
    return [_i(_MOV32_K, R7, 0, 0, value - (1 << 32)), _i(_JNE_X, reg, R7, _NEXT)]


def _rule_block(rule: DeviceRule) -> list[Insn]:
    block: list[Insn] = []
    if rule.type != "a":
        block += _jne(R2, TYPES[rule.type])
        if rule.major is not None:
            block += _jne(R4, rule.major)
        if rule.minor is not None:
            block += _jne(R5, rule.minor)
    acc = _bits(rule.access)
    if acc != ALL_ACCESS:  # with rwm every open bit overlaps (the kernel asks for >= 1 bit)
        block += [_i(_MOV32_X, R7, R6), _i(_AND32_K, R7, 0, 0, acc), _i(_JEQ_K, R7, 0, _NEXT)]
    if not rule.allow:
        block += [_i(_MOV32_K, R0, 0, 0, 0), _i(_EXIT)]
    else:
        if acc != ALL_ACCESS:
            # ~acc as a signed 32-bit immediate (ALU32 uses the low 32 bits)
            block += [_i(_AND32_K, R6, 0, 0, ~acc), _i(_JNE_K, R6, 0, _NEXT)]
        block += [_i(_MOV32_K, R0, 0, 0, 1), _i(_EXIT)]
    # Resolve "goto next" to the instruction after the block.
    return [(c, d, s, len(block) - i - 1 if off is _NEXT else off, imm)
            for i, (c, d, s, off, imm) in enumerate(block)]


def compile_rules(rules: Sequence[DeviceRule]) -> list[Insn]:
    """The device program for `rules` (in OCI order, the defaults already appended)."""
    for i, r in enumerate(rules):
        check_rule(i, r)
    default, rest = effective_rules(rules)
    prog: list[Insn] = [
        _i(_LDX_W, R2, R1, 0), _i(_AND32_K, R2, 0, 0, 0xFFFF),  # r2 = type
        _i(_LDX_W, R3, R1, 0), _i(_RSH32_K, R3, 0, 0, 16),      # r3 = access
        _i(_LDX_W, R4, R1, 4),                                   # r4 = major
        _i(_LDX_W, R5, R1, 8),                                   # r5 = minor
        _i(_MOV32_X, R6, R3),                                    # r6 = undecided bits
    ]
    for rule in reversed(rest):
        prog += _rule_block(rule)
    prog += [_i(_MOV32_K, R0, 0, 0, int(default)), _i(_EXIT)]
    return prog


def assemble(prog: Iterable[Insn]) -> bytes:
    """The kernel's struct bpf_insn array (little-endian, as on x86-64 and arm64)."""
    out = bytearray()
    for code, dst, src, off, imm in prog:
        assert off is not None, "unresolved jump"
        out += struct.pack("<BBhi", code, dst | (src << 4), off, imm)
    return bytes(out)


def disassemble(code: bytes) -> list[Decoded]:
    return [(c, regs & 0xF, regs >> 4, off, imm)
            for c, regs, off, imm in struct.iter_unpack("<BBhi", code)]


# -- interpreter (for tests and for explaining a program) -------------------------------------

_U32, _U64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


class InterpreterError(Exception):
    """The program does something the kernel's verifier would refuse, or this interpreter
    does not know."""


def interpret(code: bytes, access_type: int, major: int, minor: int) -> int:
    """Run a device program on one bpf_cgroup_dev_ctx the way the kernel would; returns r0.

    Knows exactly the instructions the compiler emits (32-bit ALU, ctx loads, conditional
    jumps, exit), and refuses like the verifier: reading an unset register, loads outside the
    12-byte context, jumps out of the program, backward jumps, running off the end.
    """
    insns = disassemble(code)
    ctx = struct.pack("<III", access_type, major, minor)
    regs: list[int | None] = [None] * 11
    regs[R1] = -1  # the ctx pointer (only usable as a load base)
    pc = 0

    def get(r: int) -> int:
        v = regs[r]
        if v is None or (v == -1 and r == R1):
            raise InterpreterError(f"insn {pc}: r{r} is not a readable scalar")
        return v

    while True:
        if not 0 <= pc < len(insns):
            raise InterpreterError(f"pc {pc} is outside the program")
        op, dst, src, off, imm = insns[pc]
        if op == _LDX_W:
            if src != R1 or regs[R1] != -1 or off not in (0, 4, 8):
                raise InterpreterError(f"insn {pc}: load not from the context")
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op in (_AND32_K, _RSH32_K, _MOV32_K, _AND32_X, _MOV32_X):
            operand = (imm & _U32) if op in (_AND32_K, _RSH32_K, _MOV32_K) else get(src) & _U32
            if op in (_MOV32_K, _MOV32_X):
                regs[dst] = operand
            elif op in (_AND32_K, _AND32_X):
                regs[dst] = get(dst) & _U32 & operand
            else:
                regs[dst] = (get(dst) & _U32) >> (operand & 31)
        elif op in (_JEQ_K, _JNE_K, _JNE_X):
            rhs = (imm & _U64) if op != _JNE_X else get(src)
            if off < 0:
                raise InterpreterError(f"insn {pc}: backward jump")
            taken = (get(dst) == rhs) == (op == _JEQ_K)
            pc += off if taken else 0
        elif op == _EXIT:
            return get(R0)
        else:
            raise InterpreterError(f"insn {pc}: unknown opcode {op:#x}")
        pc += 1


def ctx_access_type(dev_type: str, access: str) -> int:
    return (_bits(access) << 16) | TYPES[dev_type]


# -- bpf(2) -----------------------------------------------------------------------------------

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351,
            "riscv64": 280}
_libc: ctypes.CDLL | None = None


class BpfError(OSError):
    """bpf(2) failed; the message names the command (and carries the verifier log)."""


def _bpf(cmd: int, attr: bytearray, what: str) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise BpfError(errno.ENOSYS, f"bpf(2): unknown syscall number on {os.uname().machine}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    rc = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if rc < 0:
        e = ctypes.get_errno()
        raise BpfError(e, f"{what}: {os.strerror(e)}")
    return int(rc)


def load(code: bytes, name: str = PROG_NAME) -> int:
    """BPF_PROG_LOAD a device program; returns its fd. On failure the error includes the
    verifier's log (the load is retried with logging on, as libbpf does)."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(LICENSE, len(LICENSE))

    def attempt(log: ctypes.Array | None) -> int:
        attr = bytearray(struct.pack(
            "<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
            ctypes.addressof(insns), ctypes.addressof(lic),
            1 if log is not None else 0, len(log) if log is not None else 0,
            ctypes.addressof(log) if log is not None else 0, 0, 0, name.encode()[:15], 0, 0))
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD (cgroup device program)")

    try:
        return attempt(None)
    except BpfError as e:
        if e.errno in (errno.EPERM, errno.ENOSYS):
            raise  # nothing a log would explain
        log = ctypes.create_string_buffer(1 << 16)
        try:
            fd = attempt(log)
        except BpfError as e2:
            text = log.value.decode(errors="replace").strip()
            raise BpfError(e2.errno, f"{e2.strerror}; verifier log:\n{text}") from None
        return fd  # pragma: no cover - failed once without a log, then passed


def query(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to this cgroup itself (not its ancestors)."""
    n = 64
    for _ in range(10):
        ids = (ctypes.c_uint32 * n)()
        # The query's fields end at prog_cnt, but newer kernels write more results
        # (revision, at offset 56) back into the caller's attr: room for them, zeroed.
        attr = bytearray(struct.pack("<IIIIQI4x32x", cgroup_fd, BPF_CGROUP_DEVICE, 0, 0,
                                     ctypes.addressof(ids), n))
        try:
            _bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY (BPF_CGROUP_DEVICE)")
        except BpfError as e:
            if e.errno == errno.ENOSPC:  # more than n: prog_cnt says how many
                n = struct.unpack_from("<I", attr, 24)[0]
                continue
            raise
        count = struct.unpack_from("<I", attr, 24)[0]
        return list(ids[:count])
    raise BpfError(errno.EAGAIN, "BPF_PROG_QUERY: the program list kept changing")


def prog_fd_by_id(prog_id: int) -> int:
    return _bpf(BPF_PROG_GET_FD_BY_ID, bytearray(struct.pack("<III", prog_id, 0, 0)),
                f"BPF_PROG_GET_FD_BY_ID {prog_id}")


def prog_info(prog_fd: int) -> tuple[int, str]:
    """(id, name) of a loaded program."""
    info = ctypes.create_string_buffer(80)
    attr = bytearray(struct.pack("<IIQ", prog_fd, len(info), ctypes.addressof(info)))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "BPF_OBJ_GET_INFO_BY_FD")
    prog_id = struct.unpack_from("<I", info.raw, 4)[0]
    name = info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    return prog_id, name


def _attach(cgroup_fd: int, prog_fd: int, flags: int, replace_fd: int = 0) -> None:
    attr = bytearray(struct.pack("<IIIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags,
                                 replace_fd))
    _bpf(BPF_PROG_ATTACH, attr, "BPF_PROG_ATTACH (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)")


def _detach(cgroup_fd: int, prog_fd: int) -> None:
    attr = bytearray(struct.pack("<IIIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, 0, 0))
    _bpf(BPF_PROG_DETACH, attr, "BPF_PROG_DETACH (BPF_CGROUP_DEVICE)")


def _open_dir(cgroup_dir: str | os.PathLike[str]) -> int:
    return os.open(cgroup_dir, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)


def attached(cgroup_dir: str | os.PathLike[str]) -> list[int]:
    """Ids of the device programs on a cgroup directory."""
    fd = _open_dir(cgroup_dir)
    try:
        return query(fd)
    finally:
        os.close(fd)


def apply(cgroup_dir: str | os.PathLike[str], rules: Sequence[DeviceRule]) -> int:
    """Make `rules` the only device filter of the cgroup; returns the new program's id."""
    code = assemble(compile_rules(rules))
    dir_fd = _open_dir(cgroup_dir)
    prog_fd, old_fds = -1, []
    try:
        old_ids = query(dir_fd)
        prog_fd = load(code)
        for pid_ in old_ids:
            try:
                old_fds.append(prog_fd_by_id(pid_))
            except BpfError as e:
                # ENOENT: gone meanwhile. EPERM/EACCES: an LSM hides it from us (runc skips
                # those too: another device program can only restrict further).
                if e.errno not in (errno.ENOENT, errno.EPERM, errno.EACCES):
                    raise
        replaced = False
        if len(old_fds) == 1:
            try:
                _attach(dir_fd, prog_fd, BPF_F_ALLOW_MULTI | BPF_F_REPLACE, old_fds[0])
                replaced = True
            except BpfError as e:
                if e.errno != errno.EINVAL:  # EINVAL: kernel < 5.6, no BPF_F_REPLACE
                    raise
        if not replaced:
            _attach(dir_fd, prog_fd, BPF_F_ALLOW_MULTI)
            for fd in old_fds:
                try:
                    _detach(dir_fd, fd)
                except BpfError as e:
                    if e.errno != errno.ENOENT:
                        raise
        return prog_info(prog_fd)[0]
    finally:
        for fd in (prog_fd, *old_fds):
            if fd >= 0:
                os.close(fd)
        os.close(dir_fd)


def detach_all(cgroup_dir: str | os.PathLike[str]) -> None:
    """Remove every device program from a cgroup (tests; a removed cgroup needs nothing)."""
    dir_fd = _open_dir(cgroup_dir)
    try:
        for prog_id in query(dir_fd):
            try:
                fd = prog_fd_by_id(prog_id)
            except BpfError as e:
                if e.errno == errno.ENOENT:
                    continue
                raise
            try:
                _detach(dir_fd, fd)
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)


def prog_exists(prog_id: int) -> bool:
    """Is a program with this id still loaded (held by a cgroup or an fd)?"""
    try:
        os.close(prog_fd_by_id(prog_id))
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


def in_user_namespace() -> bool:
    """Not in the initial user namespace (rootless, nested): bpf(2) is not for us there."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields != ["0", "0", "4294967295"]


def allows_everything(rules: Sequence[DeviceRule]) -> bool:
    """Would the program return 1 for every device and access (e.g. --privileged)?"""
    default, rest = effective_rules(rules)
    return default and all(r.allow for r in rest)


def can_skip_error(rules: Sequence[DeviceRule]) -> bool:
    """runc's rule (after crun): a failed load may be ignored in a user namespace, or when the
    rules restrict nothing. Otherwise it is an error. (runc asks that every rule allow rwm;
    asking what the rules decide also covers --privileged, whose list ends with runc's
    default "c *:* m"-style allows.)"""
    return in_user_namespace() or allows_everything(rules)
