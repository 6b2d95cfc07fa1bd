"""Who is who in a plain fork INVITE: an SDP-only fork from a carrier or PBX, without rs-metadata.

siprec.md §11.3: with no metadata, the recorded employee line comes from the RS INVITE's headers
(configured vendor headers first, then P-Served-User, P-Asserted-Identity, To, the original called
number of a diversion, then From), each normalised to E.164 and matched against `[[lines]]`. The
direction follows from which side the employee is on: the calling party (PAI, else From) means
an outbound call. A fork delivers the calling party's audio on the first m-line and the called
party's on the second (the shape of the carrier forks in §11.1); so an inbound call swaps them,
and channel 0 is still the employee — decided by the line, never by "label 1 is the caller".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from tapeline.proto.sip import SipRequest
from tapeline.proto.siprec.parties import PartyIdentity, identity, parse_fork_parties


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkMapping:
    """The parties of a fork and which m-line carries the employee."""

    employee: str | None  # E.164 line number, None when no provisioned line matched
    employee_name: str | None
    other: str | None  # the counterparty's number (or raw identity when not a number)
    other_name: str | None
    direction: str  # "outbound", "inbound" or "unknown"
    swap: bool  # True: m-line 1 is the employee (an inbound call), so channels swap
    rule: str  # which header decided, kept with the record


def _number(party: PartyIdentity | None, normalise: Callable[[str], str | None]) -> str | None:
    if party is None or party.withheld:
        return None
    return normalise(party.uri) or party.number


NBR_HEADER = "X-Cisco-Recording-Participant"


def _media_index(value: str) -> int | None:
    for param in value.rpartition(">")[2].split(";"):
        name, _, raw = param.strip().partition("=")
        if name.lower() == "media-index" and raw.strip('"').isdigit():
            return int(raw.strip('"'))
    return None


def map_nbr(
    request: SipRequest, *, lines: Collection[str], normalise: Callable[[str], str | None]
) -> ForkMapping | None:
    """Cisco CUCM network-based recording: one participant header per m-line (siprec.md §2).

    `X-Cisco-Recording-Participant: <sip:NUMBER@host>;media-index="0"` names who is heard on
    m-line 0 and 1. The participant on a provisioned line is the employee; when it is on
    m-line 1 the channels swap. None when the headers are absent or name no m-line.
    """
    by_index: dict[int, PartyIdentity] = {}
    for value in request.headers.get_all(NBR_HEADER):
        index = _media_index(value)
        if index is not None:
            by_index[index] = identity(value.rpartition(">")[0] + ">" if ">" in value else value)
    if not by_index:
        return None
    numbers = {index: _number(party, normalise) for index, party in by_index.items()}
    employee_index = next((i for i, n in sorted(numbers.items()) if n in lines), None)
    if employee_index is None:
        return ForkMapping(
            employee=None,
            employee_name=None,
            other=next((n for n in numbers.values() if n), None),
            other_name=None,
            direction="unknown",
            swap=False,
            rule=f"{NBR_HEADER}: no provisioned line",
        )
    other_index = next((i for i in sorted(numbers) if i != employee_index), None)
    other = by_index.get(other_index) if other_index is not None else None
    return ForkMapping(
        employee=numbers[employee_index],
        employee_name=by_index[employee_index].display_name,
        other=(numbers.get(other_index) if other_index is not None else None)
        or (other.uri if other else None),
        other_name=other.display_name if other else None,
        direction="unknown",  # NBR headers do not say who called
        swap=employee_index == 1,
        rule=NBR_HEADER,
    )


def map_fork(
    request: SipRequest,
    *,
    lines: Collection[str],
    normalise: Callable[[str], str | None],
    extra_headers: Sequence[str] = (),
) -> ForkMapping:
    """Map a plain fork INVITE's headers to the employee line and the counterparty."""
    headers = request.headers
    parties = parse_fork_parties(
        from_header=headers.get("From"),
        to_header=headers.get("To"),
        p_asserted_identity=headers.get_all("P-Asserted-Identity"),
        p_served_user=headers.get("P-Served-User"),
        diversion=headers.get_all("Diversion"),
        history_info=headers.get_all("History-Info"),
    )
    calling = _number(parties.calling, normalise)
    called = _number(parties.called, normalise)
    original = _number(parties.original_called, normalise)
    configured = [
        (name, _number(identity(value), normalise))
        for name in extra_headers
        if (value := headers.get(name)) is not None
    ]
    served = _number(parties.served_user, normalise)
    candidates: list[tuple[str, str | None]] = [
        *configured,
        ("P-Served-User", served),
        ("P-Asserted-Identity", calling),
        ("To", called),
        ("Diversion", original),
    ]
    for rule, number in candidates:
        if number is None or number not in lines:
            continue
        # The employee placed the call when it is the asserted calling party; otherwise it is
        # the called, served or diverted-from party: an inbound call.
        outbound = number == calling
        own_party = parties.calling if outbound else parties.called
        other_party = parties.called if outbound else parties.calling
        return ForkMapping(
            employee=number,
            employee_name=own_party.display_name if own_party else None,
            other=_number(other_party, normalise) or (other_party.uri if other_party else None),
            other_name=other_party.display_name if other_party else None,
            direction="outbound" if outbound else "inbound",
            swap=not outbound,
            rule=rule,
        )
    caller = parties.calling
    return ForkMapping(
        employee=None,
        employee_name=None,
        other=calling or (caller.uri if caller else None),
        other_name=caller.display_name if caller else None,
        direction="unknown",
        swap=False,
        rule="no provisioned line in the headers",
    )
