"""In-dialog changes to a recording session, plain forks, certificate trunks and bad requests.

Driven with bytes and `now` only, like `test_core.py`: re-INVITE/UPDATE with new metadata or SDP
(pause, resume, added streams), a fork INVITE without metadata, `cert:` trunk matching, and the
4xx a broken or over-demanding request gets.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tapeline.config import Trunk
from tapeline.daemon.siprec.core import Closed, Opened, SrsCore, Updated
from tapeline.daemon.siprec.ports import PortPool
from tests.unit.daemon.siprec.test_core import (
    METADATA,
    SBC,
    SDP_OFFER,
    _core,
    _final,
    _request,
    _siprec_body,
)

WALL = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
PAUSED_OFFER = SDP_OFFER.replace("a=sendonly", "a=inactive")
HOLD_OFFER = SDP_OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0")
THREE_LINES = (
    SDP_OFFER + "m=audio 6004 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=label:3\r\na=sendonly\r\n"
)
JOINED = (
    '<?xml version="1.0"?><recording xmlns="urn:ietf:params:xml:ns:recording:1">'
    "<datamode>partial</datamode>"
    '<participant participant_id="p3"><nameID aor="sip:+447700900999@x.example"/></participant>'
    "</recording>"
)


def _open(core: SrsCore) -> tuple[str, Opened]:
    body, ctype = _siprec_body()
    actions = core.receive_datagram(
        _request("INVITE", body=body, content_type=ctype), SBC, 0.0, WALL
    )
    ok = _final(actions)
    opened = next(a for a in actions if isinstance(a, Opened))
    return ok.to_addr.tag or "", opened


def _in_dialog(  # noqa: PLR0917  # one request per call, every field explicit
    core: SrsCore,
    tag: str,
    method: str,
    cseq: int,
    now: float,
    body: str = "",
    ctype: str = "",
) -> list[object]:
    request = _request(
        method,
        body=body,
        content_type=ctype or None,
        to_tag=tag,
        cseq=cseq,
        branch=f"z9hG4bK{cseq}",
    )
    return list(core.receive_datagram(request, SBC, now, WALL))


def test_pause_and_resume_are_answered_in_kind_and_recorded_as_spans() -> None:
    core = _core()
    tag, opened = _open(core)
    session = opened.session
    paused = _in_dialog(core, tag, "INVITE", 2, 10.0, PAUSED_OFFER, "application/sdp")
    answer = _final(paused)
    assert answer.status_code == 200
    # RFC 3264 §6.1: an inactive offer is answered inactive, the o= version moves on.
    assert answer.body.decode().count("a=inactive") == 2
    assert " 2 IN IP4 " in answer.body.decode()
    assert any(isinstance(a, Updated) and a.added == () for a in paused)
    resumed = _in_dialog(core, tag, "INVITE", 3, 14.5, SDP_OFFER, "application/sdp")
    assert _final(resumed).body.decode().count("a=recvonly") == 2
    held = _in_dialog(core, tag, "UPDATE", 4, 20.0, HOLD_OFFER, "application/sdp")
    assert _final(held).status_code == 200
    bye = _in_dialog(core, tag, "BYE", 5, 22.0)
    assert any(isinstance(a, Closed) for a in bye)
    spans = sorted((p.index, p.start, p.end) for p in session.pauses)
    # c=0.0.0.0 (BroadWorks/Metaswitch hold) counts as a pause too; the call ended paused.
    assert spans == [(0, 10.0, 14.5), (0, 20.0, 22.0), (1, 10.0, 14.5), (1, 20.0, 22.0)]


def test_a_session_that_starts_inactive_is_paused_from_its_start() -> None:
    core = _core()
    body = _siprec_body()[0].replace(SDP_OFFER, PAUSED_OFFER)
    actions = core.receive_datagram(
        _request("INVITE", body=body, content_type="multipart/mixed;boundary=b"), SBC, 0.0, WALL
    )
    session = next(a for a in actions if isinstance(a, Opened)).session
    assert session.paused == {0: 0.0, 1: 0.0}


def test_an_added_stream_gets_new_ports_and_an_unchanged_offer_keeps_the_version() -> None:
    core = _core()
    tag, opened = _open(core)
    same = _final(_in_dialog(core, tag, "INVITE", 2, 1.0, SDP_OFFER, "application/sdp"))
    assert " 1 IN IP4 " in same.body.decode()  # a session refresh changes nothing
    actions = _in_dialog(core, tag, "INVITE", 3, 2.0, THREE_LINES, "application/sdp")
    updated = next(a for a in actions if isinstance(a, Updated))
    assert updated.added == (2,)
    session = opened.session
    assert session.ports[:2] == [20000, 20002]
    assert session.ports[2] not in (20000, 20002)
    assert f"m=audio {session.ports[2]} RTP/AVP 8" in _final(actions).body.decode()
    assert session.codecs[2] == {8: ("PCMA", 8000)}
    in_use = core._ports.in_use  # noqa: SLF001  # the pool's count is the evidence
    assert in_use == 6
    _in_dialog(core, tag, "BYE", 4, 3.0)
    assert core._ports.in_use == 0  # noqa: SLF001


def test_removing_an_m_line_is_refused_and_the_session_stays() -> None:
    core = _core()
    tag, _ = _open(core)
    one_line = SDP_OFFER.split("m=audio 6002")[0]
    refused = _final(_in_dialog(core, tag, "INVITE", 2, 1.0, one_line, "application/sdp"))
    assert refused.status_code == 488
    assert "call-1" in core.sessions


def test_a_metadata_only_update_adds_the_participant() -> None:
    core = _core()
    tag, opened = _open(core)
    actions = _in_dialog(core, tag, "UPDATE", 2, 1.0, JOINED, "application/rs-metadata+xml")
    assert _final(actions).status_code == 200
    metadata = opened.session.metadata
    assert metadata is not None
    aors = [p.name_ids[0].aor for p in metadata.participants if p.name_ids]
    assert "sip:+447700900999@x.example" in aors
    assert opened.session.raw_metadata[-1] == JOINED.encode()
    assert METADATA.encode() == opened.session.raw_metadata[0]


def _fork_invite(extra: list[str]) -> bytes:
    raw = _request("INVITE", body=SDP_OFFER, content_type="application/sdp").decode()
    head, body = raw.split("\r\n\r\n", 1)
    return ("\r\n".join([head, *extra]) + "\r\n\r\n" + body).encode()


def test_a_plain_fork_maps_the_employee_from_headers_and_swaps_channels_when_inbound() -> None:
    core = _core()
    core.lines = {"+442071230001"}
    # Inbound: the employee is the called party (P-Served-User), the caller asserted by PAI.
    inbound = _fork_invite(
        [
            "P-Served-User: <tel:+442071230001>",
            'P-Asserted-Identity: "Client" <tel:+447700900123>',
        ]
    )
    session = next(
        a for a in core.receive_datagram(inbound, SBC, 0.0, WALL) if isinstance(a, Opened)
    ).session
    assert session.metadata is None
    assert session.fork is not None
    assert (session.fork.employee, session.fork.other) == ("+442071230001", "+447700900123")
    assert session.fork.direction == "inbound"
    # m-line 1 carries the calling party (the client): it goes to channel 1.
    assert (session.channel_of(0), session.channel_of(1)) == (1, 0)


def test_a_plain_fork_outbound_from_pai_keeps_the_first_m_line_on_channel_0() -> None:
    core = _core()
    core.lines = {"+442071230001"}
    invite = _fork_invite(["P-Asserted-Identity: <sip:+442071230001@bank.example;user=phone>"])
    invite = invite.replace(b"To: <sip:srs@192.0.2.1>", b"To: <tel:+447700900123>")
    session = next(
        a for a in core.receive_datagram(invite, SBC, 0.0, WALL) if isinstance(a, Opened)
    ).session
    assert session.fork is not None
    assert session.fork.direction == "outbound"
    assert session.fork.other == "+447700900123"
    assert (session.channel_of(0), session.channel_of(1)) == (0, 1)


def test_cert_trunks_admit_only_the_named_certificate() -> None:
    core = SrsCore(
        trunks=[Trunk(name="sbc-tls", match=["cert:sbc1.bank.example"])],
        lines=set(),
        normalise=lambda _aor: None,
        ports=PortPool(20000, 20099),
        media_address="192.0.2.1",
        contact="<sip:srs@192.0.2.1>;+sip.srs",
    )
    body, ctype = _siprec_body()
    invite = _request("INVITE", body=body, content_type=ctype)
    core.set_peer_names(SBC, frozenset({"other.example"}))
    assert _final(core.receive_datagram(invite, SBC, 0.0, WALL)).status_code == 403
    core.set_peer_names(SBC, frozenset({"sbc1.bank.example"}))
    retry = invite.replace(b"z9hG4bK1", b"z9hG4bK9")
    assert _final(core.receive_datagram(retry, SBC, 0.0, WALL)).status_code == 200
    core.set_peer_names(SBC, None)


def test_an_unsupported_require_gets_420_naming_the_tag_and_100rel_timer_pass() -> None:
    invite = _fork_invite(["Require: siprec, 100rel, timer, x-magic"])
    final = _final(_core().receive_datagram(invite, SBC, 0.0, WALL))
    assert final.status_code == 420
    assert final.headers.get("Unsupported") == "x-magic"
    cisco = _fork_invite(["Require: siprec, 100rel", "Session-Expires: 1800"])
    assert _final(_core().receive_datagram(cisco, SBC, 0.0, WALL)).status_code == 200


def _moded_core(mode: str) -> SrsCore:
    return SrsCore(
        trunks=[Trunk(name="sbc", match=["192.0.2.0/24"], mode=mode)],
        lines={"+442071230001"},
        normalise=lambda aor: aor.split(":", 1)[1].split("@", 1)[0] if ":" in aor else aor,
        ports=PortPool(20000, 20099),
        media_address="192.0.2.1",
        contact="<sip:srs@192.0.2.1>;+sip.srs",
    )


def _siprec_invite(headers: list[str], body: str | None = None) -> bytes:
    siprec, ctype = _siprec_body()
    raw = _request("INVITE", body=body or siprec, content_type=ctype).decode()
    head, rest = raw.split("\r\n\r\n", 1)
    return ("\r\n".join([head, *headers]) + "\r\n\r\n" + rest).encode()


def test_strict_trunks_need_both_rfc_marks_and_lenient_ones_any() -> None:
    both = ["Require: siprec", "Contact: <sip:src@192.0.2.10>;+sip.src"]
    only_draft = ["Contact: <sip:src@192.0.2.10;src>"]  # Webex: the draft tag inside the brackets
    strict_ok = _final(_moded_core("strict").receive_datagram(_siprec_invite(both), SBC, 0, WALL))
    assert strict_ok.status_code == 200
    refused = _final(
        _moded_core("strict").receive_datagram(_siprec_invite(only_draft), SBC, 0, WALL)
    )
    assert (refused.status_code, refused.reason) == (403, "Not a recording session")
    lenient = _final(
        _moded_core("lenient").receive_datagram(_siprec_invite(only_draft), SBC, 0, WALL)
    )
    assert lenient.status_code == 200


def test_strict_refuses_an_unknown_required_part_lenient_ignores_it() -> None:
    siprec, _ = _siprec_body()
    extra = (
        "--b\r\nContent-Type: application/x-secret\r\n"
        "Content-Disposition: signal;handling=required\r\n\r\nIAM\r\n"
    )
    body = siprec.replace("--b--", extra.rstrip("\r\n") + "\r\n--b--")
    marks = ["Require: siprec", "Contact: <sip:src@192.0.2.10>;+sip.src"]
    strict = _moded_core("strict").receive_datagram(_siprec_invite(marks, body), SBC, 0, WALL)
    assert _final(strict).status_code == 415
    lenient = _moded_core("lenient").receive_datagram(_siprec_invite(marks, body), SBC, 0, WALL)
    assert _final(lenient).status_code == 200


def test_nbr_trunks_map_the_employee_from_cisco_participant_headers() -> None:
    invite = _fork_invite(
        [
            'X-Cisco-Recording-Participant: <sip:+447700900123@cucm.example>;media-index="0"',
            (
                'X-Cisco-Recording-Participant: "Alice" <sip:+442071230001@cucm.example>'
                ';media-index="1"'
            ),
        ]
    )
    core = _moded_core("nbr")
    session = next(
        a for a in core.receive_datagram(invite, SBC, 0.0, WALL) if isinstance(a, Opened)
    ).session
    assert session.fork is not None
    assert session.fork.rule == "X-Cisco-Recording-Participant"
    assert (session.fork.employee, session.fork.other) == ("+442071230001", "+447700900123")
    assert session.fork.employee_name == "Alice"
    assert (session.channel_of(0), session.channel_of(1)) == (1, 0)


def test_a_request_too_broken_to_parse_still_gets_a_400_it_can_match() -> None:
    broken = _request("INVITE").replace(b"Max-Forwards: 70", b"Max-Forwards: seventy\x00")
    broken = broken.replace(b"Content-Length: 0", b"Content-Length: 99999")
    actions = _core().receive_datagram(broken, SBC, 0.0, WALL)
    final = _final(actions)
    assert 400 <= final.status_code < 500
    assert final.call_id == "call-1"
    assert final.headers.get("CSeq") == "1 INVITE"


def test_a_trunks_region_reads_its_national_numbers() -> None:
    from tapeline.archive.parties import normalise_number  # noqa: PLC0415

    core = SrsCore(
        trunks=[Trunk(name="ldn", match=["192.0.2.0/24"], region="GB")],
        lines={"+442071230001"},
        normalise=lambda aor: normalise_number(aor, "US"),
        normalise_in=normalise_number,
        ports=PortPool(20000, 20099),
        media_address="192.0.2.1",
        contact="<sip:srs@192.0.2.1>;+sip.srs",
    )
    # A London fork: the employee as a national number in P-Asserted-Identity.
    invite = _fork_invite(["P-Asserted-Identity: <sip:02071230001@sbc.example;user=phone>"])
    session = next(
        a for a in core.receive_datagram(invite, SBC, 0.0, WALL) if isinstance(a, Opened)
    ).session
    assert session.fork is not None
    assert session.fork.employee == "+442071230001"
    assert session.region == "GB"


def test_a_draining_recorder_answers_options_and_new_invites_503() -> None:
    core = _core()
    core.draining = True
    assert _final(core.receive_datagram(_request("OPTIONS"), SBC, 0.0, WALL)).status_code == 503
    body, ctype = _siprec_body()
    invite = _request("INVITE", body=body, content_type=ctype, branch="z9hG4bK7")
    assert _final(core.receive_datagram(invite, SBC, 0.0, WALL)).status_code == 503
    assert core._ports.in_use == 0  # noqa: SLF001  # the pool's count is the evidence
