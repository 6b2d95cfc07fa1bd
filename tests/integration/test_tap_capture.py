"""The capture socket against the real kernel: `tap.filter` as BPF, the TPACKET_V3 ring, drops.

Each check runs in a network namespace this test creates, with a veth pair: frames written by hand
are sent out of one end with a raw AF_PACKET socket and read at the other end by `PacketSocket`
(kernel filter attached, ring or `recvfrom`). What comes through is compared with what was sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tapeline.daemon.tap.bpf import FilterError, compile_filter, widened
from tests.conftest import require_tool

pytestmark = pytest.mark.slow

# Runs inside the namespace; prints {"name": seen?} per frame and the counters.
PROBE = r"""
import json, socket, sys, time
from tapeline.daemon.tap.bpf import compile_filter
from tapeline.daemon.tap.capture import PacketSocket
from tests.unit.proto.net.builders import ether, ipv4, ipv6, ipv6_fragment, udp

expression, use_ring, repeat = sys.argv[1], sys.argv[2] == "ring", int(sys.argv[3])

def tail(name):  # every frame ends with its own name: how a received frame is recognised
    return name.encode().rjust(16, b"_")

frames = {
    "sip": ether(0x0800, ipv4(udp(b"OPTIONS sip:x SIP/2.0\r\n\r\n" + tail("sip"), dport=5060))),
    "other_port": ether(0x0800, ipv4(udp(tail("other_port"), sport=40001, dport=40000))),
    "later_fragment": ether(0x0800, ipv4(b"rest" + tail("later_fragment"), proto=17,
                                         offset=1480)),
    "ipv6_fragment": ether(0x86DD, ipv6(ipv6_fragment(b"rest" + tail("ipv6_fragment"),
                                                      offset=1448), next_header=44)),
    "gre": ether(0x0800, ipv4(b"\x00\x00\x88\xbe" + b"\x00" * 40 + tail("gre"), proto=47)),
    "icmp": ether(0x0800, ipv4(b"\x08\x00\x00\x00" + tail("icmp"), proto=1)),
    "vlan_sip": ether(0x0800, ipv4(udp(tail("vlan_sip"), dport=5060)), vlans=(10,)),
    "qinq_sip": ether(0x0800, ipv4(udp(tail("qinq_sip"), dport=5060)), vlans=(100, 10),
                      tpid=0x88A8),
    "qinq_other": ether(0x0800, ipv4(udp(tail("qinq_other"), sport=40001, dport=40000)),
                        vlans=(100, 10), tpid=0x88A8),
}
bpf = compile_filter(expression) if expression else None
receiver = PacketSocket("vB", buffer_bytes=4 << 20, bpf=bpf, ring=use_ring)
sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sender.bind(("vA", 0))
for _ in range(repeat):
    for data in frames.values():
        sender.send(data)
# Done when an end marker (it passes every filter here) comes out behind the frames. Should the
# ring have been full when it was sent (the overflow test), it was dropped: send another, at most
# once a second, until one is read.
marker = ether(0x0800, ipv4(udp(tail("end"), sport=40001, dport=5060)))
seen, markers, last_sent = [], 0, time.monotonic()
sender.send(marker)
deadline = last_sent + 30
while not markers:
    assert time.monotonic() < deadline, "no end marker came through"
    batch = receiver.read_batch(100000)
    markers = sum(r.data == marker for r in batch)
    seen += [r for r in batch if r.data != marker]
    if not batch:
        if time.monotonic() - last_sent >= 1.0:
            sender.send(marker)
            last_sent = time.monotonic()
        time.sleep(0.01)
receiver.read_statistics()
payloads = [r.data[-16:] for r in seen]
print(json.dumps({
    "ring": receiver.uses_ring,
    "seen": {name: sum(p == tail(name) for p in payloads) for name in frames},
    "stamped": all(abs(r.ts_ns / 1e9 - time.time()) < 60 for r in seen),
    "kernel_packets": receiver.counters.kernel_packets - markers,
    "kernel_drops": receiver.counters.kernel_drops,
    "packets": receiver.counters.packets - markers,
}))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    ip = require_tool("ip")
    name = f"tapeline-capture-{os.getpid()}"
    subprocess.run([ip, "netns", "add", name], check=True)
    try:
        for argv in (
            ["link", "add", "vA", "type", "veth", "peer", "name", "vB"],
            ["link", "set", "vA", "up"],
            ["link", "set", "vB", "up"],
        ):
            subprocess.run([ip, "netns", "exec", name, ip, *argv], check=True)
        # The namespace's own traffic (IPv6 router solicitations) must not reach the counts.
        subprocess.run([ip, "netns", "exec", name, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1"], check=True)  # fmt: skip
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], check=False)


def _probe(netns: str, expression: str, mode: str, repeat: int = 1) -> dict[str, object]:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, expression, mode, str(repeat)],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("mode", ["ring", "recv"])
def test_a_port_filter_keeps_fragments_gre_and_tagged_matches_and_drops_the_rest(
    netns: str, mode: str
) -> None:
    result = _probe(netns, "udp port 5060", mode)
    assert result["ring"] is (mode == "ring")
    assert result["seen"] == {
        "sip": 1,
        "other_port": 0,  # filtered in the kernel: never copied to us
        "later_fragment": 1,  # no UDP header, but part of a datagram that may be SIP
        "ipv6_fragment": 1,
        "gre": 1,  # ERSPAN: filtered after decapsulation
        "icmp": 0,
        "vlan_sip": 1,  # the kernel moved the tag to metadata: plain `udp` matched
        "qinq_sip": 1,  # the inner tag stays in the frame: the `vlan and (...)` branch
        "qinq_other": 0,
    }
    assert result["packets"] == 6
    assert result["kernel_packets"] == 6  # counted after the filter: the rest cost nothing
    assert result["stamped"] is True


def test_no_filter_takes_every_frame(netns: str) -> None:
    result = _probe(netns, "", "ring")
    seen = result["seen"]
    assert isinstance(seen, dict)
    assert set(seen.values()) == {1}


def test_the_ring_reports_kernel_drops_when_it_overflows(netns: str) -> None:
    # 2 blocks of 1 MiB; ~30,000 frames sent before the first read cannot all fit.
    result = _probe(netns, "", "ring", repeat=4000)
    assert isinstance(result["kernel_drops"], int)
    assert isinstance(result["packets"], int)
    assert result["kernel_drops"] > 0
    assert result["kernel_packets"] == result["packets"] + result["kernel_drops"]


def test_a_bad_expression_is_refused_with_libpcaps_reason() -> None:
    with pytest.raises(FilterError, match="syntax error"):
        compile_filter("udp prot 5060")
    assert widened("") == ""
    assert compile_filter("").matches_everything()
    assert not compile_filter("udp").matches_everything()
    # Unbalanced on purpose: wrapped in the widening it would compile, so it is checked alone.
    with pytest.raises(FilterError, match=r"'udp\) or \(tcp'.*syntax error"):
        compile_filter("udp) or (tcp")
    many_ports = " or ".join(f"udp port {port}" for port in range(2000, 2400))
    with pytest.raises(FilterError, match="the kernel takes at most 4096"):
        compile_filter(many_ports)
