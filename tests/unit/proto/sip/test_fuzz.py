"""Property tests: arbitrary or damaged input gives a value or `SipParseError`, nothing else."""

import contextlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import SipParseError
from tapeline.proto.sip.framing import NEED_DATA, FramerEvent, SipFramer
from tapeline.proto.sip.headers import (
    parse_content_type,
    parse_cseq,
    parse_header_lines,
    parse_name_addr,
    parse_via,
)
from tapeline.proto.sip.message import SipRequest
from tapeline.proto.sip.multipart import parse_multipart
from tapeline.proto.sip.parser import parse_datagram
from tests.unit.proto.sip.samples import MULTIPART_BODY, request, siprec_invite

INVITE = siprec_invite()


def use_views(data: bytes) -> None:
    """Parse and read every view; only SipParseError may escape."""
    with contextlib.suppress(SipParseError):
        message = parse_datagram(data, max_message_size=8192)
        _ = (message.call_id, message.cseq, message.vias, message.top_via)
        _ = (message.from_addr, message.to_addr, message.content_type)
        if isinstance(message, SipRequest):
            assert message.cseq.method == message.method


@settings(deadline=None)
@given(st.binary(max_size=4096))
@example(b"OPTIONS sip:a SIP/2.0\r\nl: " + b"9" * 5000 + b"\r\n\r\n")
def test_datagram_parser_raises_only_sip_parse_error(data: bytes) -> None:
    use_views(data)


@settings(deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(INVITE) - 1),
    replacement=st.binary(min_size=0, max_size=8),
    length=st.integers(min_value=0, max_value=8),
)
@example(position=INVITE.index(b"Content-Length: ") + 16, replacement=b"9" * 8, length=3)
def test_mutated_invite_gives_value_or_sip_parse_error(
    position: int, replacement: bytes, length: int
) -> None:
    use_views(INVITE[:position] + replacement + INVITE[position + length :])


@settings(deadline=None)
@given(st.text(max_size=200))
def test_header_views_raise_only_sip_parse_error(text: str) -> None:
    for view in (parse_via, parse_cseq, parse_name_addr, parse_content_type):
        with contextlib.suppress(SipParseError):
            view(text)
    with contextlib.suppress(SipParseError):
        parse_header_lines(text.splitlines())


@settings(deadline=None)
@given(st.binary(max_size=1024), st.sampled_from(["foobar", "x", "a.b+c"]))
def test_multipart_raises_only_sip_parse_error(body: bytes, boundary: str) -> None:
    with contextlib.suppress(SipParseError):
        parse_multipart(body, boundary)


@settings(deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(MULTIPART_BODY) - 1),
    replacement=st.binary(max_size=6),
)
def test_mutated_multipart_raises_only_sip_parse_error(position: int, replacement: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_multipart(
            MULTIPART_BODY[:position] + replacement + MULTIPART_BODY[position:], "foobar"
        )


@settings(deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=20))
def test_framer_on_arbitrary_chunks_raises_only_sip_parse_error(chunks: list[bytes]) -> None:
    framer = SipFramer(max_message_size=2048)
    with contextlib.suppress(SipParseError):
        for chunk in [*chunks, b""]:
            framer.receive_data(chunk)
            while not isinstance(framer.next_event(), FramerEvent):
                pass


@settings(deadline=None)
@given(st.data())
def test_framer_reassembles_any_split_of_valid_messages(data: st.DataObject) -> None:
    stream = INVITE.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/TCP") + b"\r\n\r\n" + request("BYE")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer = SipFramer()
    raws: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        if start == end:
            continue  # b"" would mean EOF
        framer.receive_data(stream[start:end])
        while (event := framer.next_event()) is not NEED_DATA:
            assert not isinstance(event, FramerEvent)
            raws.append(event.raw)
    assert raws == [INVITE.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/TCP"), request("BYE")]
