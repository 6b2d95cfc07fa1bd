"""Forked INVITEs, a CANCEL crossing the answer, and calls whose SIP travels over TLS."""

from __future__ import annotations

import math
import os

from tapeline.config import Config
from tapeline.daemon.tap.filing import LineBook, build_interaction, build_orphan
from tapeline.daemon.tap.tracker import ENCRYPTED_ENTROPY, CallTracker, OrphanEnded, Side
from tapeline.proto.net import PacketRecord
from tests.unit.daemon.tap.test_tracker import NS, T0, Feed, _srtp_sender, rtp, sdp
from tests.unit.proto.net.builders import ether, ipv4, tcp

CALLER, PROXY = "192.0.2.10", "192.0.2.1"
DESK, MOBILE = "198.51.100.20", "198.51.100.30"  # the two phones the proxy forks to


def _sip(
    start: str,
    *,
    to_tag: str | None,
    cseq: str = "1 INVITE",
    body: str = "",
    branch: str = "b1",
    from_callee: bool = False,
) -> bytes:
    """A message of the dialog; `from_callee`: a request the phone `to_tag` sends (tags swap)."""
    caller, callee = "<sip:100@a>;tag=caller", f"<sip:200@b>{f';tag={to_tag}' if to_tag else ''}"
    from_h, to_h = (callee, caller) if from_callee else (caller, callee)
    head = (
        f"{start}\r\nVia: SIP/2.0/UDP {CALLER}:5060;branch=z9hG4bK{branch}\r\n"
        f"From: {from_h}\r\nTo: {to_h}\r\nCall-ID: fork-1\r\nCSeq: {cseq}\r\n"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()


def _invite(feed: Feed) -> None:
    feed.udp(
        0.0,
        (CALLER, 5060),
        (PROXY, 5060),
        _sip("INVITE sip:200@b SIP/2.0", to_tag=None, body=sdp(CALLER, 4000)),
    )


def _answer(feed: Feed, t: float, tag: str, phone: str, port: int) -> None:
    feed.udp(
        t, (PROXY, 5060), (CALLER, 5060), _sip("SIP/2.0 200 OK", to_tag=tag, body=sdp(phone, port))
    )
    feed.udp(
        t + 0.01,
        (CALLER, 5060),
        (PROXY, 5060),
        _sip("ACK sip:200@b SIP/2.0", to_tag=tag, cseq="1 ACK", branch=f"ack{tag}"),
    )


def _talk(feed: Feed, start: float, phone: str, port: int, packets: int) -> None:
    for i in range(packets):
        t = start + i * 0.02
        feed.udp(t, (CALLER, 4000), (phone, port), rtp(i, 1))
        feed.udp(t, (phone, port), (CALLER, 4000), rtp(i, 2))


def test_a_second_answer_from_another_fork_is_byed_and_the_first_dialog_is_recorded() -> None:
    feed = Feed()
    _invite(feed)
    feed.udp(0.1, (PROXY, 5060), (CALLER, 5060), _sip("SIP/2.0 180 Ringing", to_tag="desk"))
    feed.udp(0.1, (PROXY, 5060), (CALLER, 5060), _sip("SIP/2.0 180 Ringing", to_tag="mobile"))
    _answer(feed, 1.0, "mobile", MOBILE, 7000)
    _answer(feed, 1.05, "desk", DESK, 6000)  # both picked up: RFC 3261 §13.2.2.4
    # The caller hangs up on the desk phone's late answer at once ...
    feed.udp(
        1.1,
        (CALLER, 5060),
        (PROXY, 5060),
        _sip("BYE sip:200@b SIP/2.0", to_tag="desk", cseq="2 BYE", branch="byedesk"),
    )
    _talk(feed, 1.2, MOBILE, 7000, 50)  # ... and talks to the mobile for a second
    _talk(feed, 1.2, DESK, 6000, 5)  # the desk phone's stray packets before it stopped
    assert feed.ended() == []  # the desk BYE did not end the call
    feed.udp(
        2.5,
        (PROXY, 5060),
        (CALLER, 5060),
        _sip(
            "BYE sip:100@a SIP/2.0",
            to_tag="mobile",
            cseq="1 BYE",
            branch="byemob",
            from_callee=True,
        ),
    )
    feed.timer(10.0)
    (call,) = feed.ended()
    assert call.end_reason == "bye"
    assert call.ended == T0 + 2.5
    assert call.dialog_tag == "mobile"
    assert call.forks == {
        "desk": {"responses": [180, 200], "ended": "bye"},
        "mobile": {"responses": [180, 200]},
    }
    # Only the recorded dialog's media: the desk phone's SDP never steered routing.
    assert call.rtp_packets == {Side.CALLER: 50, Side.CALLEE: 50}
    assert call.rules == {Side.CALLER: "sdp", Side.CALLEE: "sdp"}
    assert call.stray_packets == 10  # the desk phone's, both ways, kept out of the recording


def test_early_media_of_a_fork_that_does_not_answer_stops_at_the_answer() -> None:
    feed = Feed()
    _invite(feed)
    feed.udp(
        0.1,
        (PROXY, 5060),
        (CALLER, 5060),
        _sip("SIP/2.0 183 Progress", to_tag="mobile", body=sdp(MOBILE, 7000)),
    )
    for i in range(25):  # the carrier's ringback from the mobile branch: the caller heard it
        feed.udp(0.2 + i * 0.02, (MOBILE, 7000), (CALLER, 4000), rtp(i, 9))
    _answer(feed, 1.0, "desk", DESK, 6000)
    _talk(feed, 1.1, MOBILE, 7000, 3)  # late early media after the desk answered
    _talk(feed, 1.1, DESK, 6000, 20)
    feed.flush()
    (call,) = feed.ended()
    assert call.dialog_tag == "desk"
    assert call.rtp_packets == {Side.CALLER: 20, Side.CALLEE: 25 + 20}
    assert call.stray_packets == 6


def test_the_fork_branches_are_filed_with_the_call(config: Config) -> None:
    feed = Feed()
    _invite(feed)
    feed.udp(0.1, (PROXY, 5060), (CALLER, 5060), _sip("SIP/2.0 180 Ringing", to_tag="desk"))
    feed.udp(0.1, (PROXY, 5060), (CALLER, 5060), _sip("SIP/2.0 183 Progress", to_tag="mobile"))
    _answer(feed, 1.0, "desk", DESK, 6000)
    _talk(feed, 1.1, DESK, 6000, 10)
    feed.flush()
    (call,) = feed.ended()
    result = call.media.finish(end=call.last_seen)
    new = build_interaction(call, result, book=LineBook(config), config=config, incomplete=False)
    assert new.details["recorded_branch"] == "desk"
    assert new.details["stray_packets"] == 0
    assert new.details["forks"] == [
        {"tag": "desk", "responses": [180, 200]},
        {"tag": "mobile", "responses": [183]},
    ]


def test_an_unforked_call_files_no_fork_details(config: Config) -> None:
    feed = Feed()
    _invite(feed)
    _answer(feed, 1.0, "desk", DESK, 6000)
    _talk(feed, 1.1, DESK, 6000, 10)
    feed.flush()
    (call,) = feed.ended()
    result = call.media.finish(end=call.last_seen)
    new = build_interaction(call, result, book=LineBook(config), config=config, incomplete=False)
    assert "forks" not in new.details


def test_a_cancel_that_crosses_the_answer_does_not_end_the_call() -> None:
    feed = Feed()
    _invite(feed)
    feed.udp(0.1, (PROXY, 5060), (CALLER, 5060), _sip("SIP/2.0 180 Ringing", to_tag="desk"))
    feed.udp(
        1.0,
        (CALLER, 5060),
        (PROXY, 5060),
        _sip("CANCEL sip:200@b SIP/2.0", to_tag=None, cseq="1 CANCEL"),
    )
    _answer(feed, 1.001, "desk", DESK, 6000)  # the phone answered as the caller gave up
    _talk(feed, 1.1, DESK, 6000, 200)  # 4 s: longer than the linger after the CANCEL
    feed.timer(5.3)
    assert feed.ended() == []
    feed.udp(
        5.4,
        (CALLER, 5060),
        (PROXY, 5060),
        _sip("BYE sip:200@b SIP/2.0", to_tag="desk", cseq="2 BYE", branch="bye"),
    )
    feed.timer(10.0)
    (call,) = feed.ended()
    assert call.end_reason == "bye"
    assert call.answered == T0 + 1.001
    assert call.rtp_packets == {Side.CALLER: 200, Side.CALLEE: 200}


def test_a_cancel_after_the_answer_is_ignored_and_before_it_ends_the_call() -> None:
    feed = Feed()
    _invite(feed)
    _answer(feed, 1.0, "desk", DESK, 6000)
    feed.udp(
        1.5,
        (CALLER, 5060),
        (PROXY, 5060),
        _sip("CANCEL sip:200@b SIP/2.0", to_tag=None, cseq="1 CANCEL"),
    )
    _talk(feed, 1.6, DESK, 6000, 10)
    feed.flush()
    (call,) = feed.ended()
    assert call.end_reason == "capture_ended"
    unanswered = Feed()
    _invite(unanswered)
    unanswered.udp(
        1.0,
        (CALLER, 5060),
        (PROXY, 5060),
        _sip("CANCEL sip:200@b SIP/2.0", to_tag=None, cseq="1 CANCEL"),
    )
    unanswered.timer(5.0)
    (cancelled,) = unanswered.ended()
    assert cancelled.end_reason == "cancel"


SBC, PHONE = "203.0.113.9", "192.0.2.77"
# The first bytes of a TLS 1.2 ClientHello record: handshake (22), version 3.1, length.
CLIENT_HELLO = bytes([22, 3, 1, 0, 64, 1, 0, 0, 60, 3, 3]) + bytes(range(53))
SERVER_HELLO = bytes([22, 3, 3, 0, 42, 2, 0, 0, 38, 3, 3]) + bytes(range(37))


def _tcp(  # one segment, written out
    feed: Feed, t: float, src: tuple[str, int], dst: tuple[str, int], data: bytes, *, seq: int
) -> None:
    frame = ether(
        0x0800,
        ipv4(tcp(data, seq=seq, sport=src[1], dport=dst[1]), proto=6, src=src[0], dst=dst[0]),
    )
    feed.tracker.receive_record(
        PacketRecord(ts_ns=round((T0 + t) * NS), linktype=1, data=frame, orig_len=len(frame))
    )


def _tone_payload(i: int) -> bytes:
    # μ-law of a 440 Hz tone: speech-like skewed bytes, nowhere near ciphertext's entropy.
    samples = [int(8000 * math.sin(2 * math.pi * 440 * (i * 160 + n) / 8000)) for n in range(160)]
    return bytes(_ulaw(s) for s in samples)


def _ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = max(magnitude.bit_length() - 8, 0)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _rtp(seq: int, ssrc: int, payload: bytes) -> bytes:
    return (
        bytes([0x80, 0])
        + seq.to_bytes(2, "big")
        + (seq * 160).to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
        + payload
    )


def test_media_of_a_tls_signalled_call_is_kept_flagged_and_ciphertext_is_not_decoded(
    config: Config,
) -> None:
    feed = Feed(CallTracker(orphan_min_packets=10))
    _tcp(feed, 0.0, (PHONE, 40000), (SBC, 5061), CLIENT_HELLO, seq=1)
    _tcp(feed, 0.01, (SBC, 5061), (PHONE, 40000), SERVER_HELLO, seq=1)
    to_sbc, from_sbc = _srtp_sender(os.urandom(30)), _srtp_sender(os.urandom(30))
    for i in range(100):
        t = 0.5 + i * 0.02
        # One call with TLS signalling and plain RTP/AVP both ways ...
        feed.udp(t, (PHONE, 4000), (SBC, 6000), _rtp(i, 11, _tone_payload(i)))
        feed.udp(t, (SBC, 6000), (PHONE, 4000), _rtp(i, 12, _tone_payload(i + 7)))
        # ... and one with SRTP whose keys travelled inside the TLS (libsrtp, AES-CM/SHA1-80).
        feed.udp(t, (PHONE, 4002), (SBC, 6002), to_sbc.protect(_rtp(i, 21, _tone_payload(i))))
        feed.udp(t, (SBC, 6002), (PHONE, 4002), from_sbc.protect(_rtp(i, 22, _tone_payload(i))))
    feed.udp(0.5, (CALLER, 4000), (DESK, 6000), _rtp(0, 33, os.urandom(160)))  # unrelated
    feed.flush()
    assert feed.tracker.counters.tls_streams == 2
    ended = {e.flow.sport: e.flow for e in feed.events if isinstance(e, OrphanEnded)}
    assert set(ended) == {4000, 4002}  # one record per conversation; the stray packet is none
    plain, secret = ended[4000], ended[4002]
    assert [(f.sport, f.dport) for f in plain.flows] == [(4000, 6000), (6000, 4000)]
    for flow in plain.flows:
        assert flow.tls_signalling
        assert flow.entropy is not None
        assert flow.entropy < ENCRYPTED_ENTROPY
    assert all(f.encrypted for f in secret.flows)
    plain_record = build_orphan(plain, plain.media.finish(end=plain.last_seen), config=config)
    secret_record = build_orphan(secret, secret.media.finish(end=secret.last_seen), config=config)
    assert plain_record.outcome == secret_record.outcome == "tls_signalling"
    assert plain_record.tags == ["tls_signalling"]
    assert plain_record.recording is not None  # PCMU decoded: the call is kept from its media
    assert [(s.channel, s.ssrc) for s in plain_record.streams] == [(0, 11), (1, 12)]
    assert secret_record.tags == ["tls_signalling", "encrypted_media"]
    assert secret_record.recording is None  # noise is not filed as audio
    assert secret_record.details["media_encrypted"] is True
    assert [s.quality["rtp_packets"] for s in secret_record.streams] == [100, 100]


def test_a_pair_ends_when_both_directions_are_quiet() -> None:
    feed = Feed(CallTracker(orphan_min_packets=10, media_timeout=5.0))
    for i in range(50):
        feed.udp(i * 0.02, (PHONE, 4000), (SBC, 6000), _rtp(i, 11, _tone_payload(i)))
    for i in range(400):  # the far end keeps talking for 8 s after the phone went quiet
        feed.udp(i * 0.02, (SBC, 6000), (PHONE, 4000), _rtp(i, 12, _tone_payload(i)))
    feed.timer(7.0)  # the phone's direction has been quiet for 6 s, its partner for none
    assert [e for e in feed.events if isinstance(e, OrphanEnded)] == []
    feed.timer(14.0)
    (event,) = [e for e in feed.events if isinstance(e, OrphanEnded)]
    assert [f.rtp_packets for f in event.flow.flows] == [50, 400]


def test_unsignalled_plain_rtp_without_tls_is_an_ordinary_orphan(config: Config) -> None:
    feed = Feed(CallTracker(orphan_min_packets=10))
    for i in range(60):
        feed.udp(i * 0.02, (PHONE, 4000), (SBC, 6000), _rtp(i, 11, _tone_payload(i)))
    feed.flush()
    (flow,) = [e.flow for e in feed.events if isinstance(e, OrphanEnded)]
    assert not flow.tls_signalling
    assert not flow.encrypted
    record = build_orphan(flow, flow.media.finish(end=flow.last_seen), config=config)
    assert record.outcome == "no_signalling"
    assert record.tags == []
    assert record.recording is not None


def test_compressed_codecs_are_not_judged_by_entropy() -> None:
    # G.729 frames are as dense as ciphertext: judging them would drop real audio.
    feed = Feed(CallTracker(orphan_min_packets=10))
    for i in range(60):
        packet = bytes([0x80, 18]) + _rtp(i, 11, os.urandom(20))[2:]
        feed.udp(i * 0.02, (PHONE, 4000), (SBC, 6000), packet)
    feed.flush()
    (flow,) = [e.flow for e in feed.events if isinstance(e, OrphanEnded)]
    assert flow.entropy is None
    assert not flow.encrypted


def test_hold_and_a_codec_change_by_reinvite_keep_one_recording() -> None:
    feed = Feed()
    _invite(feed)
    _answer(feed, 0.5, "desk", DESK, 6000)
    for i in range(50):  # one second of PCMU: μ-law 0xFF is silence-adjacent +0
        feed.udp(1 + i * 0.02, (DESK, 6000), (CALLER, 4000), _rtp(i, 5, b"\x80" * 160))
    hold = sdp(DESK, 6000).replace("c=IN IP4 " + DESK, "c=IN IP4 0.0.0.0") + "a=sendonly\r\n"
    feed.udp(2.0, (PROXY, 5060), (CALLER, 5060),
             _sip("INVITE sip:100@a SIP/2.0", to_tag="desk", cseq="1 INVITE", body=hold,
                  branch="hold", from_callee=True))  # fmt: skip
    # The caller's 100 to the phone's re-INVITE: CSeq 1 of the phone, not the caller's INVITE.
    feed.udp(2.01, (CALLER, 5060), (PROXY, 5060),
             _sip("SIP/2.0 100 Trying", to_tag="desk", cseq="1 INVITE", branch="hold",
                  from_callee=True))  # fmt: skip
    pcma = sdp(DESK, 6000).replace("RTP/AVP 0", "RTP/AVP 8").replace("0 PCMU", "8 PCMA")
    feed.udp(4.0, (PROXY, 5060), (CALLER, 5060),
             _sip("INVITE sip:100@a SIP/2.0", to_tag="desk", cseq="2 INVITE", body=pcma,
                  branch="resume", from_callee=True))  # fmt: skip

    for i in range(50):  # one second of PCMA after the resume
        packet = bytes([0x80, 8]) + _rtp(50 + i, 5, b"\xd5" * 160)[2:]
        feed.udp(4.1 + i * 0.02, (DESK, 6000), (CALLER, 4000), packet)
    feed.flush()
    (call,) = feed.ended()
    assert call.end_reason == "capture_ended"  # neither re-INVITE ended or restarted it
    assert call.answered == T0 + 0.5
    assert call.rtp_packets[Side.CALLEE] == 100
    assert call.forks == {"desk": {"responses": [200]}}  # the phone's re-INVITE is no fork
    result = call.media.finish(end=call.last_seen)
    (quality,) = result.quality
    assert quality.undecodable == 0  # both codecs decoded
    channel = result.stereo[:, call.channel_of(Side.CALLEE)]
    second = 8000  # the timeline starts at the INVITE
    assert not channel[: second - 80].any()  # ringing: nothing heard
    assert set(channel[second + 80 : 2 * second - 80].tolist()) == {32124}  # μ-law 0x80 (sox)
    assert not channel[int(2.1 * second) : int(4.0 * second)].any()  # on hold: silence kept
    assert set(channel[int(4.2 * second) : int(5.0 * second)].tolist()) == {8}  # A-law 0xD5


def test_an_invite_retried_after_a_407_challenge_is_the_same_call() -> None:
    feed = Feed()
    _invite(feed)
    feed.udp(0.05, (PROXY, 5060), (CALLER, 5060),
             _sip("SIP/2.0 407 Proxy Authentication Required", to_tag="proxy"))  # fmt: skip
    feed.udp(0.06, (CALLER, 5060), (PROXY, 5060),
             _sip("ACK sip:200@b SIP/2.0", to_tag="proxy", cseq="1 ACK"))  # fmt: skip
    feed.udp(0.07, (CALLER, 5060), (PROXY, 5060),
             _sip("INVITE sip:200@b SIP/2.0", to_tag=None, cseq="2 INVITE", branch="b2",
                  body=sdp(CALLER, 4000)))  # fmt: skip
    feed.udp(0.5, (PROXY, 5060), (CALLER, 5060),
             _sip("SIP/2.0 200 OK", to_tag="desk", cseq="2 INVITE", branch="b2",
                  body=sdp(DESK, 6000)))  # fmt: skip
    _talk(feed, 1.0, DESK, 6000, 200)  # 4 s: far past the linger after the 407
    feed.udp(5.5, (CALLER, 5060), (PROXY, 5060),
             _sip("BYE sip:200@b SIP/2.0", to_tag="desk", cseq="3 BYE", branch="bye"))  # fmt: skip
    feed.timer(10.0)
    (call,) = feed.ended()
    assert (call.end_reason, call.final_status) == ("bye", 200)
    assert call.rtp_packets == {Side.CALLER: 200, Side.CALLEE: 200}
    assert call.forks == {"desk": {"responses": [200]}}


def test_a_rejection_without_a_retry_still_ends_the_call() -> None:
    feed = Feed()
    _invite(feed)
    feed.udp(0.05, (PROXY, 5060), (CALLER, 5060),
             _sip("SIP/2.0 407 Proxy Authentication Required", to_tag="proxy"))  # fmt: skip
    feed.timer(5.0)
    (call,) = feed.ended()
    assert (call.end_reason, call.final_status) == ("rejected_407", 407)
