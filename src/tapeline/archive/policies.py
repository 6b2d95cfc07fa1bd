"""Retention in the index: classes, policies, proposals (two records managers) and extensions.

Theory of operation: on first start the shipped class templates and the config's
`[[retention.classes]]` and `[[retention.policies]]` are written to the index
(`ensure_seeded`); from then on the index is authoritative. A class or policy changes only
through a proposal approved by a different records manager, and a policy applies to records
filed after its approval (C-54). Extensions (a record, or a saved search and so every record
matching it now or later) only lengthen retention; asking for a shorter `retain_until` is
refused and audited (C-17).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Action, allowed, require
from tapeline.archive.core import Archive
from tapeline.archive.db import serialise
from tapeline.archive.models import (
    Interaction,
    RetentionClassRow,
    RetentionExtension,
    RetentionPolicyRow,
    RetentionProposal,
    SavedSearch,
    utcnow,
)
from tapeline.archive.records import iso
from tapeline.archive.retention import (
    START_CREATION,
    START_EVENT,
    START_FISCAL_YEAR_END,
    Policy,
    RecordFacts,
    RetentionClass,
    RetentionDecision,
    add_years,
    calendar_years,
    classes_from,
    decide,
    load_templates,
    maximum_until,
    minimum_until,
)
from tapeline.archive.searches import matching_ids, resolve
from tapeline.config import Config
from tapeline.errors import AccessDenied, NotFound, TapelineError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAYS_PER_YEAR = 365.25
KIND_CLASS = "class"
KIND_POLICY = "policy"
STARTS = (START_CREATION, START_FISCAL_YEAR_END, START_EVENT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """The classes and the policies in force at one moment."""

    classes: dict[str, RetentionClass]
    policies: list[Policy]


def _class_row(cls: RetentionClass, now: datetime, version: int = 1) -> RetentionClassRow:
    return RetentionClassRow(
        name=cls.name,
        minimum_days=cls.minimum_days,
        maximum_days=cls.maximum_days,
        accessible_days=cls.accessible_days,
        start=cls.start,
        rule=cls.rule,
        version=version,
        updated_at=now,
    )


def ensure_seeded(session: Session, config: Config, *, node_id: str) -> bool:
    """Load templates and configured classes and policies into an index that has none yet."""
    if session.execute(select(func.count()).select_from(RetentionClassRow)).scalar_one():
        return False
    # Several nodes may start together on one fresh index: one seeds, the others then see it.
    serialise(session, "retention-seed")
    if session.execute(select(func.count()).select_from(RetentionClassRow)).scalar_one():
        return False
    now = utcnow()
    classes = load_templates()
    classes.update(
        {c.name: c for c in classes_from(c.model_dump() for c in config.retention.classes)}
    )
    for cls in classes.values():
        session.add(_class_row(cls, now))
    for policy in config.retention.policies:
        session.add(
            RetentionPolicyRow(
                name=policy.name,
                class_name=policy.retention_class,
                match=policy.criteria(),
                effective_from=EPOCH,
                retired_at=None,
            )
        )
    session.flush()
    audit.append(
        session,
        node_id=node_id,
        actor=audit.Actor.system("retention"),
        action="retention.seeded",
        object_type="retention",
        object_id=None,
        details={
            "classes": sorted(classes),
            "policies": [p.name for p in config.retention.policies],
        },
    )
    return True


def seed(archive: Archive) -> bool:
    """Seed the index's classes and policies if this is its first start (the recorder's start)."""
    with archive.index.write() as session:
        return ensure_seeded(session, archive.config, node_id=archive.node_id)


def _to_class(row: RetentionClassRow) -> RetentionClass:
    return RetentionClass(
        name=row.name,
        minimum_days=row.minimum_days,
        maximum_days=row.maximum_days,
        accessible_days=row.accessible_days,
        start=row.start,
        rule=row.rule,
    )


def _to_policy(row: RetentionPolicyRow) -> Policy:
    return Policy(name=row.name, retention_class=row.class_name, **row.match)


def load_rules(session: Session, *, at: datetime | None = None) -> Rules:
    """The classes, and the policies in force at `at` (default now)."""
    moment = at or utcnow()
    classes = {r.name: _to_class(r) for r in session.execute(select(RetentionClassRow)).scalars()}
    rows = session.execute(
        select(RetentionPolicyRow)
        .where(RetentionPolicyRow.effective_from <= moment)
        .where((RetentionPolicyRow.retired_at.is_(None)) | (RetentionPolicyRow.retired_at > moment))
        .order_by(RetentionPolicyRow.name)
    ).scalars()
    return Rules(classes=classes, policies=[_to_policy(r) for r in rows])


def floor_class(session: Session, name: str) -> RetentionClass | None:
    """The class as the index has it, never shorter than the shipped template of the same name.

    The recorder checks expiry against this, so a forged class row cannot shorten retention
    below what Tapeline ships.
    """
    row = session.get(RetentionClassRow, name)
    template = load_templates().get(name)
    if row is None:
        return template
    cls = _to_class(row)
    if template is not None and template.minimum_days > cls.minimum_days:
        return template
    return cls


def decide_for_filing(
    session: Session, archive: Archive, facts: RecordFacts, *, requested: str | None
) -> RetentionDecision:
    """The class and `retain_until` for a record being filed, by the rules in force now."""
    config = archive.config
    ensure_seeded(session, config, node_id=archive.node_id)
    rules = load_rules(session)
    return decide(
        facts,
        classes=rules.classes,
        policies=rules.policies,
        default_class=config.retention.default_class,
        requested=requested,
        fiscal_end=config.retention.fiscal_year_end,
    )


def extend_at_filing(session: Session, archive: Archive, row: Interaction) -> None:
    """Apply extensions on saved searches the new (flushed) record matches."""
    region = archive.config.node.default_region
    extensions = session.execute(
        select(RetentionExtension).where(RetentionExtension.saved_search_id.is_not(None))
    ).scalars()
    for ext in extensions:
        search = session.get_one(SavedSearch, ext.saved_search_id)
        if not matching_ids(session, search.filters, region=region, among=[row.id]):
            continue
        extended = _extended_until(ext, row.started_at)
        ceiling = _ceiling(session, row, archive.config.retention.fiscal_year_end)
        note = ""
        if ceiling is not None and extended > ceiling:
            extended, note = ceiling, f" (capped at the class maximum {iso(ceiling)})"
        if extended > row.retain_until:
            row.retain_until = extended
            trace = [*row.details.get("retention_trace", [])]
            trace.append(f"extension {ext.id} on saved search {search.name}: {ext.reason}{note}")
            row.details = {**row.details, "retention_trace": trace}


def _ceiling(session: Session, row: Interaction, fiscal_end: str) -> datetime | None:
    """The latest date the record's class (as the index has it) lets an extension reach."""
    class_row = session.get(RetentionClassRow, row.retention_class)
    if class_row is None:
        return None
    return maximum_until(_to_class(class_row), row.started_at, fiscal_end)


