import pytest

from tapeline.proto.errors import ProtocolViolation, SipParseError
from tapeline.proto.sip.framing import CONNECTION_CLOSED, NEED_DATA, FramerEvent, SipFramer
from tapeline.proto.sip.message import SipMessage, SipRequest
from tapeline.proto.sip.parser import parse_datagram
from tests.unit.proto.sip.samples import MULTIPART_BODY, request, siprec_invite

INVITE = siprec_invite(transport="TCP")
BYE = request("BYE", cseq=2, to_tag="srs1")


def drain(framer: SipFramer) -> list[SipMessage | FramerEvent]:
    events: list[SipMessage | FramerEvent] = []
    while True:
        event = framer.next_event()
        events.append(event)
        if isinstance(event, FramerEvent):
            return events


def test_whole_stream_gives_both_messages_then_need_data() -> None:
    framer = SipFramer()
    framer.receive_data(INVITE + BYE)
    first, second, end = drain(framer)
    assert first == parse_datagram(INVITE)
    assert second == parse_datagram(BYE)
    assert end is NEED_DATA
    assert isinstance(first, SipRequest)
    assert first.body == MULTIPART_BODY


def test_one_byte_at_a_time() -> None:
    framer = SipFramer()
    messages: list[SipMessage] = []
    for byte in INVITE + BYE:
        framer.receive_data(bytes([byte]))
        while (event := framer.next_event()) is not NEED_DATA:
            assert not isinstance(event, FramerEvent)
            messages.append(event)
    assert [m.raw for m in messages] == [INVITE, BYE]
    framer.receive_data(b"")
    assert framer.next_event() is CONNECTION_CLOSED


def test_trailing_bytes_are_left_unconsumed() -> None:
    framer = SipFramer()
    framer.receive_data(INVITE + BYE[:40])
    message, end = drain(framer)
    assert not isinstance(message, FramerEvent)
    assert message.raw == INVITE
    assert end is NEED_DATA
    assert framer.trailing_data == BYE[:40]


def test_crlf_keepalives_between_messages_are_skipped() -> None:
    framer = SipFramer()
    framer.receive_data(b"\r\n\r\n" + BYE + b"\r\n" + b"\r\n\r\n" + BYE)
    first, second, end = drain(framer)
    assert not isinstance(first, FramerEvent)
    assert not isinstance(second, FramerEvent)
    assert first.raw == BYE
    assert second.raw == BYE
    assert end is NEED_DATA
    assert framer.trailing_data == b""


def test_keepalive_split_across_reads_does_not_hide_the_next_head() -> None:
    framer = SipFramer()
    for chunk in (b"\r", b"\n\r", b"\n", BYE[:10], BYE[10:]):
        framer.receive_data(chunk)
    (message, _) = drain(framer)
    assert not isinstance(message, FramerEvent)
    assert message.raw == BYE


def test_clean_eof_only_keepalives() -> None:
    framer = SipFramer()
    framer.receive_data(b"\r\n\r\n")
    framer.receive_data(b"")
    assert framer.next_event() is CONNECTION_CLOSED


def test_eof_inside_a_message_is_an_error() -> None:
    framer = SipFramer()
    framer.receive_data(BYE[:-1])
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"")
    with pytest.raises(SipParseError, match=r"^Connection closed inside a message$") as info:
        framer.next_event()
    assert info.value.status_hint == 400


def test_data_after_eof_is_a_protocol_violation() -> None:
    framer = SipFramer()
    framer.receive_data(b"")
    with pytest.raises(ProtocolViolation, match=r"^receive_data called after EOF$"):
        framer.receive_data(b"x")


def test_missing_content_length_on_a_stream_is_400() -> None:
    framer = SipFramer()
    framer.receive_data(BYE.replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(SipParseError) as info:
        framer.next_event()
    assert str(info.value) == "Content-Length is mandatory on stream transports"
    assert info.value.status_hint == 400


def test_errors_are_terminal() -> None:
    framer = SipFramer()
    framer.receive_data(b"garbage\r\n\r\n" + BYE)
    with pytest.raises(SipParseError, match=r"^Malformed start line$"):
        framer.next_event()
    with pytest.raises(ProtocolViolation, match=r"^framer is unusable after an error$"):
        framer.next_event()


def test_oversized_head_is_513_before_the_head_ends() -> None:
    framer = SipFramer(max_message_size=100)
    framer.receive_data(INVITE[:101])
    with pytest.raises(SipParseError) as info:
        framer.next_event()
    assert str(info.value) == "Message head exceeds max_message_size"
    assert info.value.status_hint == 513


def test_head_within_bound_waits() -> None:
    framer = SipFramer(max_message_size=100)
    framer.receive_data(INVITE[:100])
    assert framer.next_event() is NEED_DATA


def test_content_length_beyond_bound_is_513() -> None:
    framer = SipFramer(max_message_size=len(INVITE) - 1)
    framer.receive_data(INVITE[: len(INVITE) - len(MULTIPART_BODY)])
    with pytest.raises(SipParseError) as info:
        framer.next_event()
    assert str(info.value) == "Content-Length exceeds max_message_size"
    assert info.value.status_hint == 513


def test_message_exactly_at_the_bound_is_accepted() -> None:
    framer = SipFramer(max_message_size=len(INVITE))
    framer.receive_data(INVITE)
    message = framer.next_event()
    assert not isinstance(message, FramerEvent)
    assert message.raw == INVITE


@pytest.mark.parametrize("cut", [1, 7, 64, 333, len(INVITE) - 1])
def test_split_at_any_point_gives_the_same_message(cut: int) -> None:
    framer = SipFramer()
    framer.receive_data(INVITE[:cut])
    assert framer.next_event() is NEED_DATA
    framer.receive_data(INVITE[cut:])
    message = framer.next_event()
    assert message == parse_datagram(INVITE)
