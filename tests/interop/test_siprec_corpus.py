"""The two real SIPREC INVITE bodies of the public corpus (siprec.md §13.3), read in place.

The multipart split here is a deliberately tiny local helper (boundary from the first delimiter
line, parts by Content-Type); the real multipart parser is tested on its own.
"""

from pathlib import Path

import pytest

from tapeline.proto.sdp import Direction, build_answer, parse_sdp, serialize_sdp
from tapeline.proto.siprec import ChannelRule, Dialect, map_channels, parse_metadata

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def load_parts(name: str) -> dict[str, str]:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"public corpus file {path} is absent (see DESIGN §9, tests/interop)")
    text = path.read_text(encoding="utf-8")
    boundary = next(line for line in text.splitlines() if line.startswith("--")).strip()
    parts: dict[str, str] = {}
    for chunk in text.split(boundary)[1:]:
        head, _, body = chunk.lstrip("\r\n").partition("\n\n")
        ctype = next(
            line.split(":", 1)[1].strip().lower()
            for line in head.splitlines()
            if line.lower().startswith("content-type:")
        )
        parts[ctype] = body.strip() + "\n"
    return parts


def test_cisco_body_streams_participants_and_answer() -> None:
    parts = load_parts("drachtio__cisco-siprec-offer.txt")
    assert "application/gtd" in parts
    offer = parse_sdp(parts["application/sdp"])
    assert [m.label for m in offer.media] == ["1", "2"]
    assert all(m.direction is Direction.SENDONLY for m in offer.media)
    assert offer.media[0].fmtp(101) == "0-16"
    assert parse_sdp(serialize_sdp(offer)) == offer
    answer = build_answer(
        offer, address="198.51.100.20", ports=[40000, 40002], session_id=1, session_version=1
    )
    assert [(m.port, m.formats, m.label) for m in answer.media] == [
        (40000, ("0", "101"), "1"),
        (40002, ("0", "101"), "2"),
    ]
    meta = parse_metadata(parts["application/rs-metadata+xml"])
    assert meta.dialect is Dialect.RFC7865
    labels = {s.stream_id: s.label for s in meta.streams}
    senders = {
        meta.participant(a.participant_id).name_ids[0].aor: [labels[i] for i in a.send]  # type: ignore[union-attr]
        for a in meta.participant_stream_assocs
    }
    assert senders == {"sip:7301@35.162.237.204": ["1"], "sip:7300@35.162.237.204": ["2"]}
    assert meta.participants[0].name_ids[0].name is None
    start = meta.sessions[0].start_time
    assert start is not None
    assert start.raw == "2017-06-23T12:16:06.040Z"
    mapping = map_channels(meta, provisioned_lines={"7300"})
    assert (mapping.employee_label, mapping.other_label) == ("2", "1")
    assert mapping.rule is ChannelRule.PROVISIONED_LINE


def test_sonus_body_caller_is_label_2() -> None:
    parts = load_parts("drachtio__sonus-siprec-offer.txt")
    offer = parse_sdp(parts["application/sdp"])
    assert offer.connection is None
    assert offer.connection_for(0) is not None
    assert offer.media[0].ptime == 20
    meta = parse_metadata(parts["application/rs-metadata+xml"])
    assert meta.dialect is Dialect.DRAFT
    assert meta.hints.call_id == "2da553f7-a48b-1235-d6a2-5254003a4988"
    assert meta.hints.from_header is not None
    assert "2249888500" in meta.hints.from_header
    assert meta.participants[1].name_ids[0].name is None  # `<name> </name>`
    caller = map_channels(meta, provisioned_lines={"2249888500"})
    assert (caller.employee_label, caller.other_label) == ("2", "1")
    callee = map_channels(meta, provisioned_lines={"2249888012"})
    assert (callee.employee_label, callee.other_label) == ("1", "2")
    assert callee.rule is ChannelRule.PROVISIONED_LINE
