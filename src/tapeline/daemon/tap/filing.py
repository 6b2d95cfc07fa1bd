"""Turn a finished tapped call into the one filing path's `NewInteraction` (source `tap`).

Same record shape as a SIPREC call: channel 0 is the recorded employee line, channel 1 the other
party, a recording when any RTP was heard, otherwise a capture-failure record with its reason.
Party mapping uses `[[lines]]` as SIPREC does: a From/To user part matches a line by its E.164
number (normalised in the line's region) or by one of its extensions.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tapeline.archive.core import Archive
from tapeline.archive.filing import Filer, NewInteraction, PartyIn, StreamIn
from tapeline.archive.models import Interaction
from tapeline.archive.parties import normalise_number
from tapeline.archive.records import to_record
from tapeline.config import Config, Line
from tapeline.daemon.callrecording import quality_figures, stereo_recording
from tapeline.daemon.tap.tracker import OrphanFlow, Side, TapCall
from tapeline.events.envelope import EventType
from tapeline.media.session import MediaResult
from tapeline.proto.siprec.parties import user_part

SOURCE = "tap"


def uri_user(uri: str) -> str:
    """The user part of a sip:/sips:/tel: URI, by the same rules as SIPREC participants."""
    return user_part(uri)


class LineBook:
    """Finds the configured line a signalled URI belongs to."""

    def __init__(self, config: Config) -> None:
        self._region = config.node.default_region
        self._by_key: dict[str, Line] = {}
        for line in config.lines:
            self._by_key[line.number] = line
            for ext in line.extensions:
                self._by_key[ext] = line

    def find(self, uri: str) -> Line | None:
        """The line `uri` names, by extension or by normalised number."""
        user = uri_user(uri)
        if user in self._by_key:
            return self._by_key[user]
        number = normalise_number(user, self._region)
        return self._by_key.get(number) if number else None

    def is_line(self, uri: str) -> bool:
        """Whether `uri` is a recorded line (the tracker's channel mapping callback)."""
        return self.find(uri) is not None


def _identity(uri: str, region: str) -> str:
    user = uri_user(uri)
    return normalise_number(user, region) or user or uri


def build_interaction(  # noqa: PLR0913  # everything the record is made of
    call: TapCall,
    result: MediaResult,
    *,
    book: LineBook,
    config: Config,
    incomplete: bool,
    kernel_drops: int = 0,
) -> NewInteraction:
    """The record of one tapped call: a call with its recording, or a capture failure.

    `kernel_drops` are frames the kernel dropped on the capture sockets while the call was open:
    any of them may have been this call's, so the record is marked incomplete and tagged.
    """
    ended = call.ended if call.ended is not None else call.last_seen
    region = config.node.default_region
    employee = call.caller if call.employee is Side.CALLER else call.callee
    other = call.callee if call.employee is Side.CALLER else call.caller
    line = book.find(employee.uri)
    parties = [
        PartyIn(
            role="employee" if line is not None else "caller",
            identifier=line.number if line else _identity(employee.uri, region),
            display_name=employee.display_name,
        ),
        PartyIn(
            role="counterparty" if line is not None else "callee",
            identifier=_identity(other.uri, region),
            display_name=other.display_name,
        ),
    ]
    sides = list(call.streams)
    streams = [
        StreamIn(
            label=side.name.lower(),
            ssrc=q.ssrcs[0] if q.ssrcs else None,
            codec=None,
            channel=q.channel,
            quality={
                **quality_figures(q),
                "rtp_packets": call.rtp_packets[side],
                "match_rule": call.rules.get(side),
            },
        )
        for side, q in zip(sides, result.quality, strict=True)
    ]
    base = NewInteraction(
        channel="voice",
        kind="call",
        direction=call.direction,
        started_at=datetime.fromtimestamp(call.started, UTC),
        ended_at=datetime.fromtimestamp(ended, UTC),
        source_path=SOURCE,
        line_number=line.number if line else None,
        counterparty=_identity(other.uri, region),
        counterparty_name=other.display_name,
        participants=parties,
        streams=streams,
        sip_call_id=call.call_id,
        incomplete=incomplete or kernel_drops > 0,
        tags=["kernel_drops"] if kernel_drops else [],
        details={
            "kernel_drops": kernel_drops,
            "end_reason": call.end_reason,
            "final_status": call.final_status,
            "transport": call.transport,
            "answered": call.answered is not None,
            "sip_messages": call.sip_messages,
            "transfers": call.transfers,
            "match_rules": {side.name.lower(): rule for side, rule in call.rules.items()},
            # Only when a proxy forked the INVITE: which branches rang or answered, which one
            # was recorded, and how the others ended.
            **(
                {
                    "forks": [{"tag": tag, **fork} for tag, fork in call.forks.items()],
                    "recorded_branch": call.dialog_tag,
                    "stray_packets": call.stray_packets,
                }
                if len(call.forks) > 1
                else {}
            ),
        },
    )
    if sum(q.received for q in result.quality) == 0:
        if call.answered is None:
            reason = "unanswered" if call.final_status is None else call.end_reason
        else:
            reason = (
                "srtp_auth_failed"
                if any(q.srtp_auth_failures for q in result.quality)
                else "no_rtp"
            )
        return replace(base, kind="capture_failure", outcome=reason)
    recording = stereo_recording(result, config.storage.format)
    return replace(base, outcome="one_way" if result.one_way else "recorded", recording=recording)


def build_orphan(flow: OrphanFlow, result: MediaResult, *, config: Config) -> NewInteraction:
    """The `orphan_stream` record of RTP that no signalling announced, with its statistics.

    A flow and its reverse (the same two endpoints, the other way) are one conversation: one
    record, the first flow on channel 0 and its partner on channel 1.
    """
    flows = flow.flows
    tls = any(f.tls_signalling for f in flows)
    encrypted = any(f.encrypted and not f.keyed for f in flows)
    tags = ["tls_signalling"] if tls else []
    if any(f.encrypted for f in flows):
        tags.append("encrypted_media")
    labels = ["orphan", "orphan_reverse"]
    base = NewInteraction(
        channel="voice",
        kind="orphan_stream",
        direction="unknown",
        started_at=datetime.fromtimestamp(min(f.started for f in flows), UTC),
        ended_at=datetime.fromtimestamp(max(f.last_seen for f in flows), UTC),
        source_path=SOURCE,
        streams=[
            StreamIn(
                label=label,
                ssrc=quality.ssrcs[0] if quality.ssrcs else None,
                channel=quality.channel,
                quality={
                    **quality_figures(quality),
                    "rtp_packets": member.rtp_packets,
                    "match_rule": None,
                    "src": f"{member.src}:{member.sport}",
                    "dst": f"{member.dst}:{member.dport}",
                },
            )
            for label, member, quality in zip(labels, flows, result.quality, strict=False)
        ],
        # A host of this flow spoke SIP over TLS at the time: the call's signalling was
        # there but unreadable, so this is a call kept from its media, not stray RTP.
        outcome="tls_signalling" if tls else "no_signalling",
        incomplete=True,
        tags=tags,
        details={
            "src": f"{flow.src}:{flow.sport}",
            "dst": f"{flow.dst}:{flow.dport}",
            "both_directions": flow.partner is not None,
            "ssrcs": [ssrc for quality in result.quality for ssrc in quality.ssrcs],
            "signalling": "tls" if tls else None,
            "payload_entropy": [None if f.entropy is None else round(f.entropy, 2) for f in flows],
            "media_encrypted": any(f.encrypted for f in flows),
        },
    )
    decoded = sum(q.received - q.undecodable for q in result.quality)
    if decoded <= 0:
        return base  # statistics only: the payload type is unknown (name it with --rtp-codec)
    if encrypted:
        return base  # ciphertext (SRTP without its keys) decodes to noise: statistics only
    other = "unknown" if flow.partner is not None else "silent"
    channels = [{"channel": 0, "role": "unknown"}, {"channel": 1, "role": other}]
    return replace(base, recording=stereo_recording(result, config.storage.format, channels))


def file_orphan(archive: Archive, config: Config, flow: OrphanFlow) -> str:
    """Finish an orphan flow's media (with its partner's) and file its record; returns its id.

    Raises:
        StorageError: the record could not be filed.
    """
    result = flow.media.finish(end=max(f.last_seen for f in flow.flows), cover_audio=True)
    return Filer(archive).file(build_orphan(flow, result, config=config))


def file_call(  # noqa: PLR0913  # the call and how it was captured
    archive: Archive,
    config: Config,
    call: TapCall,
    *,
    book: LineBook,
    incomplete: bool = False,
    kernel_drops: int = 0,
) -> str:
    """Finish the call's media and file it with its `call.ended` event; returns the record id.

    Raises:
        StorageError: the record could not be filed (the caller keeps the journal).
    """
    end = call.ended if call.ended is not None else call.last_seen
    result = call.media.finish(end=end, cover_audio=True)
    new = build_interaction(
        call, result, book=book, config=config, incomplete=incomplete, kernel_drops=kernel_drops
    )
    ended = {"call_ref": call.call_id, "reason": call.end_reason}
    return Filer(archive).file(new, events=[(EventType.CALL_ENDED, ended)])


def record_of(archive: Archive, interaction_id: str) -> dict[str, Any]:
    """The filed record in the interaction shape of DESIGN §7 (no audit: filing just audited)."""
    with archive.index.read() as session:
        return to_record(session, session.get_one(Interaction, interaction_id))
