"""Turn a finished SIPREC session and its media into the one filing path's `NewInteraction`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tapeline.archive.core import Archive
from tapeline.archive.filing import (
    AttachmentIn,
    Filer,
    GapIn,
    NewInteraction,
    PartyIn,
    StreamIn,
)
from tapeline.archive.parties import normalise_number
from tapeline.config import Config
from tapeline.daemon.callrecording import quality_figures, stereo_recording
from tapeline.daemon.siprec.core import CallSession
from tapeline.events.envelope import EventType
from tapeline.media.session import MediaResult

MIN_AUDIO_PACKETS = 1


def _parties(
    session: CallSession, normalise: dict[str, str | None]
) -> tuple[str | None, str | None, list[PartyIn]]:
    """(employee line, counterparty, participants) from the metadata and the channel map."""
    meta = session.metadata
    cmap = session.channel_map
    parties: list[PartyIn] = []
    line = other = None
    if meta is None:
        return _fork_parties(session)
    for participant in meta.participants:
        if not participant.name_ids:
            continue
        aor = participant.name_ids[0].aor
        number = normalise.get(aor)
        role = "other"
        if cmap is not None and participant.participant_id == cmap.employee_participant_id:
            role = "employee"
            line = number
        elif cmap is not None and participant.participant_id in cmap.other_participant_ids:
            role = "counterparty"
            other = other or number or aor
        parties.append(
            PartyIn(role=role, identifier=number or aor, display_name=participant.name_ids[0].name)
        )
    return line, other, parties


def _fork_parties(session: CallSession) -> tuple[str | None, str | None, list[PartyIn]]:
    """Parties of a plain fork INVITE, from its headers (see `fork.map_fork`)."""
    fork = session.fork
    if fork is None:
        return None, None, []
    parties = []
    if fork.employee is not None:
        parties.append(
            PartyIn(role="employee", identifier=fork.employee, display_name=fork.employee_name)
        )
    if fork.other is not None:
        parties.append(
            PartyIn(role="counterparty", identifier=fork.other, display_name=fork.other_name)
        )
    return fork.employee, fork.other, parties


def _gaps(session: CallSession) -> list[GapIn]:
    """Pause spans as gap records (the recording keeps silence there, so its length is true)."""
    return [
        GapIn(
            start_ms=max(0, round((pause.start - session.started) * 1000)),
            end_ms=max(0, round((pause.end - session.started) * 1000)),
            reason=f"paused:{pause.label or pause.index}"[:32],
        )
        for pause in sorted(session.pauses, key=lambda p: (p.start, p.index))
    ]


def build_interaction(  # noqa: PLR0913  # everything the record is made of
    session: CallSession,
    result: MediaResult,
    *,
    lines: set[str],
    normalised: dict[str, str | None],
    storage_format: str,
    incomplete: bool,
) -> NewInteraction:
    """The record of one session: a call with its recording, or a capture failure with a reason."""
    assert session.ended is not None  # noqa: S101  # only closed sessions are filed
    ended_wall = session.started_wall + timedelta(seconds=session.ended - session.started)
    line, other, parties = _parties(session, normalised)
    if line not in lines:
        line = None
    streams = [
        StreamIn(
            label=session.labels[index] if index < len(session.labels) else None,
            ssrc=q.ssrcs[0] if q.ssrcs else None,
            codec=None,
            channel=q.channel,
            quality=quality_figures(q),
        )
        for index, q in enumerate(result.quality)
    ]
    received = sum(q.received for q in result.quality)
    auth_failures = sum(q.srtp_auth_failures for q in result.quality)
    attachments = [
        AttachmentIn(kind="rs_metadata", media_type="application/rs-metadata+xml", data=b)
        for b in session.raw_metadata
    ]
    base = NewInteraction(
        channel="voice",
        kind="call",
        direction=session.fork.direction if session.fork and not session.metadata else "unknown",
        started_at=session.started_wall,
        ended_at=ended_wall,
        source_path="siprec",
        line_number=line,
        counterparty=other,
        participants=parties,
        streams=streams,
        attachments=attachments,
        sip_call_id=session.call_id,
        incomplete=incomplete,
        gaps=_gaps(session),
        tags=["selftest"] if session.selftest else [],
        retention_class="selftest" if session.selftest else None,
        details={
            "trunk": session.trunk,
            "end_reason": session.end_reason,
            "channel_rule": str(session.channel_map.rule)
            if session.channel_map
            else (f"fork: {session.fork.rule}" if session.fork else None),
            "notes": session.notes,
        },
    )
    if received < MIN_AUDIO_PACKETS:
        reason = "srtp_auth_failed" if auth_failures else "no_rtp"
        return replace(base, kind="capture_failure", outcome=reason)
    recording = stereo_recording(result, storage_format)
    return replace(
        base,
        outcome="one_way" if result.one_way else "recorded",
        recording=recording,
    )


def file_session(
    archive: Archive, config: Config, session: CallSession, result: MediaResult, *, incomplete: bool
) -> str:
    """File one finished session through the one filing path, with its `call.ended` event.

    Used by the live service at BYE/shutdown and by crash recovery, so both file alike.

    Raises:
        StorageError: the record could not be filed (the caller keeps the journal).
    """
    region = session.region or config.node.default_region
    normalised = {
        name_id.aor: normalise_number(name_id.aor, region)
        for participant in (session.metadata.participants if session.metadata else ())
        for name_id in participant.name_ids
    }
    new = build_interaction(
        session,
        result,
        lines={line.number for line in config.lines},
        normalised=normalised,
        storage_format=config.storage.format,
        incomplete=incomplete,
    )
    ended = {"call_ref": session.call_id, "reason": session.end_reason}
    return Filer(archive).file(new, events=[(EventType.CALL_ENDED, ended)])
