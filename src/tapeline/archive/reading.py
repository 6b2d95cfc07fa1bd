"""Reading records: search and show, with the role checks and the audit entries they need."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tapeline.archive import audit
from tapeline.archive.access import Action, require, team_scope
from tapeline.archive.core import Archive
from tapeline.archive.models import Interaction, Recording, StoredObject
from tapeline.archive.records import Filters, search, to_record
from tapeline.errors import AccessDenied, NotFound


def find(archive: Archive, actor: audit.Actor, filters: Filters) -> list[dict[str, Any]]:
    """Search as `actor` (supervisors see only their teams). The search itself is audited."""
    require(actor, Action.SEARCH)
    scoped = replace(
        filters,
        teams_scope=team_scope(actor, Action.SEARCH),
        region=archive.config.node.default_region,
    )
    with archive.index.write() as session:
        results = search(session, scoped)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="record.searched",
            object_type="search",
            object_id=None,
            details={"results": len(results)},
        )
    return results


def show(
    archive: Archive, actor: audit.Actor, interaction_id: str, *, audio: bool = False
) -> tuple[dict[str, Any], bytes | None]:
    """One record, and its decrypted recording when asked; both accesses are audited.

    Raises:
        AccessDenied: the actor may not read it (role, or team scope).
        NotFound: no such record, or no recording when audio is asked for.
    """
    require(actor, Action.PLAY if audio else Action.SEARCH)
    with archive.index.write() as session:
        row = session.get(Interaction, interaction_id)
        if row is None:
            raise NotFound(f"no interaction {interaction_id}")
        scope = team_scope(actor, Action.SEARCH)
        if scope is not None and row.line_team not in scope:
            raise AccessDenied(f"{actor.name} may not read records of team {row.line_team!r}")
        record = to_record(session, row)
        data = None
        if audio:
            rec = session.get(Recording, interaction_id)
            obj = session.get(StoredObject, rec.object_id) if rec else None
            if obj is None or obj.wrapped_key is None:
                raise NotFound(f"interaction {interaction_id} has no recording")
            data = archive.vault.load(obj.id, obj.wrapped_key, obj.sha256)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="recording.played" if audio else "record.viewed",
            object_type="interaction",
            object_id=interaction_id,
        )
    return record, data
