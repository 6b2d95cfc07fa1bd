import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.sip.headers import Headers
from tapeline.proto.sip.message import SipRequest, SipResponse
from tapeline.proto.sip.parser import parse_datagram
from tapeline.proto.sip.serializer import build_request, build_response, serialize, stamp_via
from tests.unit.proto.sip.samples import request, siprec_invite


def invite() -> SipRequest:
    message = parse_datagram(siprec_invite())
    assert isinstance(message, SipRequest)
    return message


def test_200_copies_dialog_headers_adds_tag_contact_and_body() -> None:
    sdp = b"v=0\r\n"
    response = build_response(
        invite(),
        200,
        to_tag="srs-1",
        contact="<sip:srs@192.0.2.9>;+sip.srs",
        headers=[("Supported", "timer")],
        body=sdp,
        content_type="application/sdp",
    )
    assert response.raw == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP src.example.com:5060;branch=z9hG4bKdf6b622b648d9;rport\r\n"
        b'From: "SRC" <sip:2000@example.com>;tag=35e195d2-947d-4585-946f-09839247\r\n'
        b"To: <sip:recorder@example.com>;tag=srs-1\r\n"
        b"Call-ID: d253c800-b0d1ea39-4a7dd-3f0e20a\r\n"
        b"CSeq: 101 INVITE\r\n"
        b"Record-Route: <sip:proxy.example.com;lr>\r\n"
        b"Contact: <sip:srs@192.0.2.9>;+sip.srs\r\n"
        b"Supported: timer\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"v=0\r\n"
    )
    assert parse_datagram(response.raw) == response


def test_100_trying_gets_no_tag_and_no_record_route() -> None:
    response = build_response(invite(), 100, to_tag="srs-1")
    assert response.reason == "Trying"
    assert response.to_addr.tag is None
    assert "Record-Route" not in response.headers
    assert response.headers.get("Content-Length") == "0"


def test_existing_to_tag_is_kept_and_all_vias_copied_in_order() -> None:
    data = request("BYE", to_tag="mine").replace(
        b"Max-Forwards", b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\nMax-Forwards"
    )
    bye = parse_datagram(data)
    assert isinstance(bye, SipRequest)
    response = build_response(bye, 481, to_tag="other")
    assert response.to_addr.tag == "mine"
    assert [v.host for v in response.vias] == ["pc33.example.com", "proxy.example.com"]
    assert response.reason == "Call/Transaction Does Not Exist"


def test_unknown_code_and_explicit_reason() -> None:
    assert build_response(invite(), 599).reason == "Unknown"
    assert build_response(invite(), 503, "Draining").reason == "Draining"


def test_request_builder_round_trips() -> None:
    bye = build_request(
        "BYE",
        "sip:2000@src.example.com",
        via="SIP/2.0/TCP 192.0.2.9:5060;branch=z9hG4bK-srs-1",
        from_="<sip:recorder@example.com>;tag=srs-1",
        to='"SRC" <sip:2000@example.com>;tag=35e1',
        call_id="d253c800",
        cseq=1,
        contact="<sip:srs@192.0.2.9>",
        headers=[("Route", "<sip:proxy.example.com;lr>")],
        body=b"<x/>",
        content_type="application/rs-metadata+xml",
    )
    assert bye.raw.startswith(b"BYE sip:2000@src.example.com SIP/2.0\r\nVia: SIP/2.0/TCP ")
    assert bye.headers.get("Max-Forwards") == "70"
    assert bye.cseq.method == "BYE"
    assert parse_datagram(bye.raw) == bye


def test_header_injection_is_refused() -> None:
    message = SipResponse(
        status_code=200, reason="OK", headers=Headers(fields=(("X", "a\r\nEvil: 1"),))
    )
    with pytest.raises(ValueError, match=r"^header contains CR or LF$"):
        serialize(message)


_value = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=',;<>"\\'),
    min_size=1,
    max_size=20,
)


@settings(deadline=None)
@given(
    method=st.sampled_from(["INVITE", "BYE", "OPTIONS", "UPDATE", "INFO", "X-CUSTOM"]),
    user=_value,
    tag=_value,
    call_id=_value,
    cseq=st.integers(min_value=0, max_value=2**31 - 1),
    body=st.binary(max_size=200),
    extra=st.lists(st.tuples(st.sampled_from(["X-A", "Subject", "k"]), _value), max_size=3),
)
def test_parse_of_serialize_is_identity(
    *,
    method: str,
    user: str,
    tag: str,
    call_id: str,
    cseq: int,
    body: bytes,
    extra: list[tuple[str, str]],
) -> None:
    built = build_request(
        method,
        f"sip:{user}@example.com",
        via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
        from_=f"<sip:{user}@example.com>;tag={tag}",
        to="<sip:srs@example.com>",
        call_id=call_id,
        cseq=cseq,
        headers=extra,
        body=body,
    )
    assert parse_datagram(built.raw) == built
    assert serialize(built) == built.raw
    response = build_response(built, 200, to_tag=tag, body=body)
    assert parse_datagram(response.raw) == response


@pytest.mark.parametrize(
    ("via", "stamped"),
    [
        (
            "SIP/2.0/UDP src.example.com:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/UDP src.example.com:5060;branch=z9hG4bK1;rport=40000;received=203.0.113.7",
        ),
        (
            "SIP/2.0/UDP 203.0.113.7;RPort ;branch=z9hG4bK1",
            "SIP/2.0/UDP 203.0.113.7;rport=40000;branch=z9hG4bK1;received=203.0.113.7",
        ),
        (
            "SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK1",
            "SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK1",
        ),
        (
            "SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/UDP b.example;rport",
            (
                "SIP/2.0/UDP a.example;branch=z9hG4bK1;received=203.0.113.7,"
                " SIP/2.0/UDP b.example;rport"
            ),
        ),
        (
            "SIP/2.0/UDP a.example;received=10.0.0.1;rport=1",
            "SIP/2.0/UDP a.example;received=10.0.0.1;rport=1",
        ),
    ],
)
def test_stamp_via_adds_received_and_fills_rport(via: str, stamped: str) -> None:
    assert stamp_via(via, ("203.0.113.7", 40000)) == stamped


def test_response_with_source_stamps_only_the_top_via() -> None:
    data = request("OPTIONS").replace(
        b"Max-Forwards", b"Via: SIP/2.0/UDP proxy.example.com;rport\r\nMax-Forwards"
    )
    options = parse_datagram(data)
    assert isinstance(options, SipRequest)
    response = build_response(options, 200, source=("192.0.2.4", 5062))
    top, second = response.vias
    assert top.received == "192.0.2.4"
    assert second.received is None
    assert second.rport is None