def _extended_until(ext: RetentionExtension, started_at: datetime) -> datetime:
    if ext.retain_until is not None:
        return ext.retain_until
    until = started_at + timedelta(days=ext.minimum_days or 0)
    years = calendar_years(ext.minimum_days or 0)  # "7 years" means calendar years
    return max(until, add_years(started_at, years)) if years else until


# --- proposals --------------------------------------------------------------------------------


def propose(
    archive: Archive, actor: audit.Actor, *, kind: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Propose a new or changed class or policy; another records manager must approve it.

    Raises:
        AccessDenied: the actor is not a records manager.
        TapelineError: the proposal is malformed (unknown class, maximum below minimum...).
    """
    require(actor, Action.RETENTION)
    with archive.index.write() as session:
        ensure_seeded(session, archive.config, node_id=archive.node_id)
        _check_payload(session, kind, payload)
        row = RetentionProposal(
            kind=kind,
            payload=payload,
            proposed_by=actor.name,
            proposed_at=utcnow(),
            state="open",
            decided_by=None,
            decided_at=None,
        )
        session.add(row)
        session.flush()
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="retention.proposed",
            object_type="retention_proposal",
            object_id=str(row.id),
            details={"kind": kind, "payload": payload},
        )
        return _describe_proposal(row)


def _check_payload(session: Session, kind: str, payload: dict[str, Any]) -> None:
    if kind == KIND_CLASS:
        minimum, maximum = payload.get("minimum_days"), payload.get("maximum_days")
        if not isinstance(minimum, int) or minimum < 1:
            raise TapelineError("a class needs minimum_days >= 1")
        if maximum is not None and maximum < minimum:
            raise TapelineError("maximum_days is below minimum_days")
        if payload.get("start") not in {None, *STARTS}:
            raise TapelineError(f"unknown start {payload.get('start')!r}")
    elif kind == KIND_POLICY:
        if session.get(RetentionClassRow, payload.get("class")) is None:
            raise TapelineError(f"unknown retention class {payload.get('class')!r}")
        if not payload.get("match"):
            raise TapelineError("a policy needs at least one criterion")
    else:
        raise TapelineError(f"unknown proposal kind {kind!r}")


def approve(archive: Archive, actor: audit.Actor, proposal_id: int) -> dict[str, Any]:
    """Approve a proposal (by someone other than its proposer) and put it into force now.

    Raises:
        AccessDenied: not a records manager, or the proposer (the refusal is audited).
        NotFound: no open proposal with that id.
    """
    require(actor, Action.RETENTION)
    with archive.index.write() as session:
        row = session.get(RetentionProposal, proposal_id)
        if row is None or row.state != "open":
            raise NotFound(f"no open retention proposal {proposal_id}")
        refused = row.proposed_by == actor.name
        now = utcnow()
        if not refused:
            _apply(session, row, now)
            row.state = "approved"
            row.decided_by = actor.name
            row.decided_at = now
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="retention.approval_refused" if refused else "retention.approved",
            object_type="retention_proposal",
            object_id=str(row.id),
            details={"kind": row.kind, "payload": row.payload, "proposed_by": row.proposed_by},
        )
        info = _describe_proposal(row)
    if refused:
        raise AccessDenied(f"{actor.name} proposed this change and cannot approve it")
    return info


def _apply(session: Session, row: RetentionProposal, now: datetime) -> None:
    payload = row.payload
    if row.kind == KIND_CLASS:
        cls = classes_from([payload])[0]
        existing = session.get(RetentionClassRow, cls.name)
        if existing is None:
            session.add(_class_row(cls, now))
        else:
            existing.minimum_days = cls.minimum_days
            existing.maximum_days = cls.maximum_days
            existing.accessible_days = cls.accessible_days
            existing.start = cls.start
            existing.rule = cls.rule
            existing.version += 1
            existing.updated_at = now
        return
    old = session.execute(
        select(RetentionPolicyRow).where(
            RetentionPolicyRow.name == payload["name"], RetentionPolicyRow.retired_at.is_(None)
        )
    ).scalar_one_or_none()
    if old is not None:  # kept, retired: records filed before keep their trace's meaning
        old.retired_at = now
        old.name = f"{old.name}@{old.id}"
    session.flush()
    session.add(
        RetentionPolicyRow(
            name=payload["name"],
            class_name=payload["class"],
            match=payload["match"],
            effective_from=now,
            retired_at=None,
        )
    )


def _describe_proposal(row: RetentionProposal) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "payload": row.payload,
        "state": row.state,
        "proposed_by": row.proposed_by,
        "proposed_at": iso(row.proposed_at),
        "decided_by": row.decided_by,
        "decided_at": iso(row.decided_at),
    }


def overview(archive: Archive) -> dict[str, Any]:
    """Classes, policies in force and open proposals (`tapeline retention list`)."""
    with archive.index.write() as session:
        ensure_seeded(session, archive.config, node_id=archive.node_id)
        rules = load_rules(session)
        proposals = session.execute(
            select(RetentionProposal).order_by(RetentionProposal.id)
        ).scalars()
        return {
            "default_class": archive.config.retention.default_class,
            "classes": [c.as_dict() for c in sorted(rules.classes.values(), key=lambda c: c.name)],
            "policies": [
                {"name": p.name, "class": p.retention_class, "match": p.criteria()}
                for p in rules.policies
            ],
            "proposals": [_describe_proposal(p) for p in proposals],
        }


def retention_report(archive: Archive, actor: audit.Actor) -> dict[str, Any]:
    """`overview` for the people who act on retention: records managers, legal, auditors.

    Raises:
        AccessDenied: the actor has none of those roles.
    """
    if not any(allowed(actor, a) for a in (Action.RETENTION, Action.HOLD, Action.READ_AUDIT)):
        raise AccessDenied(f"{actor.name} may not read the retention classes and policies")
    return overview(archive)


# --- extensions -------------------------------------------------------------------------------


def extend(  # noqa: PLR0913  # one audited action; one argument per way of naming records
    archive: Archive,
    actor: audit.Actor,
    *,
    reason: str,
    interaction_id: str | None = None,
    saved_search: str | None = None,
    years: float | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Lengthen retention of a record or of a saved search (now and for future matches).

    `years` counts from each record's start (a MiFID 7-year extension); `until` is a date.

    Raises:
        AccessDenied: not a records manager, or the new date would shorten retention of a
            named record (refused and audited: nobody shortens retention).
        NotFound: no such record or saved search.
        TapelineError: neither or both of `years`/`until`, neither or both targets, no reason.
    """
    require(actor, Action.RETENTION)
    _check_extension(
        reason=reason, by_record=interaction_id is not None, by_search=saved_search is not None,
        by_years=years is not None, by_date=until is not None,
    )  # fmt: skip
    days = round(years * DAYS_PER_YEAR) if years is not None else None
    region = archive.config.node.default_region
    shortened: list[str] = []
    with archive.index.write() as session:
        search_id = None
        if saved_search is not None:
            search = resolve(session, saved_search)
            search_id = search.id
            ids = sorted(matching_ids(session, search.filters, region=region))
        else:
            if session.get(Interaction, interaction_id) is None:
                raise NotFound(f"no interaction {interaction_id}")
            ids = [interaction_id] if interaction_id else []
        ext = RetentionExtension(
            saved_search_id=search_id,
            interaction_id=interaction_id,
            retain_until=until,
            minimum_days=days,
            reason=reason,
            created_by=actor.name,
            created_at=utcnow(),
        )
        changed: dict[str, str] = {}
        capped: dict[str, str] = {}
        fiscal_end = archive.config.retention.fiscal_year_end
        for rid in ids:
            row = session.get_one(Interaction, rid)
            target, cap = _capped_target(session, ext, row, fiscal_end)
            capped.update(cap)
            if target > row.retain_until:
                changed[rid] = iso(target) or ""
                row.retain_until = target
                trace = list(row.details.get("retention_trace", []))
                trace.append(f"extended by {actor.name}: {reason}")
                row.details = {**row.details, "retention_trace": trace}
            elif interaction_id is not None and not cap:
                shortened.append(rid)
        if interaction_id is not None and capped and not changed:
            raise TapelineError(
                f"the record's class keeps it at most until {capped[interaction_id]}; "
                "a legal hold keeps one longer"
            )
        if shortened:
            audit.append(
                session,
                node_id=archive.node_id,
                actor=actor,
                action="retention.shorten_refused",
                object_type="interaction",
                object_id=interaction_id,
                details={"requested": iso(until) if until else days, "reason": reason},
            )
        else:
            session.add(ext)
            session.flush()
            audit.append(
                session,
                node_id=archive.node_id,
                actor=actor,
                action="retention.extended",
                object_type="saved_search" if search_id else "interaction",
                object_id=str(search_id) if search_id else interaction_id,
                details={
                    "reason": reason,
                    "records": changed,
                    "capped": capped,
                    "days": days,
                    "until": iso(until),
                },
            )
    if shortened:
        raise AccessDenied("retention can be extended, never shortened")
    for rid, when in changed.items():
        _extend_objects(archive, rid, datetime.fromisoformat(when))
    return {"extension": ext.id, "records": changed, "capped": capped}


def _check_extension(
    *, reason: str, by_record: bool, by_search: bool, by_years: bool, by_date: bool
) -> None:
    if by_years == by_date or by_record == by_search:
        raise TapelineError("give one of a record or a saved search, and one of years or until")
    if not reason.strip():
        raise TapelineError("an extension needs a reason")


def _capped_target(
    session: Session, ext: RetentionExtension, row: Interaction, fiscal_end: str
) -> tuple[datetime, dict[str, str]]:
    """Where an extension takes a record, and {id: class maximum} when it was capped there.

    A class maximum (GDPR Art 5(1)(e); MiFID's 7 years) bounds every extension; keeping a
    record longer than that is what a legal hold is for.
    """
    target = _extended_until(ext, row.started_at)
    ceiling = _ceiling(session, row, fiscal_end)
    if ceiling is not None and target > ceiling:
        return ceiling, {row.id: iso(ceiling) or ""}
    return target, {}


def _extend_objects(archive: Archive, interaction_id: str, until: datetime) -> None:
    """Carry a longer retention to a WORM target (nothing to do on a local disk)."""
    if not archive.vault.store.worm:
        return
    from tapeline.archive.models import StoredObject  # noqa: PLC0415

    with archive.index.read() as session:
        ids = session.execute(
            select(StoredObject.id).where(StoredObject.interaction_id == interaction_id)
        ).scalars()
        for object_id in ids:
            archive.vault.store.extend_retention(object_id, until)


def minimum_for(session: Session, row: Interaction, fiscal_end: str) -> datetime | None:
    """The earliest date the record's class allows it to go (None: the class is unknown)."""
    cls = floor_class(session, row.retention_class)
    if cls is None:
        return None
    return minimum_until(cls, row.started_at, fiscal_end)
