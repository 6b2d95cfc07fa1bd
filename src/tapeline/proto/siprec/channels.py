"""Which stream is the recorded employee line: siprec.md §9.3 and §11.3, DESIGN §4 step 5.

Strategy: first resolve who speaks into which stream label: `participantstreamassoc/send`, else
the draft inline `participant/send`, else document order (participant n ↔ stream n, flagged),
as §9.3 item 5 orders the fallbacks. Then pick the employee, stopping at the first decisive rule
of §11.3: a vendor recorded-party field, then exactly one participant on a provisioned line, then
a vendor call direction together with a calling-party marker. Channel 0 is what the employee
sends, channel 1 what the others send. Label order and participant order never decide who the
employee is: when no rule decides, the result says UNRESOLVED and keeps SDP order only so audio
is not lost (§11.3: "store in the unassigned bucket and raise an alert").
"""

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tapeline.proto.siprec.model import CallDirection, Participant, RecordingMetadata
from tapeline.proto.siprec.parties import aor_number, identity

Normaliser = Callable[[str], str | None]


class ChannelRule(StrEnum):
    """The rule that chose the employee (siprec.md §11.3 match order)."""

    RECORDED_PARTY = "recorded-party"  # Metaswitch recordedParty, BroadWorks userID + callType
    PROVISIONED_LINE = "provisioned-line"  # exactly one participant is a provisioned line
    INTERNAL_CALL = "internal-call"  # several provisioned participants; first sender chosen
    DIRECTION_HINT = "direction-hint"  # call direction + calling-party marker (Oracle, Intrado)
    UNRESOLVED = "unresolved"  # no rule decided: unassigned bucket, alert


class SpeakerSource(StrEnum):
    """Where the participant → stream mapping came from (siprec.md §9.3 items 2 and 5)."""

    STREAM_ASSOCIATION = "participantstreamassoc"
    INLINE_SEND = "inline-send"
    DOCUMENT_ORDER = "document-order"
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelMap:
    """Channel 0 (employee) and channel 1 (other party) stream labels, and why."""

    employee_label: str | None
    other_label: str | None
    rule: ChannelRule
    speakers: SpeakerSource
    employee_participant_id: str | None = None
    other_participant_ids: tuple[str, ...] = ()
    mixed: bool = False  # one stream carries every party: mono, all parties listed


def _speakers(meta: RecordingMetadata) -> tuple[dict[str, list[str]], SpeakerSource]:
    labels = {s.stream_id: s.label for s in meta.streams if s.label}
    sends: dict[str, list[str]] = {}
    for assoc in meta.participant_stream_assocs:
        sends[assoc.participant_id] = [labels[i] for i in assoc.send if i in labels]
    if any(sends.values()):
        return sends, SpeakerSource.STREAM_ASSOCIATION
    inline = {
        p.participant_id: [labels[i] for i in p.send if i in labels] for p in meta.participants
    }
    if any(inline.values()):
        return inline, SpeakerSource.INLINE_SEND
    ordered = [s.label for s in meta.streams if s.label]
    if ordered and len(ordered) == len(meta.participants):
        by_order = {p.participant_id: [ordered[n]] for n, p in enumerate(meta.participants)}
        return by_order, SpeakerSource.DOCUMENT_ORDER
    return {}, SpeakerSource.NONE


def _numbers(participant: Participant, normalise: Normaliser) -> set[str]:
    found = set()
    for name_id in participant.name_ids:
        for candidate in (name_id.aor, name_id.name):
            number = normalise(candidate) if candidate else None
            if number:
                found.add(number)
    return found


def _by_number(
    meta: RecordingMetadata, number: str | None, normalise: Normaliser
) -> Participant | None:
    target = normalise(number) if number else None
    if not target:
        return None
    return next((p for p in meta.participants if target in _numbers(p, normalise)), None)


def _caller(meta: RecordingMetadata, normalise: Normaliser) -> Participant | None:
    marked = [p for p in meta.participants if p.calling is True]
    if len(marked) == 1:
        return marked[0]
    if meta.hints.from_header:  # Sonus callData/fromhdr is the caller's From
        return _by_number(meta, identity(meta.hints.from_header).uri, normalise)
    return _by_number(meta, meta.hints.calling_number, normalise)


