"""Legal holds: placed by `legal`, released only by a second `legal` account, never bypassed.

Theory of operation: a hold has scopes (search filters or a saved search). When it is placed,
every matching record gets a `held_records` row; every record filed later is checked against the
scopes of every unreleased hold in the filing transaction (`apply_at_filing`). Whether a record is
held is answered by `held_ids`, which looks at both the rows and the scopes themselves, so a
deleted `held_records` row does not free a record. A record is held while any of its holds is not
`released`; release is a request (with a reason) and an approval by somebody else.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Action, allowed, require
from tapeline.archive.core import Archive
from tapeline.archive.models import (
    HeldRecord,
    Hold,
    HoldScope,
    SavedSearch,
    StoredObject,
    utcnow,
)
from tapeline.archive.records import iso
from tapeline.archive.searches import matching_ids, resolve
from tapeline.errors import AccessDenied, NotFound, TapelineError
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit

ACTIVE = "active"
RELEASE_REQUESTED = "release-requested"
RELEASED = "released"
HOLDING_STATES = (ACTIVE, RELEASE_REQUESTED)


def _scopes(session: Session, hold_id: int) -> list[dict[str, Any]]:
    """The effective filters of each scope of a hold (a saved search's filters, then overrides)."""
    out = []
    for scope in session.execute(select(HoldScope).where(HoldScope.hold_id == hold_id)).scalars():
        filters = dict(scope.filters)
        if scope.saved_search_id is not None:
            search = session.get_one(SavedSearch, scope.saved_search_id)
            filters = {**search.filters, **filters}
        out.append(filters)
    return out


def _holding(session: Session) -> list[Hold]:
    return list(session.execute(select(Hold).where(Hold.state.in_(HOLDING_STATES))).scalars())


def held_ids(session: Session, ids: list[str], *, region: str) -> set[str]:
    """Which of these records are held now: by a recorded application or by a live scope match."""
    if not ids:
        return set()
    holding = _holding(session)
    if not holding:
        return set()
    found = set(
        session.execute(
            select(HeldRecord.interaction_id).where(
                HeldRecord.interaction_id.in_(ids),
                HeldRecord.hold_id.in_([h.id for h in holding]),
            )
        ).scalars()
    )
    for hold in holding:
        for scope in _scopes(session, hold.id):
            found |= matching_ids(session, scope, region=region, among=ids)
    return found


def apply_at_filing(session: Session, interaction_id: str, *, region: str) -> list[int]:
    """Apply every unreleased hold whose scope matches a record being filed; returns hold ids."""
    applied = []
    now = utcnow()
    for hold in _holding(session):
        if any(
            matching_ids(session, scope, region=region, among=[interaction_id])
            for scope in _scopes(session, hold.id)
        ):
            session.add(HeldRecord(hold_id=hold.id, interaction_id=interaction_id, applied_at=now))
            applied.append(hold.id)
    return applied


def _find(session: Session, matter: str) -> Hold:
    hold = session.execute(
        select(Hold).where(Hold.matter == matter, Hold.state.in_(HOLDING_STATES))
    ).scalar_one_or_none()
    if hold is None:
        raise NotFound(f"no hold for matter {matter!r}")
    return hold


def _set_object_holds(archive: Archive, interaction_ids: set[str], *, on: bool) -> None:
    """Mirror the hold on the objects (S3 Object Lock legal hold; nothing on a local disk)."""
    if not interaction_ids or not archive.vault.store.worm:
        return
    with archive.index.read() as session:
        objects = session.execute(
            select(StoredObject.id).where(
                StoredObject.interaction_id.in_(sorted(interaction_ids)),
                StoredObject.purged_at.is_(None),
            )
        ).scalars()
        for object_id in objects:
            archive.vault.store.set_legal_hold(object_id, on=on)


def place_hold(
    archive: Archive,
    actor: audit.Actor,
    *,
    matter: str,
    scope: dict[str, Any],
    saved_search: str | None = None,
) -> dict[str, Any]:
    """Place a hold on every record the scope matches now and later; audited and announced.

    Raises:
        AccessDenied: the actor lacks the legal role.
        NotFound: the saved search does not exist.
        TapelineError: no scope, or an unreleased hold for this matter exists already.
    """
    require(actor, Action.HOLD)
    if not scope and saved_search is None:
        raise TapelineError("a hold needs a scope: a party, line, team, channel, dates or search")
    region = archive.config.node.default_region
    with archive.index.write() as session:
        if session.execute(
            select(Hold.id).where(Hold.matter == matter, Hold.state.in_(HOLDING_STATES))
        ).first():
            raise TapelineError(f"matter {matter!r} is already on hold")
        search_id = resolve(session, saved_search).id if saved_search else None
        now = utcnow()
        hold = Hold(matter=matter, state=ACTIVE, placed_by=actor.name, placed_at=now)
        session.add(hold)
        session.flush()
        session.add(HoldScope(hold_id=hold.id, filters=scope, saved_search_id=search_id))
        session.flush()
        ids: set[str] = set()
        for effective in _scopes(session, hold.id):
            ids |= matching_ids(session, effective, region=region)
        for rid in sorted(ids):
            session.add(HeldRecord(hold_id=hold.id, interaction_id=rid, applied_at=now))
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="hold.placed",
            object_type="hold",
            object_id=str(hold.id),
            details={
                "matter": matter,
                "scope": scope,
                "saved_search": saved_search,
                "records": sorted(ids),
            },
        )
        emit(
            session,
            node_id=archive.node_id,
            type_=EventType.HOLD_PLACED,
            data={"hold_id": hold.id, "interactions": len(ids)},
        )
        info = describe(session, hold)
    _set_object_holds(archive, ids, on=True)
    return info


