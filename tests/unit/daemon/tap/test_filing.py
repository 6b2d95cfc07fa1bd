"""A tapped call becomes the SIPREC record shape: parties from [[lines]], channels, failures."""

from __future__ import annotations

from tapeline.config import Config, Line
from tapeline.daemon.tap.filing import LineBook, build_interaction, uri_user
from tapeline.daemon.tap.tracker import CallTracker, Side, TapCall
from tests.unit.daemon.tap.test_tracker import A, B, Feed, request, response, rtp, sdp


def _invite(caller: str, callee: str, body: str) -> bytes:
    text = request("INVITE", "f1", 1, body=body).decode()
    text = text.replace("<sip:100@a>", f"<sip:{caller}@a>").replace(
        "<sip:200@b>", f"<sip:{callee}@b>"
    )
    return text.encode()


def _call(config: Config, caller: str, callee: str, *, media: bool) -> TapCall:
    book = LineBook(config)
    feed = Feed(CallTracker(is_line=book.is_line))
    feed.udp(0.0, (A, 5060), (B, 5060), _invite(caller, callee, sdp(A, 4000)))
    feed.udp(0.2, (B, 5060), (A, 5060), response(200, "f1", 1, body=sdp(B, 6000)))
    if media:
        for i in range(5):
            feed.udp(0.5 + i * 0.02, (A, 4000), (B, 6000), rtp(i, 1))
    feed.flush()
    (call,) = feed.ended()
    return call


def _with_extension(config: Config) -> Config:
    line = Line(number="+442071230002", owner="Bob Sales", team="equities", extensions=["2002"])
    return config.model_copy(update={"lines": [config.lines[0], line]})


def test_uri_user() -> None:
    assert uri_user("sip:+442071230001@pbx;user=phone") == "+442071230001"
    assert uri_user("tel:+447700900123") == "+447700900123"


def test_inbound_call_to_an_extension_maps_the_line_and_channels(config: Config) -> None:
    config = _with_extension(config)
    call = _call(config, "07700900123", "2002", media=True)
    assert call.direction == "inbound"
    assert call.employee is Side.CALLEE
    assert call.channel_of(Side.CALLER) == 1
    result = call.media.finish(end=call.last_seen)
    new = build_interaction(call, result, book=LineBook(config), config=config, incomplete=False)
    assert new.source_path == "tap"
    assert new.channel == "voice"
    assert new.kind == "call"
    assert new.line_number == "+442071230002"
    assert new.counterparty == "+447700900123"  # national number, normalised in GB
    assert new.recording is not None
    assert [s.channel for s in new.streams] == [1]
    assert new.streams[0].quality["rtp_packets"] == 5
    assert not new.incomplete


def test_no_media_is_a_capture_failure_and_kernel_drops_mark_incomplete(config: Config) -> None:
    call = _call(config, "+442071230001", "+447700900999", media=False)
    assert call.direction == "outbound"
    result = call.media.finish(end=call.last_seen)
    book = LineBook(config)
    new = build_interaction(call, result, book=book, config=config, incomplete=False)
    assert new.kind == "capture_failure"
    assert new.outcome == "no_rtp"
    dropped = build_interaction(
        call, result, book=book, config=config, incomplete=False, kernel_drops=3
    )
    assert dropped.incomplete
    assert dropped.tags == ["kernel_drops"]
    assert dropped.details["kernel_drops"] == 3