def _recorded_party(meta: RecordingMetadata, normalise: Normaliser) -> Participant | None:
    hints = meta.hints
    if hints.recorded_party:
        return _by_number(meta, hints.recorded_party, normalise)
    if hints.direction is CallDirection.TERMINATING:
        return _by_number(meta, hints.called_number, normalise)
    if hints.direction is CallDirection.ORIGINATING:
        return _by_number(meta, hints.calling_number, normalise)
    return None


def _choose(
    meta: RecordingMetadata, provisioned: Collection[str], normalise: Normaliser
) -> tuple[Participant | None, ChannelRule]:
    recorded = _recorded_party(meta, normalise)
    if recorded is not None:
        return recorded, ChannelRule.RECORDED_PARTY
    lines = {n for n in (normalise(p) for p in provisioned) if n}
    matches = [p for p in meta.participants if _numbers(p, normalise) & lines]
    if len(matches) == 1:
        return matches[0], ChannelRule.PROVISIONED_LINE
    caller = _caller(meta, normalise)
    if len(matches) > 1:
        chosen = caller if caller in matches else matches[0]
        return chosen, ChannelRule.INTERNAL_CALL
    if caller is not None and meta.hints.direction is not None:
        if meta.hints.direction is CallDirection.ORIGINATING:
            return caller, ChannelRule.DIRECTION_HINT
        others = [p for p in meta.participants if p is not caller]
        if len(others) == 1:
            return others[0], ChannelRule.DIRECTION_HINT
    return None, ChannelRule.UNRESOLVED


def map_channels(
    meta: RecordingMetadata,
    *,
    provisioned_lines: Collection[str],
    sdp_labels: Sequence[str] = (),
    normalise: Normaliser = aor_number,
) -> ChannelMap:
    """Decide which stream label goes to channel 0 (employee) and which to channel 1.

    Args:
        meta: The merged metadata of the RS.
        provisioned_lines: The trunk's recorded lines, already normalised (E.164 strings).
        sdp_labels: The offer's `a=label` values in m-line order (used for mixed and unresolved
            calls only, never to pick the employee).
        normalise: Turns an AoR, display name or vendor number into the form of
            `provisioned_lines` (E.164 via libphonenumber outside `proto/`); the default only
            strips (`tapeline.proto.siprec.parties.aor_number`).

    Returns:
        The channel map with the rule that decided it.
    """
    sends, source = _speakers(meta)
    all_labels = [s.label for s in meta.streams if s.label] or list(sdp_labels)
    unique = list(dict.fromkeys(all_labels))
    mixed = len(unique) == 1 and (
        len(meta.participants) > 1 or any(s.mode == "mixed" for s in meta.streams)
    )
    employee, rule = _choose(meta, provisioned_lines, normalise)
    others = tuple(p.participant_id for p in meta.participants if p is not employee)
    if mixed:
        return ChannelMap(
            employee_label=unique[0],
            other_label=None,
            rule=rule,
            speakers=source,
            employee_participant_id=employee.participant_id if employee else None,
            other_participant_ids=others,
            mixed=True,
        )
    if employee is None:
        order = list(dict.fromkeys(list(sdp_labels) or unique))
        return ChannelMap(
            employee_label=order[0] if order else None,
            other_label=order[1] if len(order) > 1 else None,
            rule=rule,
            speakers=source,
            other_participant_ids=others,
        )
    ch0 = next(iter(sends.get(employee.participant_id, [])), None)
    ch1 = next((lbl for pid in others for lbl in sends.get(pid, []) if lbl != ch0), None)
    remaining = [lbl for lbl in unique if lbl not in {ch0, ch1}]
    if ch0 is None and ch1 is not None and len(remaining) == 1:
        ch0 = remaining[0]  # employee on hold: the stream nobody else sends is theirs
    elif ch1 is None and ch0 is not None and len(remaining) == 1:
        ch1 = remaining[0]
    return ChannelMap(
        employee_label=ch0,
        other_label=ch1,
        rule=rule,
        speakers=source,
        employee_participant_id=employee.participant_id,
        other_participant_ids=others,
    )
