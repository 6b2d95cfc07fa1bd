"""Saved searches: a named, stored set of filters that holds and extensions can be scoped by.

Scopes are kept as JSON filters (the same fields `tapeline query` takes) and turned back into
`records.Filters` when used, so a hold or extension on a saved search matches whatever the search
matches now and later, through the one query builder.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Action, allowed
from tapeline.archive.core import Archive
from tapeline.archive.models import Interaction, SavedSearch, utcnow
from tapeline.archive.records import Filters, build_query, iso
from tapeline.errors import AccessDenied, NotFound, TapelineError

SCOPE_KEYS = ("party", "line", "team", "channel", "kind", "since", "until")
_TIME_KEYS = frozenset({"since", "until"})


def scope_from(**values: str | datetime | None) -> dict[str, Any]:
    """The JSON form of a scope: only the filters given, times as RFC 3339."""
    out: dict[str, Any] = {}
    for key in SCOPE_KEYS:
        value = values.get(key)
        if value is None or value == "":
            continue
        out[key] = iso(value) if isinstance(value, datetime) else value
    return out


def filters_from(scope: dict[str, Any], *, region: str) -> Filters:
    """A stored scope as search filters (hidden records included: a hold covers everything)."""
    values: dict[str, Any] = {}
    for key in SCOPE_KEYS:
        if key not in scope:
            continue
        raw = scope[key]
        values[key] = datetime.fromisoformat(raw) if key in _TIME_KEYS else raw
    return Filters(**values, include_hidden=True, region=region)


def matching_ids(
    session: Session, scope: dict[str, Any], *, region: str, among: list[str] | None = None
) -> set[str]:
    """Ids of the live (not purged) records a scope matches, optionally among some ids only."""
    filters = filters_from(scope, region=region)
    if among is not None:
        if not among:
            return set()
        filters = replace(filters, ids=among)
    query = build_query(session, filters).where(Interaction.purged_at.is_(None))
    return {row.id for row in session.execute(query).scalars()}


def resolve(session: Session, name: str) -> SavedSearch:
    """A saved search by name.

    Raises:
        NotFound: no saved search has that name.
    """
    row = session.execute(select(SavedSearch).where(SavedSearch.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no saved search named {name!r}")
    return row


def save_search(
    archive: Archive, actor: audit.Actor, *, name: str, scope: dict[str, Any]
) -> dict[str, Any]:
    """Store a search under a name (for holds, extensions and later queries); audited.

    Raises:
        AccessDenied: the actor can neither search, hold nor manage retention.
        TapelineError: the name is taken, or the search has no filter at all.
    """
    if not any(allowed(actor, a) for a in (Action.SEARCH, Action.HOLD, Action.RETENTION)):
        raise AccessDenied(f"{actor.name} may not save searches")
    if not scope:
        raise TapelineError("a saved search needs at least one filter")
    with archive.index.write() as session:
        taken = session.execute(select(SavedSearch.id).where(SavedSearch.name == name)).first()
        if taken is not None:
            raise TapelineError(f"a saved search named {name!r} exists already")
        row = SavedSearch(name=name, owner=actor.name, filters=scope, created_at=utcnow())
        session.add(row)
        session.flush()
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="search.saved",
            object_type="saved_search",
            object_id=str(row.id),
            details={"name": name, "filters": scope},
        )
        return describe(row)


def list_searches(archive: Archive) -> list[dict[str, Any]]:
    """Every saved search."""
    with archive.index.read() as session:
        rows = session.execute(select(SavedSearch).order_by(SavedSearch.name)).scalars()
        return [describe(r) for r in rows]


def describe(row: SavedSearch) -> dict[str, Any]:
    """A saved search as JSON."""
    return {
        "id": row.id,
        "name": row.name,
        "owner": row.owner,
        "filters": row.filters,
        "created_at": iso(row.created_at),
    }
