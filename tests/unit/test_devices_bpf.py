"""The cgroup v2 device filter compiler: instruction shapes, encoding, the interpreter, and
interpret(compile(rules)) == decide(rules) for random rules (Hypothesis). No kernel here: the
real kernel's verdicts are in tests/system/test_devices_bpf.py."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.libcontainer.cgroups import devices_bpf as d
from engine.libcontainer.cgroups.resources import DEFAULT_ALLOWED_DEVICES, DeviceRule, Resources
from engine.libcontainer.errors import ConfigError

DOCKER = Resources.from_oci({"devices": [{"allow": False, "access": "rwm"}]}).devices \
    + DEFAULT_ALLOWED_DEVICES


def verdict(rules, dev_type: str, major: int, minor: int, access: str) -> bool:
    code = d.assemble(d.compile_rules(rules))
    r0 = d.interpret(code, d.ctx_access_type(dev_type, access), major, minor)
    assert r0 in (0, 1)
    return r0 == 1


def test_encoding_matches_the_kernel_layout():
    # r2 = *(u32 *)(r1 + 4): code 0x61, dst 2 in the low nibble, src 1 in the high nibble
    assert d.assemble([(0x61, 2, 1, 4, 0)]) == bytes([0x61, 0x12, 4, 0, 0, 0, 0, 0])
    # w6 &= ~2 (imm -3 little-endian), exit
    assert d.assemble([(0x54, 6, 0, 0, -3), (0x95, 0, 0, 0, 0)]) == (
        bytes([0x54, 0x06, 0, 0]) + struct.pack("<i", -3) + bytes([0x95, 0, 0, 0, 0, 0, 0, 0]))
    prog = d.compile_rules(DOCKER)
    assert d.disassemble(d.assemble(prog)) == prog


def test_program_shape_for_deny_all_plus_one_device():
    rules = [DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "rw")]
    prog = d.compile_rules(rules)
    prologue = [
        (0x61, 2, 1, 0, 0), (0x54, 2, 0, 0, 0xFFFF),
        (0x61, 3, 1, 0, 0), (0x74, 3, 0, 0, 16),
        (0x61, 4, 1, 4, 0), (0x61, 5, 1, 8, 0), (0xBC, 6, 3, 0, 0),
    ]
    block = [
        (0x55, 2, 0, 9, 2),      # if r2 != char goto next
        (0x55, 4, 0, 8, 1),      # if r4 != 1 goto next
        (0x55, 5, 0, 7, 3),      # if r5 != 3 goto next
        (0xBC, 7, 6, 0, 0),      # w7 = w6
        (0x54, 7, 0, 0, 6),      # w7 &= rw
        (0x15, 7, 0, 4, 0),      # if r7 == 0 goto next
        (0x54, 6, 0, 0, ~6),     # w6 &= ~rw
        (0x55, 6, 0, 2, 0),      # if r6 != 0 goto next
        (0xB4, 0, 0, 0, 1), (0x95, 0, 0, 0, 0),  # return 1
    ]
    # the leading deny-all became the default
    assert prog == prologue + block + [(0xB4, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)]


def test_dead_rules_before_the_last_wildcard_are_dropped():
    rules = [DeviceRule(True, "c", 1, 3, "rwm"), DeviceRule(True, "a"),
             DeviceRule(False, "b", 8, None, "rwm")]
    default, rest = d.effective_rules(rules)
    assert default is True and rest == [DeviceRule(False, "b", 8, None, "rwm")]
    assert len(d.compile_rules(rules)) == 7 + 4 + 2


@pytest.mark.parametrize("dev, access, allowed", [
    (("c", 1, 3), "rw", True),        # /dev/null
    (("c", 1, 3), "rwm", True),
    (("c", 136, 7), "rw", True),      # /dev/pts/7
    (("c", 1, 11), "r", False),       # /dev/kmsg
    (("c", 10, 200), "rw", False),    # /dev/net/tun
    (("b", 8, 0), "r", False),        # /dev/sda
    (("b", 8, 0), "m", True),         # mknod of anything is allowed (runc's defaults)
    (("b", 8, 0), "rm", False),
    (("c", 4, 1), "m", True),
])
def test_docker_defaults(dev, access, allowed):
    assert verdict(DOCKER, *dev, access) is allowed
    assert d.decide(DOCKER, *dev, access) is allowed


def test_split_access_and_later_denies():
    rules = [DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "r"),
             DeviceRule(True, "c", 1, 3, "w")]
    assert verdict(rules, "c", 1, 3, "rw") and not verdict(rules, "c", 1, 3, "rwm")
    # a later deny of one bit takes it away from an earlier wildcard allow
    rules = [DeviceRule(True, "a"), DeviceRule(False, "c", None, 3, "r")]
    assert not verdict(rules, "c", 9, 3, "rw") and verdict(rules, "c", 9, 3, "w")
    assert verdict(rules, "b", 9, 3, "r")
    # no rules: nothing matches, denied
    assert not verdict([], "c", 1, 3, "r")


def test_numbers_beyond_31_bits_compare_exactly():
    big = 0xFFFFFFF0
    rules = [DeviceRule(True, "c", big, 2**31, "rwm")]
    assert verdict(rules, "c", big, 2**31, "r")
    assert not verdict(rules, "c", big - 1, 2**31, "r")
    with pytest.raises(ConfigError, match="32 bits"):
        d.compile_rules([DeviceRule(True, "c", 2**32, 0, "r")])


def test_interpreter_refuses_what_the_verifier_would():
    with pytest.raises(d.InterpreterError, match="not a readable"):
        d.interpret(d.assemble([(0x95, 0, 0, 0, 0)]), 0, 0, 0)  # r0 unset
    with pytest.raises(d.InterpreterError, match="outside"):
        d.interpret(d.assemble([(0xB4, 0, 0, 0, 1)]), 0, 0, 0)  # runs off the end
    with pytest.raises(d.InterpreterError, match="unknown opcode"):
        d.interpret(d.assemble([(0x07, 0, 0, 0, 1)]), 0, 0, 0)
    with pytest.raises(d.InterpreterError, match="context"):
        d.interpret(d.assemble([(0x61, 2, 1, 12, 0)]), 0, 0, 0)


def test_can_skip_error_only_when_nothing_is_restricted(monkeypatch):
    monkeypatch.setattr(d, "in_user_namespace", lambda: False)
    assert not d.can_skip_error(DOCKER)
    assert d.can_skip_error([DeviceRule(True, "a"), *DEFAULT_ALLOWED_DEVICES])
    assert not d.can_skip_error([DeviceRule(True, "a"), DeviceRule(False, "c", 1, 3, "r")])
    assert not d.can_skip_error([DeviceRule(True, "c", 1, 3, "rw")])
    monkeypatch.setattr(d, "in_user_namespace", lambda: True)
    assert d.can_skip_error(DOCKER)


# -- property: the compiled program decides as the reference semantics -------------------------

NUMS = st.one_of(st.none(), st.sampled_from([0, 1, 3, 5, 136, 2**31, 0xFFFFFFFF]))
ACCESS = st.sets(st.sampled_from("rwm"), min_size=1).map(
    lambda s: "".join(c for c in "rwm" if c in s))


@st.composite
def rules_st(draw) -> list[DeviceRule]:
    out = []
    for _ in range(draw(st.integers(0, 8))):
        typ = draw(st.sampled_from("abc"))
        maj, mnr = (None, None) if typ == "a" else (draw(NUMS), draw(NUMS))
        out.append(DeviceRule(draw(st.booleans()), typ, maj, mnr, draw(ACCESS)))
    return out


DEVICES = st.tuples(st.sampled_from("bc"), st.sampled_from([0, 1, 3, 5, 136, 2**31, 0xFFFFFFFF]),
                    st.sampled_from([0, 1, 3, 5, 136, 2**31, 0xFFFFFFFF]))


@settings(max_examples=400, deadline=None)
@given(rules=rules_st(), dev=DEVICES, access=ACCESS)
def test_compiled_program_agrees_with_reference(rules, dev, access):
    assert verdict(rules, *dev, access) == d.decide(rules, *dev, access)


@settings(max_examples=200, deadline=None)
@given(rules=rules_st(), dev=DEVICES, access=ACCESS)
def test_reference_is_per_bit_last_match(rules, dev, access):
    # Stated differently: allowed iff no requested bit's last matching rule is a deny and
    # every requested bit has a matching rule.
    def last(bit):
        hit = [r for r in rules if bit in r.access and (r.type == "a" or (
            r.type == dev[0] and r.major in (None, dev[1]) and r.minor in (None, dev[2])))]
        return hit[-1].allow if hit else False
    assert d.decide(rules, *dev, access) == all(last(b) for b in access)


@settings(max_examples=100, deadline=None)
@given(rules=rules_st())
def test_order_matters_only_through_last_match(rules):
    # Appending a rule that allows everything makes everything allowed; a deny-all, nothing.
    for dev_type in "bc":
        assert verdict([*rules, DeviceRule(True, "a")], dev_type, 1, 3, "rwm")
        assert not verdict([*rules, DeviceRule(False, "a")], dev_type, 1, 3, "r")
