import pytest

from tapeline.proto.errors import SipParseError
from tapeline.proto.sip.headers import Headers
from tapeline.proto.sip.message import SipRequest, SipResponse
from tapeline.proto.sip.parser import parse_datagram, parse_head
from tests.unit.proto.sip.samples import MULTIPART_BODY, request, siprec_invite

RESPONSE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKnashds8;received=192.0.2.4\r\n"
    b"To: Bob <sip:bob@example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"\r\n"
)


def test_siprec_invite_parses_with_views() -> None:
    data = siprec_invite()
    message = parse_datagram(data)
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri, message.version) == (
        "INVITE",
        "sip:recorder@example.com",
        "SIP/2.0",
    )
    assert message.raw == data
    assert message.body == MULTIPART_BODY
    assert message.call_id == "d253c800-b0d1ea39-4a7dd-3f0e20a"
    assert message.cseq.number == 101
    assert message.top_via.branch == "z9hG4bKdf6b622b648d9"
    assert len(message.vias) == 1
    assert message.from_addr.tag == "35e195d2-947d-4585-946f-09839247"
    assert message.from_addr.display_name == "SRC"
    assert message.to_addr.tag is None
    content_type = message.content_type
    assert content_type is not None
    assert content_type.boundary == "foobar"
    assert message.headers.get("Session-ID") == (
        "ab30317f1a784dc48ff824d0d3715d86 ;remote=00000000000000000000000000000000"
    )
    assert message.headers.get_list("Accept") == (
        "application/sdp",
        "application/rs-metadata",
        "application/rs-metadata-request",
    )


def test_response_parses() -> None:
    message = parse_datagram(RESPONSE)
    assert isinstance(message, SipResponse)
    assert (message.status_code, message.reason) == (200, "OK")
    assert message.to_addr.tag == "a6c85cf"
    assert message.body == b""
    assert message.content_type is None


def test_response_with_empty_reason_phrase() -> None:
    message = parse_datagram(RESPONSE.replace(b"200 OK", b"486 "))
    assert isinstance(message, SipResponse)
    assert (message.status_code, message.reason) == (486, "")


def test_compact_headers_and_lf_only_line_endings() -> None:
    data = (
        b"OPTIONS sip:srs@example.com SIP/2.0\n"
        b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\n"
        b"f: <sip:sbc@example.com>;tag=1\n"
        b"t: <sip:srs@example.com>\n"
        b"i: opt-1\n"
        b"CSeq: 1 OPTIONS\n"
        b"l: 0\n"
        b"\n"
    )
    message = parse_datagram(data)
    assert message.call_id == "opt-1"
    assert message.body == b""


def test_leading_crlfs_are_ignored_and_not_kept_in_raw() -> None:
    data = request("OPTIONS")
    assert parse_datagram(b"\r\n\r\n" + data).raw == data


def test_udp_body_without_content_length_runs_to_end_of_datagram() -> None:
    data = request("MESSAGE", body=b"hi").replace(b"Content-Length: 2\r\n", b"")
    assert parse_datagram(data).body == b"hi"


def test_udp_body_is_cut_to_content_length() -> None:
    data = request("MESSAGE", body=b"hello") + b"trailing garbage"
    message = parse_datagram(data)
    assert message.body == b"hello"
    assert message.raw == request("MESSAGE", body=b"hello")


def test_repeated_equal_content_length_is_accepted() -> None:
    data = request("MESSAGE", body=b"hi").replace(b"\r\n\r\n", b"\r\nl: 2\r\n\r\n", 1)
    assert parse_datagram(data).body == b"hi"


@pytest.mark.parametrize(
    ("data", "message", "status"),
    [
        (b"", "Empty message", 400),
        (b"\r\n\r\n", "Empty message", 400),
        (request("OPTIONS")[:-2], "Message head is not terminated by an empty line", 400),
        (request("MESSAGE", body=b"hello")[:-1], "Body shorter than Content-Length", 400),
        (
            request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: x"),
            "Invalid Content-Length",
            400,
        ),
        (
            request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: -1"),
            "Invalid Content-Length",
            400,
        ),
        (
            request("OPTIONS").replace(b"\r\n\r\n", b"\r\nl: 1\r\n\r\n"),
            "Conflicting Content-Length headers",
            400,
        ),
        (
            request("OPTIONS").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),
            "Unsupported SIP version",
            505,
        ),
        (
            request("OPTIONS").replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1),
            "Malformed start line",
            400,
        ),
        (RESPONSE.replace(b"SIP/2.0 200", b"SIP/1.0 200"), "Unsupported SIP version", 505),
        (
            request("OPTIONS").replace(b"OPTIONS sip:", b"OPTIONS  sip:", 1),
            "Malformed start line",
            400,
        ),
        (b"GARBAGE\r\n\r\n", "Malformed start line", 400),
        (
            request("OPTIONS").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"),
            "CSeq method does not match request method",
            400,
        ),
        (
            request("OPTIONS").replace(b"Call-ID: a84b4c76e66710", b"Call-ID: "),
            "Empty Call-ID header",
            400,
        ),
        (
            request("OPTIONS").replace(b"SIP/2.0/UDP pc33", b"SIP/2.0 pc33"),
            "Malformed Via header",
            400,
        ),
        ("OPTIONS sip:ü SIP/2.0\r\n\r\n".encode("latin-1"), "Message head is not valid UTF-8", 400),
    ],
)
def test_malformed_datagrams_raise_exact_errors(data: bytes, message: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_datagram(data)
    assert str(info.value) == message
    assert info.value.status_hint == status


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_each_missing_mandatory_header_is_named(name: str) -> None:
    lines = request("OPTIONS").split(b"\r\n")
    data = b"\r\n".join(line for line in lines if not line.startswith(name.encode() + b":"))
    with pytest.raises(SipParseError) as info:
        parse_datagram(data)
    assert str(info.value) == f"Missing mandatory header: {name}"
    assert info.value.status_hint == 400


def test_empty_via_list_counts_as_missing() -> None:
    data = request("OPTIONS").replace(
        b"Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKnashds8", b"Via: ,"
    )
    with pytest.raises(SipParseError, match=r"^Missing mandatory header: Via$"):
        parse_datagram(data)


def test_oversized_datagram_is_513() -> None:
    data = request("MESSAGE", body=b"x" * 200)
    with pytest.raises(SipParseError) as info:
        parse_datagram(data, max_message_size=100)
    assert str(info.value) == "Message exceeds max_message_size"
    assert info.value.status_hint == 513


def test_every_truncation_of_a_valid_datagram_raises_sip_parse_error() -> None:
    data = siprec_invite()
    for cut in range(len(data)):
        with pytest.raises(SipParseError):
            parse_datagram(data[:cut])


def test_missing_header_view_on_a_hand_built_message_raises() -> None:
    bare = SipRequest(method="OPTIONS", uri="sip:a@b", headers=Headers())
    with pytest.raises(SipParseError, match=r"^Missing mandatory header: Call-ID$"):
        _ = bare.call_id


def test_parse_head_reports_content_length() -> None:
    head = request("MESSAGE", body=b"abc").split(b"\r\n\r\n")[0]
    message, length = parse_head(head)
    assert isinstance(message, SipRequest)
    assert message.body == b""
    assert length == 3
