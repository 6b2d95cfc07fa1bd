import pytest

from tapeline.proto.errors import SipParseError
from tapeline.proto.sip.multipart import parse_multipart
from tapeline.proto.sip.parser import parse_datagram
from tests.unit.proto.sip.samples import METADATA, MULTIPART_BODY, SDP, siprec_invite


def test_siprec_invite_body_splits_into_sdp_and_metadata() -> None:
    message = parse_datagram(siprec_invite())
    content_type = message.content_type
    assert content_type is not None
    assert content_type.boundary is not None
    sdp, metadata = parse_multipart(message.body, content_type.boundary)
    assert sdp.body == SDP
    assert sdp.content_type is not None
    assert sdp.content_type.media_type == "application/sdp"
    assert sdp.content_disposition is None
    assert metadata.body == METADATA
    assert metadata.content_type is not None
    assert metadata.content_type.media_type == "application/rs-metadata+xml"
    disposition = metadata.content_disposition
    assert disposition is not None
    assert disposition.disposition == "recording-session"
    assert disposition.params == ()


def test_preamble_epilogue_padding_and_part_headers() -> None:
    body = (
        b"This is a preamble.\r\n"
        b"--b1   \r\n"
        b"c: application/SDP\r\n"
        b"Content-ID: <sdp@src>\r\n"
        b"Content-Disposition: Session ;handling=optional\r\n"
        b"\r\n"
        b"v=0\r\n"
        b"--b1--  \r\n"
        b"epilogue\r\n--b1\r\nignored\r\n"
    )
    (part,) = parse_multipart(body, "b1")
    assert part.body == b"v=0"
    assert part.content_id == "<sdp@src>"
    assert part.content_type is not None
    assert part.content_type.media_type == "application/sdp"
    disposition = part.content_disposition
    assert disposition is not None
    assert (disposition.disposition, disposition.params) == ("session", (("handling", "optional"),))


def test_lf_only_and_missing_close_delimiter_rfc8068_bye() -> None:
    body = b"--foobar\nContent-Type: application/rs-metadata\n\n<recording/>\n\n"
    (part,) = parse_multipart(body, "foobar")
    assert part.body == b"<recording/>"
    assert part.headers.get("Content-Type") == "application/rs-metadata"


def test_part_without_headers_and_part_without_body() -> None:
    body = b"--x\r\n\r\nplain text\r\n--x\r\nContent-Type: text/plain\r\n--x\n\nthird\n--x--"
    first, second, third = parse_multipart(body, "x")
    assert (len(first.headers), first.body) == (0, b"plain text")
    assert first.content_type is None
    assert first.content_id is None
    assert (second.headers.get("Content-Type"), second.body) == ("text/plain", b"")
    assert (len(third.headers), third.body) == (0, b"third")


def test_empty_part_between_delimiters() -> None:
    (part,) = parse_multipart(b"--x\r\n--x--\r\n", "x")
    assert (len(part.headers), part.body) == (0, b"")


def test_boundary_text_inside_a_line_is_not_a_delimiter() -> None:
    body = b"--x\r\n\r\nsee --x here\r\n--x--"
    (part,) = parse_multipart(body, "x")
    assert part.body == b"see --x here"


def test_regex_characters_in_boundary_are_literal() -> None:
    (part,) = parse_multipart(b"--a.b+c\r\n\r\nbody\r\n--a.b+c--", "a.b+c")
    assert part.body == b"body"
    with pytest.raises(SipParseError, match=r"^Multipart body has no boundary delimiter$"):
        parse_multipart(b"--aXb+c\r\n\r\nbody", "a.b+c")


@pytest.mark.parametrize(
    ("body", "boundary", "message"),
    [
        (MULTIPART_BODY, "", "Invalid multipart boundary"),
        (MULTIPART_BODY, "b" * 71, "Invalid multipart boundary"),
        (b"no delimiters at all", "foobar", "Multipart body has no boundary delimiter"),
        (b"--foobar\r\nBad Header Line\r\n\r\nx", "foobar", "Malformed header line"),
        (b"--foobar\r\nX: \xff\r\n\r\nx", "foobar", "Multipart part headers are not valid UTF-8"),
    ],
)
def test_malformed_multipart_raises_exact_errors(body: bytes, boundary: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_multipart(body, boundary)
    assert str(info.value) == message
    assert info.value.status_hint == 400


def test_every_truncation_gives_parts_or_sip_parse_error() -> None:
    for cut in range(len(MULTIPART_BODY)):
        try:
            parts = parse_multipart(MULTIPART_BODY[:cut], "foobar")
        except SipParseError:
            continue
        assert len(parts) <= 2
