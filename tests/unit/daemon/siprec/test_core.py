"""The SRS session core, driven with bytes and `now` only (no sockets)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from tapeline.config import Trunk
from tapeline.daemon.siprec.core import Closed, Opened, Send, SrsCore
from tapeline.daemon.siprec.ports import PortPool
from tapeline.proto.sip import SipResponse, parse_datagram

SBC = ("192.0.2.10", 5060)
STRANGER = ("203.0.113.9", 5060)
WALL = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SDP_OFFER = (
    "v=0\r\no=src 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=label:1\r\na=sendonly\r\n"
    "m=audio 6002 RTP/AVP 0\r\na=label:2\r\na=sendonly\r\n"
)
VIDEO_ONLY = (
    "v=0\r\no=s 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=video 6000 RTP/AVP 96\r\n"
)
METADATA = (
    '<?xml version="1.0"?><recording xmlns="urn:ietf:params:xml:ns:recording:1">'
    "<datamode>complete</datamode>"
    '<participant participant_id="p1"><nameID aor="sip:+442071230001@bank.example"/></participant>'
    '<participant participant_id="p2"><nameID aor="sip:+447700900123@x.example"/></participant>'
    '<stream stream_id="s1"><label>1</label></stream>'
    '<stream stream_id="s2"><label>2</label></stream>'
    '<participantstreamassoc participant_id="p1"><send>s1</send></participantstreamassoc>'
    '<participantstreamassoc participant_id="p2"><send>s2</send></participantstreamassoc>'
    "</recording>"
)


def _request(
    method: str,
    *,
    body: str = "",
    content_type: str | None = None,
    to_tag: str = "",
    cseq: int = 1,
    branch: str = "z9hG4bK1",
    call_id: str = "call-1",
) -> bytes:
    headers = [
        f"{method} sip:srs@192.0.2.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}",
        "From: <sip:src@192.0.2.10>;tag=src1",
        f"To: <sip:srs@192.0.2.1>{';tag=' + to_tag if to_tag else ''}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
    ]
    if content_type:
        headers.append(f"Content-Type: {content_type}")
    headers.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def _siprec_body() -> tuple[str, str]:
    body = (
        "--b\r\nContent-Type: application/sdp\r\n\r\n"
        + SDP_OFFER
        + "--b\r\nContent-Type: application/rs-metadata+xml\r\n"
        "Content-Disposition: recording-session\r\n\r\n" + METADATA + "\r\n--b--\r\n"
    )
    return body, "multipart/mixed;boundary=b"


def _core(refusal: str | None = None) -> SrsCore:
    return SrsCore(
        trunks=[Trunk(name="sbc", match=["192.0.2.0/24"])],
        lines={"+442071230001"},
        normalise=lambda aor: aor.split(":", 1)[1].split("@", 1)[0] if ":" in aor else aor,
        ports=PortPool(20000, 20099),
        media_address="192.0.2.1",
        contact="<sip:srs@192.0.2.1>;+sip.srs",
        refuse_new=lambda: refusal,
    )


def _final(actions: Sequence[object]) -> SipResponse:
    responses = [parse_datagram(a.data) for a in actions if isinstance(a, Send)]
    finals = [r for r in responses if isinstance(r, SipResponse) and r.status_code >= 200]
    assert finals, responses
    return finals[-1]


def test_siprec_invite_is_answered_recvonly_and_mapped_to_the_employee_line() -> None:
    core = _core()
    body, ctype = _siprec_body()
    actions = core.receive_datagram(
        _request("INVITE", body=body, content_type=ctype), SBC, 0.0, WALL
    )
    ok = _final(actions)
    assert ok.status_code == 200
    assert "+sip.srs" in (ok.headers.get("Contact") or "")
    answer = ok.body.decode()
    assert answer.count("a=recvonly") == 2
    assert "a=label:1" in answer
    assert "a=label:2" in answer
    assert "m=audio 20000 " in answer
    assert "m=audio 20002 " in answer
    opened = [a for a in actions if isinstance(a, Opened)]
    assert len(opened) == 1
    session = opened[0].session
    assert (session.channel_of(0), session.channel_of(1)) == (0, 1)
    bye = _request("BYE", to_tag=ok.to_addr.tag or "", cseq=2, branch="z9hG4bK2")
    closing = core.receive_datagram(bye, SBC, 5.0, WALL)
    assert _final(closing).status_code == 200
    closed = [a for a in closing if isinstance(a, Closed)]
    assert closed[0].session.ended == 5.0
    assert core.sessions == {}


def test_unknown_source_gets_403_before_any_port_is_taken() -> None:
    core = _core()
    body, ctype = _siprec_body()
    actions = core.receive_datagram(
        _request("INVITE", body=body, content_type=ctype), STRANGER, 0.0, WALL
    )
    assert _final(actions).status_code == 403
    assert not [a for a in actions if isinstance(a, Opened)]
    assert core._ports.in_use == 0  # noqa: SLF001  # the pool's own count is the evidence


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        ("hello", "text/plain", 415),
        ("v=0\r\nnot sdp", "application/sdp", 400),
        (
            VIDEO_ONLY,
            "application/sdp",
            488,
        ),
    ],
)
def test_unusable_offers_get_their_4xx(body: str, ctype: str, status: int) -> None:
    actions = _core().receive_datagram(
        _request("INVITE", body=body, content_type=ctype), SBC, 0.0, WALL
    )
    assert _final(actions).status_code == status


def test_full_storage_refuses_new_calls_with_503() -> None:
    body, ctype = _siprec_body()
    actions = _core("Storage full").receive_datagram(
        _request("INVITE", body=body, content_type=ctype), SBC, 0.0, WALL
    )
    final = _final(actions)
    assert (final.status_code, final.reason) == (503, "Storage full")


def test_options_advertises_what_we_accept() -> None:
    final = _final(_core().receive_datagram(_request("OPTIONS"), SBC, 0.0, WALL))
    assert final.status_code == 200
    assert "application/rs-metadata+xml" in (final.headers.get("Accept") or "")
    assert final.headers.get("Supported") == "siprec"


def test_malformed_bytes_are_counted_and_never_crash() -> None:
    core = _core()
    assert core.receive_datagram(b"\x00\xffgarbage", SBC, 0.0, WALL) == []
    assert core.malformed == 1


def test_cancel_before_answer_closes_nothing_open_and_bye_for_unknown_dialog_gets_481() -> None:
    core = _core()
    actions = core.receive_datagram(_request("BYE", to_tag="nope"), SBC, 0.0, WALL)
    assert _final(actions).status_code == 481
