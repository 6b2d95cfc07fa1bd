"""The call tracker on synthetic frames: dialog ends, SDP routing rules, NAT, odd ports, junk."""

from __future__ import annotations

import base64
import struct

import pylibsrtp
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.daemon.tap.tracker import (
    CallEnded,
    CallPacket,
    CallStarted,
    CallTracker,
    OrphanEnded,
    Side,
    TapCall,
    TrackerEvent,
)
from tapeline.proto.net import PacketRecord, Sentinel, build_udp_frame

NS = 1_000_000_000
T0 = 1_700_000_000.0
A, B = "192.0.2.10", "198.51.100.20"  # caller and callee phones
NAT = "203.0.113.5"  # the address the callee's packets really come from/go to


def sdp(addr: str, port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def request(method: str, call_id: str, cseq: int, *, from_tag: str = "a1", body: str = "") -> bytes:
    to_tag = "" if method in {"INVITE", "CANCEL"} and cseq == 1 else ";tag=b1"
    if from_tag == "b1":
        from_h, to_h = "<sip:200@b>;tag=b1", "<sip:100@a>;tag=a1"
    else:
        from_h, to_h = "<sip:100@a>;tag=a1", f"<sip:200@b>{to_tag}"
    head = (
        f"{method} sip:200@b SIP/2.0\r\nVia: SIP/2.0/UDP {A}:5060;branch=z9hG4bK{cseq}{method}\r\n"
        f"From: {from_h}\r\nTo: {to_h}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        f"Max-Forwards: 70\r\n"
    )
    return _with_body(head, body)


def response(code: int, call_id: str, cseq: int, method: str = "INVITE", body: str = "") -> bytes:
    head = (
        f"SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP {A}:5060;branch=z9hG4bK{cseq}{method}\r\n"
        f"From: <sip:100@a>;tag=a1\r\nTo: <sip:200@b>;tag=b1\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
    )
    return _with_body(head, body)


def _with_body(head: str, body: str) -> bytes:
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()


def rtp(seq: int, ssrc: int = 1) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


class Feed:
    """Drives a tracker with UDP frames at given capture times; collects its events."""

    def __init__(self, tracker: CallTracker | None = None) -> None:
        self.tracker = tracker or CallTracker()
        self.events: list[TrackerEvent] = []

    def udp(self, t: float, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
        frame = build_udp_frame(src[0], dst[0], src[1], dst[1], payload)
        record = PacketRecord(
            ts_ns=round((T0 + t) * NS), linktype=1, data=frame, orig_len=len(frame)
        )
        self.tracker.receive_record(record)
        self._drain()

    def timer(self, t: float) -> None:
        self.tracker.handle_timer(T0 + t)
        self._drain()

    def flush(self) -> None:
        self.tracker.flush()
        self._drain()

    def _drain(self) -> None:
        while not isinstance(event := self.tracker.next_event(), Sentinel):
            self.events.append(event)

    def ended(self) -> list[TapCall]:
        return [e.call for e in self.events if isinstance(e, CallEnded)]


def answered_call(feed: Feed, call_id: str = "c1", callee_media: str = B) -> None:
    feed.udp(0.0, (A, 5060), (B, 5060), request("INVITE", call_id, 1, body=sdp(A, 4000)))
    feed.udp(0.1, (B, 5060), (A, 5060), response(180, call_id, 1))
    feed.udp(0.2, (B, 5060), (A, 5060), response(200, call_id, 1, body=sdp(callee_media, 6000)))
    feed.udp(0.3, (A, 5060), (B, 5060), request("ACK", call_id, 1))


def test_bye_ends_the_call_after_linger_with_both_directions_routed() -> None:
    feed = Feed()
    answered_call(feed)
    for i in range(10):
        feed.udp(1 + i * 0.02, (A, 4000), (B, 6000), rtp(i, 1))
        feed.udp(1 + i * 0.02, (B, 6000), (A, 4000), rtp(i, 2))
    feed.udp(2.0, (B, 5060), (A, 5060), request("BYE", "c1", 2, from_tag="b1"))
    feed.udp(2.01, (A, 4000), (B, 6000), rtp(10, 1))  # in flight when the BYE was sent
    assert feed.ended() == []
    feed.timer(5.0)
    (call,) = feed.ended()
    assert call.end_reason == "bye"
    assert call.ended == T0 + 2.0
    assert call.rtp_packets == {Side.CALLER: 11, Side.CALLEE: 10}
    assert call.rules == {Side.CALLER: "sdp", Side.CALLEE: "sdp"}
    assert isinstance(feed.events[0], CallStarted)
    journaled = [e for e in feed.events if isinstance(e, CallPacket)]
    assert len(journaled) == 5 + 21  # INVITE 180 200 ACK BYE, and every RTP packet


def test_symmetric_nat_source_and_port_rules_are_recorded() -> None:
    feed = Feed()
    answered_call(feed)
    # The callee sits behind NAT: what it sends leaves from NAT:7000, not its SDP address, but
    # goes to the caller's SDP address (rule sdp). The caller's media reaches port 6000 on the NAT
    # address from a relay nobody announced: matched by port only.
    feed.udp(1.0, (NAT, 7000), (A, 4000), rtp(0, 2))
    feed.udp(1.0, ("192.0.2.99", 5555), (NAT, 6000), rtp(0, 1))
    call = next(e.call for e in feed.events if isinstance(e, CallStarted))
    assert call.rules == {Side.CALLEE: "sdp", Side.CALLER: "port"}
    feed2 = Feed()
    answered_call(feed2, "c2")
    feed2.udp(1.0, (B, 6000), (NAT, 9999), rtp(0, 2))  # the caller is NAT'd: its address differs
    call2 = next(e.call for e in feed2.events if isinstance(e, CallStarted))
    assert call2.rules == {Side.CALLEE: "symmetric"}
    assert call2.rtp_packets[Side.CALLEE] == 1


def test_cancel_rejection_and_unanswered() -> None:
    feed = Feed()
    feed.udp(0.0, (A, 5060), (B, 5060), request("INVITE", "cx", 1, body=sdp(A, 4000)))
    feed.udp(1.0, (A, 5060), (B, 5060), request("CANCEL", "cx", 1))
    feed.udp(1.1, (B, 5060), (A, 5060), response(487, "cx", 1))
    feed.udp(2.0, (A, 5060), (B, 5060), request("INVITE", "rj", 1, body=sdp(A, 4002)))
    feed.udp(2.1, (B, 5060), (A, 5060), response(486, "rj", 1))
    feed.udp(3.0, (A, 5060), (B, 5060), request("INVITE", "open", 1, body=sdp(A, 4004)))
    feed.timer(10.0)
    feed.flush()
    by_id = {c.call_id: c for c in feed.ended()}
    assert by_id["cx"].end_reason == "cancel"
    assert by_id["cx"].final_status == 487
    assert by_id["rj"].end_reason == "rejected_486"
    assert by_id["open"].end_reason == "capture_ended"
    assert all(c.answered is None for c in by_id.values())


def test_media_timeout_ends_a_silent_call() -> None:
    feed = Feed(CallTracker(media_timeout=30.0))
    answered_call(feed)
    feed.udp(1.0, (A, 4000), (B, 6000), rtp(0))
    feed.timer(20.0)
    assert feed.ended() == []
    feed.timer(31.5)
    (call,) = feed.ended()
    assert call.end_reason == "media_timeout"
    assert call.ended == T0 + 1.0


def test_a_ringing_call_outlives_the_media_timeout_until_timer_c() -> None:
    feed = Feed(CallTracker(media_timeout=30.0))
    feed.udp(0.0, (A, 5060), (B, 5060), request("INVITE", "ring", 1, body=sdp(A, 4000)))
    feed.udp(0.1, (B, 5060), (A, 5060), response(180, "ring", 1))
    feed.timer(120.0)
    assert feed.ended() == []
    feed.timer(181.0)
    (call,) = feed.ended()
    assert (call.end_reason, call.answered) == ("media_timeout", None)


def test_reloaded_lines_apply_to_calls_that_start_afterwards() -> None:
    feed = Feed()
    answered_call(feed, "before")
    feed.tracker.is_line = lambda uri: uri.startswith("sip:200@")
    answered_call(feed, "after")
    feed.flush()
    directions = {c.call_id: (c.direction, c.employee) for c in feed.ended()}
    assert directions == {"before": ("unknown", Side.CALLER), "after": ("inbound", Side.CALLEE)}


def test_reinvite_moves_media_to_a_new_port() -> None:
    feed = Feed()
    answered_call(feed)
    feed.udp(1.0, (B, 6000), (A, 4000), rtp(0, 2))
    feed.udp(
        2.0, (B, 5060), (A, 5060), request("INVITE", "c1", 7, from_tag="b1", body=sdp(B, 6100))
    )
    feed.udp(3.0, (A, 4000), (B, 6100), rtp(1, 1))
    feed.flush()
    (call,) = feed.ended()
    assert call.rtp_packets == {Side.CALLER: 1, Side.CALLEE: 1}
    assert call.answered == T0 + 0.2  # the re-INVITE did not restart the call


def test_sip_on_an_unconfigured_port_is_found_by_its_start_line() -> None:
    feed = Feed()
    feed.udp(0.0, (A, 6060), (B, 6060), request("INVITE", "odd", 1, body=sdp(A, 4000)))
    feed.flush()
    assert [c.call_id for c in feed.ended()] == ["odd"]


def test_register_and_stray_rtp_open_no_call() -> None:
    feed = Feed()
    feed.udp(0.0, (A, 5060), (B, 5060), request("REGISTER", "reg", 1))
    feed.udp(0.1, (A, 4000), (B, 6000), rtp(0))
    feed.udp(0.2, (A, 53), (B, 53), b"\x12\x34 a DNS query, not RTP")
    feed.flush()
    assert feed.events == []  # one RTP packet is below orphan_min_packets: counted, not filed
    counters = feed.tracker.counters
    assert (counters.orphan_flows, counters.orphans_ignored, counters.unmatched_udp) == (1, 1, 1)


def test_unsignalled_rtp_becomes_an_orphan_after_the_timeout_and_respects_the_bound() -> None:
    feed = Feed(CallTracker(media_timeout=5.0, orphan_min_packets=3, max_orphans=1))
    for i in range(4):
        feed.udp(i * 0.02, (A, 4000), (B, 6000), rtp(i))
    feed.udp(0.1, (A, 4002), (B, 6002), rtp(0, 9))  # a second flow, over the bound of one
    feed.timer(3.0)
    assert feed.events == []
    feed.timer(6.0)
    (event,) = feed.events
    assert isinstance(event, OrphanEnded)
    assert (event.flow.dport, event.flow.rtp_packets) == (6000, 4)
    assert feed.tracker.counters.orphans_over_limit == 1


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_datagrams_on_sip_and_rtp_ports_never_raise(payloads: list[bytes]) -> None:
    feed = Feed()
    answered_call(feed)
    for i, payload in enumerate(payloads):
        port = (5060, 4000, 6000)[i % 3]
        feed.udp(1 + i * 0.01, (B, 6000), (A, port), payload)
        feed.udp(1 + i * 0.01, (A, 5060), (B, 5060), b"INVITE " + payload)
    feed.flush()
    assert any(c.call_id == "c1" for c in feed.ended())


def _srtp_sender(key: bytes) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    return pylibsrtp.Session(policy=policy)


def test_srtp_is_decrypted_with_each_sides_sdes_key_from_its_sdp() -> None:
    caller_key, callee_key = bytes(range(30)), bytes(range(100, 130))

    def secure(addr: str, port: int, key: bytes) -> str:
        inline = base64.b64encode(key).decode()
        return sdp(addr, port).replace("RTP/AVP", "RTP/SAVP") + (
            f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n"
        )

    feed = Feed()
    feed.udp(
        0.0, (A, 5060), (B, 5060), request("INVITE", "s1", 1, body=secure(A, 4000, caller_key))
    )
    feed.udp(0.2, (B, 5060), (A, 5060), response(200, "s1", 1, body=secure(B, 6000, callee_key)))
    caller, callee = _srtp_sender(caller_key), _srtp_sender(callee_key)
    loud = b"\x80" * 160  # the loudest μ-law code: decrypted audio is a constant full scale
    for i in range(20):
        plain = [struct.pack("!BBHII", 0x80, 0, i, i * 160, ssrc) + loud for ssrc in (1, 2)]
        feed.udp(1 + i * 0.02, (A, 4000), (B, 6000), caller.protect(plain[0]))
        feed.udp(1 + i * 0.02, (B, 6000), (A, 4000), callee.protect(plain[1]))
    feed.flush()
    (call,) = feed.ended()
    result = call.media.finish(end=call.last_seen + 0.02)
    for quality in result.quality:
        assert (quality.received, quality.srtp_auth_failures, quality.undecodable) == (20, 0, 0)
    for channel in (0, 1):
        heard = result.stereo[:, channel][result.stereo[:, channel] != 0]
        assert len(heard) == 20 * 160
        assert set(heard.tolist()) == {32124}  # μ-law 0x80, as sox decodes it too


def test_refer_keeps_the_transfer_target() -> None:
    feed = Feed()
    answered_call(feed)
    refer = request("REFER", "c1", 3, from_tag="b1").replace(
        b"Max-Forwards: 70\r\n",
        b"Max-Forwards: 70\r\nRefer-To: <sip:300@b>\r\nReferred-By: <sip:200@b>\r\n",
    )
    feed.udp(1.0, (B, 5060), (A, 5060), refer)
    feed.flush()
    (call,) = feed.ended()
    assert call.transfers == [
        {"by": "callee", "refer_to": "<sip:300@b>", "referred_by": "<sip:200@b>"}
    ]


def test_a_port_two_calls_announced_goes_to_the_call_still_waiting_for_media() -> None:
    relay = "192.0.2.200"  # the SBC's media relay: neither its address nor ports were announced
    feed = Feed()
    # Two callees behind a NAT that keeps the ports the phones announced: both calls announce
    # port 6000, on different inside addresses, and the media reaches the NAT's address.
    answered_call(feed, "first", callee_media="10.0.0.5")
    feed.udp(1.0, (relay, 30000), (NAT, 6000), rtp(0, 1))  # one owner yet: rule port
    answered_call(feed, "second", callee_media="10.0.0.6")
    feed.udp(2.5, (relay, 30000), (NAT, 6000), rtp(1, 1))  # the first call's flow, learned
    feed.udp(2.5, (relay, 30002), (NAT, 6000), rtp(0, 3))  # same destination: first call
    feed.flush()
    calls = {c.call_id: c for c in feed.ended()}
    assert calls["first"].rules[Side.CALLER] == "port"
    assert calls["first"].rtp_packets[Side.CALLER] == 3  # the learned destination takes both
    assert Side.CALLER not in calls["second"].rules


def test_a_new_flow_to_a_shared_port_goes_to_the_call_waiting_for_it() -> None:
    relay = "192.0.2.200"
    feed = Feed()
    answered_call(feed, "first", callee_media="10.0.0.5")
    feed.udp(1.0, (relay, 30000), (NAT, 6000), rtp(0, 1))
    answered_call(feed, "second", callee_media="10.0.0.6")
    # The NAT gives the second phone's flow another public address, same port.
    feed.udp(2.5, (relay, 30002), ("203.0.113.6", 6000), rtp(0, 3))
    feed.udp(2.52, (relay, 30002), ("203.0.113.6", 6000), rtp(1, 3))
    feed.flush()
    calls = {c.call_id: c for c in feed.ended()}
    assert calls["first"].rtp_packets[Side.CALLER] == 1
    assert calls["second"].rules[Side.CALLER] == "timing"
    assert calls["second"].rtp_packets[Side.CALLER] == 2


def test_a_port_two_waiting_calls_announced_is_never_guessed() -> None:
    relay = "192.0.2.200"
    feed = Feed()
    answered_call(feed, "first", callee_media="10.0.0.5")
    answered_call(feed, "second", callee_media="10.0.0.6")
    for i in range(3):
        feed.udp(1.0 + i * 0.02, (relay, 30000), (NAT, 6000), rtp(i, 1))
    feed.flush()
    assert all(c.rtp_packets[Side.CALLER] == 0 for c in feed.ended())
    assert feed.tracker.counters.orphan_flows == 1