def request_release(
    archive: Archive, actor: audit.Actor, *, matter: str, reason: str
) -> dict[str, Any]:
    """Ask for a hold to be released (a second legal account must approve).

    Raises:
        AccessDenied: the actor lacks the legal role.
        NotFound: no unreleased hold for the matter.
        TapelineError: no reason given, or a release is already requested.
    """
    require(actor, Action.HOLD)
    if not reason.strip():
        raise TapelineError("a release needs a reason")
    with archive.index.write() as session:
        hold = _find(session, matter)
        if hold.state != ACTIVE:
            raise TapelineError(f"release of {matter!r} was already requested")
        hold.state = RELEASE_REQUESTED
        hold.release_requested_by = actor.name
        hold.release_requested_at = utcnow()
        hold.release_reason = reason
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="hold.release_requested",
            object_type="hold",
            object_id=str(hold.id),
            details={"matter": matter, "reason": reason},
        )
        return describe(session, hold)


def approve_release(archive: Archive, actor: audit.Actor, *, matter: str) -> dict[str, Any]:
    """Approve a requested release; the hold ends and its records return to retention.

    Raises:
        AccessDenied: the actor lacks the legal role, or asked for this release themselves
            (the refusal is audited).
        NotFound: no unreleased hold for the matter.
        TapelineError: nobody has requested the release.
    """
    require(actor, Action.HOLD)
    with archive.index.write() as session:
        hold = _find(session, matter)
        if hold.state != RELEASE_REQUESTED:
            raise TapelineError(f"nobody has requested the release of {matter!r}")
        refused = hold.release_requested_by == actor.name
        if not refused:
            hold.state = RELEASED
            hold.released_by = actor.name
            hold.released_at = utcnow()
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="hold.release_refused" if refused else "hold.released",
            object_type="hold",
            object_id=str(hold.id),
            details={"matter": matter, "requested_by": hold.release_requested_by},
        )
        if not refused:
            emit(
                session,
                node_id=archive.node_id,
                type_=EventType.HOLD_RELEASED,
                data={"hold_id": hold.id},
            )
        info = describe(session, hold)
        freed = set(
            session.execute(
                select(HeldRecord.interaction_id).where(HeldRecord.hold_id == hold.id)
            ).scalars()
        )
        region = archive.config.node.default_region
        freed -= held_ids(session, sorted(freed), region=region)
    if refused:
        raise AccessDenied(f"{actor.name} requested this release and cannot approve it")
    _set_object_holds(archive, freed, on=False)
    return info


def list_holds(archive: Archive, *, include_released: bool = True) -> list[dict[str, Any]]:
    """Every hold (the hold report), newest first, with how many records each covers."""
    with archive.index.read() as session:
        query = select(Hold).order_by(Hold.placed_at.desc(), Hold.id.desc())
        if not include_released:
            query = query.where(Hold.state.in_(HOLDING_STATES))
        return [describe(session, h) for h in session.execute(query).scalars()]


def hold_report(archive: Archive, actor: audit.Actor) -> list[dict[str, Any]]:
    """The hold report for the people who act on holds: legal, records managers, auditors.

    Raises:
        AccessDenied: the actor has none of those roles.
    """
    if not any(allowed(actor, a) for a in (Action.HOLD, Action.RETENTION, Action.READ_AUDIT)):
        raise AccessDenied(f"{actor.name} may not read the hold report")
    return list_holds(archive)


def matter_of(archive: Archive, hold_id: int) -> str:
    """The matter of an unreleased hold (the API names holds by id, the engine by matter).

    Raises:
        NotFound: no unreleased hold has that id.
    """
    with archive.index.read() as session:
        hold = session.get(Hold, hold_id)
        if hold is None or hold.state not in HOLDING_STATES:
            raise NotFound(f"no unreleased hold {hold_id}")
        return hold.matter


def describe(session: Session, hold: Hold) -> dict[str, Any]:
    """A hold as JSON."""
    count = session.execute(
        select(func.count()).select_from(HeldRecord).where(HeldRecord.hold_id == hold.id)
    ).scalar_one()
    return {
        "id": hold.id,
        "matter": hold.matter,
        "state": hold.state,
        "scopes": _scopes(session, hold.id),
        "records": count,
        "placed_by": hold.placed_by,
        "placed_at": iso(hold.placed_at),
        "release_requested_by": hold.release_requested_by,
        "release_reason": hold.release_reason,
        "released_by": hold.released_by,
        "released_at": iso(hold.released_at),
    }
