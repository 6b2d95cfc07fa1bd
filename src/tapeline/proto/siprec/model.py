"""The normalised recording-metadata model: RFC 7865 §6 elements, whatever dialect they came in.

Every dialect of siprec.md §10.1 (RFC 7865, the draft namespace of Oracle/Sonus/Metaswitch, the
BroadWorks `recording_metadata` root) lands in these values. IDs are opaque strings (RFC 7865
§6.10 says base64 UUIDs; SRCs send hex, `urn:uuid:` or empty ones). Times keep the text the SRC
reported beside the parsed UTC value (RFC 7865 §6.9; the SRS clock stays authoritative).
Extension elements are kept as raw XML text; the few vendor fields that tell direction or the
recorded party are lifted into `CallHints` and `Participant.calling`.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)
_MICRO_DIGITS = 6


class Dialect(StrEnum):
    """Which metadata format a document used (siprec.md §10.1), for diagnostics."""

    RFC7865 = "rfc7865"  # urn:ietf:params:xml:ns:recording:1
    DRAFT = "draft"  # urn:ietf:params:xml:ns:recording (Oracle/Acme, Sonus, Metaswitch)
    BROADWORKS = "broadworks"  # urn:ietf:params:xml:ns:siprec, root recording_metadata
    NO_NAMESPACE = "no-namespace"  # a root without xmlns (violates RFC 7865 §5.1.2)


class DataMode(StrEnum):
    """`datamode` of RFC 7865 §5.1.2; absent means complete."""

    COMPLETE = "complete"
    PARTIAL = "partial"


class CallDirection(StrEnum):
    """Whether the recorded party placed or received the call (vendor extension data, §11.2)."""

    ORIGINATING = "originating"  # Metaswitch callType, BroadWorks origCall
    TERMINATING = "terminating"  # Metaswitch callType, BroadWorks termCall


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportedTime:
    """A timestamp as the SRC wrote it, with its UTC value when it parses (RFC 3339 or close)."""

    raw: str
    utc: datetime | None = None
    zone_assumed: bool = False  # no zone given: read as UTC (Oracle, Avaya)


def parse_time(raw: str) -> ReportedTime:
    """Read an RFC 7865 §6.9 timestamp leniently.

    Accepts `Z`, offsets with or without a colon (OpenSIPS `%z`), fractional seconds (Cisco) and
    no zone at all (Oracle, assumed UTC). Anything else keeps only the raw text.

    Args:
        raw: The element text.

    Returns:
        The reported time; `utc` is None when the text is not a timestamp.
    """
    text = " ".join(raw.split())
    match = _TIMESTAMP.match(text)
    if not match:
        return ReportedTime(raw=text)
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    tz = UTC
    if sign is not None:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((frac or "0")[:_MICRO_DIGITS].ljust(_MICRO_DIGITS, "0"))
    try:
        value = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
        )
        utc = value.astimezone(UTC)
    except (ValueError, OverflowError):
        return ReportedTime(raw=text)
    return ReportedTime(raw=text, utc=utc, zone_assumed=zulu is None and sign is None)


@dataclass(frozen=True, slots=True, kw_only=True)
class NameId:
    """A `nameID` (RFC 7865 §6.5): the AoR and an optional display name or dialled number."""

    aor: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """A CS group, RFC 7865 §6.2."""

    group_id: str
    associate_time: ReportedTime | None = None
    disassociate_time: ReportedTime | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A communication session, RFC 7865 §6.3."""

    session_id: str
    sip_session_ids: tuple[str, ...] = ()
    group_ref: str | None = None
    start_time: ReportedTime | None = None
    stop_time: ReportedTime | None = None
    associate_time: ReportedTime | None = None
    reasons: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Participant:
    """A party, RFC 7865 §6.5, plus the draft-era inline `send`/`recv` and session attributes."""

    participant_id: str
    name_ids: tuple[NameId, ...] = ()
    session_id: str | None = None
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()
    calling: bool | None = None  # Oracle apkt:callingParty, Intrado role
    associate_time: ReportedTime | None = None
    disassociate_time: ReportedTime | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    """A media stream, RFC 7865 §6.7; `label` points at an SDP `a=label` (RFC 4574)."""

    stream_id: str
    session_id: str | None = None
    label: str | None = None
    mode: str | None = None  # draft/BroadWorks `mixed` or `separate`
    associate_time: ReportedTime | None = None
    disassociate_time: ReportedTime | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecordingAssoc:
    """`sessionrecordingassoc`, RFC 7865 §6.4."""

    session_id: str
    associate_time: ReportedTime | None = None
    disassociate_time: ReportedTime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantSessionAssoc:
    """`participantsessionassoc`, RFC 7865 §6.6."""

    participant_id: str
    session_id: str
    associate_time: ReportedTime | None = None
    disassociate_time: ReportedTime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantStreamAssoc:
    """`participantstreamassoc`, RFC 7865 §6.8: the streams a participant sends and receives."""

    participant_id: str
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()
    associate_time: ReportedTime | None = None
    disassociate_time: ReportedTime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallHints:
    """Vendor extension fields that tell direction, recorded party and correlation (§11.2)."""

    direction: CallDirection | None = None
    recorded_party: str | None = None  # Metaswitch recordedParty
    user_id: str | None = None  # BroadWorks userID
    calling_number: str | None = None  # BroadWorks/Metaswitch callingPartyNumber
    called_number: str | None = None  # BroadWorks calledPartyNumber
    from_header: str | None = None  # Sonus callData/fromhdr: the caller
    to_header: str | None = None  # Sonus callData/tohdr
    call_id: str | None = None  # Sonus callid (the CS Call-ID)
    correlation_ids: tuple[str, ...] = ()  # gcid, ucid, extTrackingID, GenesysUUID...


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingMetadata:
    """One rs-metadata document, or the merged model after `apply_update` (RFC 7865 §6.1)."""

    dialect: Dialect
    datamode: DataMode = DataMode.COMPLETE
    recording_id: str | None = None  # Metaswitch and BroadWorks put an id on the recording
    groups: tuple[Group, ...] = ()
    sessions: tuple[Session, ...] = ()
    participants: tuple[Participant, ...] = ()
    streams: tuple[Stream, ...] = ()
    session_recording_assocs: tuple[SessionRecordingAssoc, ...] = ()
    participant_session_assocs: tuple[ParticipantSessionAssoc, ...] = ()
    participant_stream_assocs: tuple[ParticipantStreamAssoc, ...] = ()
    hints: CallHints = CallHints()
    extensions: tuple[str, ...] = ()
    anomalies: tuple[str, ...] = ()

    def participant(self, participant_id: str) -> Participant | None:
        """Return the participant with this id, or None."""
        return next((p for p in self.participants if p.participant_id == participant_id), None)

    def stream(self, stream_id: str) -> Stream | None:
        """Return the stream with this id, or None."""
        return next((s for s in self.streams if s.stream_id == stream_id), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotRequest:
    """A `requestsnapshot` document, RFC 7865 §7 (sent by the SRS in an UPDATE)."""

    reason: str | None = None
    lang: str | None = None
