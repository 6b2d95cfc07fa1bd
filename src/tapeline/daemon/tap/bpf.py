"""`tap.filter` compiled to a classic BPF program for the kernel (SO_ATTACH_FILTER).

The expression is tcpdump's language, compiled by libpcap itself (`pcap_compile` on a dead
Ethernet handle, through ctypes): the admin's filter means exactly what it means to tcpdump, and
no filter compiler of our own can disagree with it.

Nothing may be filtered away that the tap needs, so the admin's expression is widened with what a
port- or protocol-based filter would silently drop:

* IP fragments after the first carry no UDP or TCP header, so `udp port 5060` would keep the first
  piece of a large INVITE and drop the rest; every IPv4 fragment (MF set or an offset) and every
  IPv6 packet whose first extension header is a Fragment header passes.
* ERSPAN mirror traffic arrives inside GRE (IP protocol 47); the inner frames are filtered in
  userspace after decapsulation.
* One 802.1Q tag is taken off by the kernel before any socket filter sees the frame (its tag goes
  to the packet's metadata), so `udp` already matches single-tagged frames. Under QinQ the inner
  tag stays in the frame; the `vlan and (...)` branch matches those. It comes last because
  libpcap's `vlan` shifts the offsets of everything after it in the expression.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import struct
from dataclasses import dataclass
from typing import Final

DLT_EN10MB: Final = 1
# The program's accept value is the snap length: frames on `lo` (MTU 65536) are longer than 65535
# bytes, and a smaller value would truncate them in the kernel. tcpdump uses the same default.
SNAPLEN: Final = 262144
BPF_MAXINSNS: Final = 4096  # the kernel refuses longer classic programs
PCAP_NETMASK_UNKNOWN: Final = 0xFFFFFFFF
_INSN: Final = struct.Struct("HBBI")  # struct sock_filter / struct bpf_insn, native order
KEPT_ALWAYS: Final = "ip[6:2] & 0x3fff != 0 or (ip6 and ip6[6] == 44) or ip proto 47"


class FilterError(ValueError):
    """libpcap rejected the expression (its own message says why), or libpcap is missing."""


class _BpfInsn(ctypes.Structure):
    _fields_ = (  # ctypes layout
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _BpfProgram(ctypes.Structure):
    _fields_ = (  # ctypes layout
        ("bf_len", ctypes.c_uint),
        ("bf_insns", ctypes.POINTER(_BpfInsn)),
    )


@dataclass(frozen=True, slots=True)
class BpfProgram:
    """A compiled filter: its instructions, packed as the kernel's `struct sock_filter` array."""

    expression: str
    instructions: bytes

    @property
    def length(self) -> int:
        """Number of instructions."""
        return len(self.instructions) // _INSN.size

    def matches_everything(self) -> bool:
        """Whether the program is one `ret #N` with N > 0 (an empty expression)."""
        if self.length != 1:
            return False
        code, _jt, _jf, k = _INSN.unpack(self.instructions)
        return bool(code == 0x06 and k > 0)  # noqa: PLR2004  # BPF_RET | BPF_K


def widened(expression: str) -> str:
    """The admin's expression with fragments, GRE and QinQ-tagged matches always passing."""
    expression = expression.strip()
    if not expression:
        return ""
    return f"({expression}) or {KEPT_ALWAYS} or (vlan and (({expression}) or {KEPT_ALWAYS}))"


@functools.cache
def _libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise FilterError(f"tap.filter needs libpcap ({name}): {exc}") from exc
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = (
        ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p, ctypes.c_int,
        ctypes.c_uint32,
    )  # fmt: skip
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
    lib.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgram),)
    lib.pcap_close.argtypes = (ctypes.c_void_p,)
    return lib


def compile_filter(expression: str) -> BpfProgram:
    """Compile `expression` (widened, see the module notes) for Ethernet frames.

    The expression is compiled on its own first, so an error names the admin's text and
    something like `udp) or (tcp` cannot change the meaning of the widening around it.

    Raises:
        FilterError: a syntax error or unknown name (libpcap's message), a program longer than
            the kernel takes, or no libpcap.
    """
    _compile(expression.strip())
    program = _compile(widened(expression))
    if program.length > BPF_MAXINSNS:
        raise FilterError(
            f"tap.filter {expression!r}: {program.length} BPF instructions, the kernel takes at "
            f"most {BPF_MAXINSNS}; simplify the expression"
        )
    return BpfProgram(expression=program.expression, instructions=program.instructions)


def _compile(full: str) -> BpfProgram:
    lib = _libpcap()
    handle = lib.pcap_open_dead(DLT_EN10MB, SNAPLEN)
    if not handle:
        raise FilterError("libpcap could not open a handle to compile tap.filter")
    program = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(program), full.encode(), 1,
                            PCAP_NETMASK_UNKNOWN) != 0:  # fmt: skip
            message = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
            raise FilterError(f"tap.filter {full!r}: {message}")
        try:
            instructions = b"".join(
                _INSN.pack(i.code, i.jt, i.jf, i.k)
                for i in (program.bf_insns[n] for n in range(program.bf_len))
            )
        finally:
            lib.pcap_freecode(ctypes.byref(program))
    finally:
        lib.pcap_close(handle)
    return BpfProgram(expression=full, instructions=instructions)
