"""Partial metadata updates: RFC 7865 §5.1.2 datamode, §6.8.1 stream associations; RFC 7866 §9.

Strategy (siprec.md §5.3): a `complete` document replaces the model. A `partial` one is merged by
element ID (`group_id`, `session_id`, `participant_id`, `stream_id`; the pair for
`participantsessionassoc`; `participant_id` for `participantstreamassoc`): values the update
carries win, absent ones are kept, new IDs are appended. The send and recv sets of a
`participantstreamassoc` are replaced outright, because a missing `send` means the participant
stopped contributing (hold, RFC 8068 §3.2.2). A session given a `stop-time` disassociates all its
participants (RFC 8068 §3.2.3). Forward references are not errors (RFC 7866 §9.2).
"""

import dataclasses
from collections.abc import Callable, Hashable
from typing import TypeVar

from tapeline.proto.siprec.model import (
    CallHints,
    DataMode,
    Group,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    RecordingMetadata,
    Session,
    SessionRecordingAssoc,
    Stream,
)

_T = TypeVar(
    "_T",
    Group,
    Session,
    Participant,
    Stream,
    SessionRecordingAssoc,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    CallHints,
)


def _merge_one(old: _T, new: _T, *, replace: frozenset[str] = frozenset()) -> _T:
    changes = {}
    for field in dataclasses.fields(new):
        value = getattr(new, field.name)
        if field.name in replace or value not in (None, ()):
            changes[field.name] = value
    return dataclasses.replace(old, **changes)


def _merge_all(
    old: tuple[_T, ...],
    new: tuple[_T, ...],
    key: Callable[[_T], Hashable],
    *,
    replace: frozenset[str] = frozenset(),
) -> tuple[_T, ...]:
    merged = {key(item): item for item in old}
    for item in new:
        k = key(item)
        merged[k] = _merge_one(merged[k], item, replace=replace) if k in merged else item
    return tuple(merged.values())


def _close_stopped_sessions(model: RecordingMetadata) -> RecordingMetadata:
    stops = {s.session_id: s.stop_time for s in model.sessions if s.stop_time is not None}
    if not stops:
        return model
    assocs = tuple(
        dataclasses.replace(a, disassociate_time=stops[a.session_id])
        if a.session_id in stops and a.disassociate_time is None
        else a
        for a in model.participant_session_assocs
    )
    return dataclasses.replace(model, participant_session_assocs=assocs)


def apply_update(model: RecordingMetadata, update: RecordingMetadata) -> RecordingMetadata:
    """Apply a metadata document received later in the same RS.

    Args:
        model: The current merged model (the first snapshot, or the result of earlier updates).
        update: The newly parsed document, applied in CSeq order by the caller (RFC 7866 §9.2).

    Returns:
        `update` itself when it is a complete snapshot, else the merged model (datamode stays
        that of `model`). Anomalies of both documents are kept.
    """
    if update.datamode is DataMode.COMPLETE:
        return _close_stopped_sessions(update)
    has_inline = frozenset({"send", "recv"})
    participants = _merge_all(model.participants, (), lambda p: p.participant_id)
    for p in update.participants:
        # Draft-style inline send/recv replace the old sets only when the update lists any.
        replace = has_inline if (p.send or p.recv) else frozenset()
        participants = _merge_all(participants, (p,), lambda x: x.participant_id, replace=replace)
    merged = dataclasses.replace(
        model,
        groups=_merge_all(model.groups, update.groups, lambda g: g.group_id),
        sessions=_merge_all(model.sessions, update.sessions, lambda s: s.session_id),
        participants=participants,
        streams=_merge_all(model.streams, update.streams, lambda s: s.stream_id),
        session_recording_assocs=_merge_all(
            model.session_recording_assocs, update.session_recording_assocs, lambda a: a.session_id
        ),
        participant_session_assocs=_merge_all(
            model.participant_session_assocs,
            update.participant_session_assocs,
            lambda a: (a.participant_id, a.session_id),
        ),
        participant_stream_assocs=_merge_all(
            model.participant_stream_assocs,
            update.participant_stream_assocs,
            lambda a: a.participant_id,
            replace=frozenset({"send", "recv"}),
        ),
        hints=_merge_one(model.hints, update.hints),
        extensions=model.extensions + update.extensions,
        anomalies=model.anomalies + update.anomalies,
    )
    return _close_stopped_sessions(merged)
