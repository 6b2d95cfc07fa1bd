"""SIPREC recording metadata: RFC 7865 parsing in every dialect, RFC 7866 §9 updates, channels."""

from tapeline.proto.siprec.channels import ChannelMap, ChannelRule, SpeakerSource, map_channels
from tapeline.proto.siprec.merge import apply_update
from tapeline.proto.siprec.model import (
    CallDirection,
    CallHints,
    DataMode,
    Dialect,
    Group,
    NameId,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    RecordingMetadata,
    ReportedTime,
    Session,
    SessionRecordingAssoc,
    SnapshotRequest,
    Stream,
    parse_time,
)
from tapeline.proto.siprec.parser import (
    RECORDING_NAMESPACE,
    parse_metadata,
    parse_snapshot_request,
    serialize_snapshot_request,
)
from tapeline.proto.siprec.parties import (
    ForkParties,
    PartyIdentity,
    aor_number,
    identity,
    parse_fork_parties,
    user_part,
)
from tapeline.proto.siprec.safexml import MAX_XML_DEPTH, MAX_XML_SIZE, parse_xml

__all__ = [
    "MAX_XML_DEPTH",
    "MAX_XML_SIZE",
    "RECORDING_NAMESPACE",
    "CallDirection",
    "CallHints",
    "ChannelMap",
    "ChannelRule",
    "DataMode",
    "Dialect",
    "ForkParties",
    "Group",
    "NameId",
    "Participant",
    "ParticipantSessionAssoc",
    "ParticipantStreamAssoc",
    "PartyIdentity",
    "RecordingMetadata",
    "ReportedTime",
    "Session",
    "SessionRecordingAssoc",
    "SnapshotRequest",
    "SpeakerSource",
    "Stream",
    "aor_number",
    "apply_update",
    "identity",
    "map_channels",
    "parse_fork_parties",
    "parse_metadata",
    "parse_snapshot_request",
    "parse_time",
    "parse_xml",
    "serialize_snapshot_request",
    "user_part",
]
