"""Completeness: call detail records imported from CSV, reconciled against what was recorded.

CSV format (docs/cdr.md): a header row `start,end,from,to,call_id,line`, then one call per row;
`start`/`end` are RFC 3339 times with an offset, `from`/`to` numbers (E.164, or national in the
line's region), `call_id` the SIP Call-ID (may be empty), `line` the recorded line's E.164 number
(may be empty: then the configured line among `from`/`to`). A bad row refuses the whole file,
naming the row, so nothing is half-imported.

Reconciliation for a day (C-32, C-33): each CDR is matched to a recording by Call-ID, else by
line, counterparty and start time within ±2 s. Unmatched CDRs are *missing*, CDRs matched to a
capture failure are *failed*, recordings shorter than their CDR beyond the tolerance are *short*,
and capture-failure records and capture gaps on configured lines are *gaps*. Anything missing,
failed or short raises an alarm.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.core import Archive
from tapeline.archive.ids import new_id
from tapeline.archive.models import (
    AuditEntry,
    CallDetailRecord,
    CaptureGap,
    CounterpartyIdentifier,
    Interaction,
    Participant,
    utcnow,
)
from tapeline.archive.nodes import raise_alarm
from tapeline.archive.parties import identifier_for
from tapeline.archive.records import iso
from tapeline.archive.verify import replica_states
from tapeline.errors import TapelineError

REPLICA_IDS_KEPT = 200  # an audit entry stays small; the report itself lists every record
COLUMNS = ("start", "end", "from", "to", "call_id", "line")
MATCH_WINDOW = timedelta(seconds=2)
SHORTFALL_MS = 5000
SHORTFALL_RATIO = 0.05
ALARM = "reconcile.missing"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportResult:
    """What an import stored."""

    import_id: str
    rows: int
    sha256: str


def _time(value: str, row: int, column: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise TapelineError(f"CDR row {row}: {column} is not an RFC 3339 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise TapelineError(f"CDR row {row}: {column} needs a UTC offset: {value!r}")
    return parsed.astimezone(UTC)


def parse_cdrs(text: str, *, lines: set[str]) -> list[dict[str, Any]]:
    """Rows of a CDR CSV as dicts (pure: no index).

    Raises:
        TapelineError: a missing column or a bad row (named).
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise TapelineError(
            f"CDR file lacks columns: {', '.join(missing)} (need {','.join(COLUMNS)})"
        )
    out = []
    for row_number, row in enumerate(reader, start=2):
        start = _time(row["start"] or "", row_number, "start")
        end = _time(row["end"] or "", row_number, "end")
        if end < start:
            raise TapelineError(f"CDR row {row_number}: end is before start")
        parties = [(row["from"] or "").strip(), (row["to"] or "").strip()]
        if not all(parties):
            raise TapelineError(f"CDR row {row_number}: from and to are required")
        line = (row["line"] or "").strip() or next((p for p in parties if p in lines), None)
        out.append(
            {
                "row": row_number,
                "started_at": start,
                "ended_at": end,
                "from_number": parties[0],
                "to_number": parties[1],
                "call_id": (row["call_id"] or "").strip() or None,
                "line": line,
            }
        )
    return out


def import_cdrs(archive: Archive, actor: audit.Actor, data: bytes) -> ImportResult:
    """Store the CDRs of one CSV file; audited.

    Raises:
        TapelineError: the file is not UTF-8 CSV in the documented format.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TapelineError("CDR file is not UTF-8 text") from exc
    rows = parse_cdrs(text, lines={ln.number for ln in archive.config.lines})
    import_id = new_id()
    digest = hashlib.sha256(data).hexdigest()
    now = utcnow()
    with archive.index.write() as session:
        session.add_all(CallDetailRecord(import_id=import_id, imported_at=now, **r) for r in rows)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="cdr.imported",
            object_type="cdr_import",
            object_id=import_id,
            details={"rows": len(rows), "sha256": digest},
        )
    return ImportResult(import_id=import_id, rows=len(rows), sha256=digest)


def _identifiers(session: Session, row: Interaction) -> set[str]:
    found = {p.identifier for p in session.execute(
        select(Participant).where(Participant.interaction_id == row.id)
    ).scalars()}  # fmt: skip
    if row.counterparty_id is not None:
        found |= set(
            session.execute(
                select(CounterpartyIdentifier.identifier).where(
                    CounterpartyIdentifier.counterparty_id == row.counterparty_id
                )
            ).scalars()
        )
    return found


def _match(
    session: Session, cdr: CallDetailRecord, region: str, used: set[str]
) -> Interaction | None:
    live = (Interaction.purged_at.is_(None), Interaction.channel == "voice")
    if cdr.call_id:
        found = session.execute(
            select(Interaction).where(Interaction.sip_call_id == cdr.call_id, *live)
        ).scalars()
        for row in found:
            if row.id not in used:
                return row
    near = session.execute(
        select(Interaction)
        .where(
            Interaction.started_at >= cdr.started_at - MATCH_WINDOW,
            Interaction.started_at <= cdr.started_at + MATCH_WINDOW,
            *live,
        )
        .order_by(Interaction.started_at)
    ).scalars()
    numbers = {identifier_for(n, region) for n in (cdr.from_number, cdr.to_number)}
    for row in near:
        if row.id in used or (cdr.line and row.line_number != cdr.line):
            continue
        if numbers & _identifiers(session, row):
            return row
    return None


def _short(cdr_ms: int, recorded_ms: int) -> bool:
    shortfall = cdr_ms - recorded_ms
    if shortfall <= MATCH_WINDOW.total_seconds() * 1000:
        return False
    return shortfall > SHORTFALL_MS or shortfall > SHORTFALL_RATIO * cdr_ms


def _cdr_json(cdr: CallDetailRecord) -> dict[str, Any]:
    return {
        "cdr_id": cdr.id,
        "start": iso(cdr.started_at),
        "end": iso(cdr.ended_at),
        "from": cdr.from_number,
        "to": cdr.to_number,
        "call_id": cdr.call_id,
        "line": cdr.line,
    }


def reconcile(archive: Archive, actor: audit.Actor, day: date) -> dict[str, Any]:
    """The reconciliation report of one UTC day; alarms when anything is missing; audited."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    end = start + timedelta(days=1)
    region = archive.config.node.default_region
    configured = {ln.number for ln in archive.config.lines}
    report: dict[str, Any] = {"date": day.isoformat(), "lines": {}, "missing": [], "failed": []}
    report["short"] = []
    with archive.index.write() as session:
        cdrs = session.execute(
            select(CallDetailRecord)
            .where(CallDetailRecord.started_at >= start, CallDetailRecord.started_at < end)
            .order_by(CallDetailRecord.started_at, CallDetailRecord.id)
        ).scalars()
        used: set[str] = set()
        for cdr in cdrs:
            counts = report["lines"].setdefault(
                cdr.line or "unknown", {"cdrs": 0, "recorded": 0, "missing": 0, "short": 0}
            )
            counts["cdrs"] += 1
            row = _match(session, cdr, region, used)
            if row is None:
                counts["missing"] += 1
                report["missing"].append(_cdr_json(cdr))
                continue
            used.add(row.id)
            if row.kind == "capture_failure":
                counts["missing"] += 1
                report["failed"].append(
                    {**_cdr_json(cdr), "interaction_id": row.id, "reason": row.outcome}
                )
                continue
            counts["recorded"] += 1
            cdr_ms = int((cdr.ended_at - cdr.started_at).total_seconds() * 1000)
            if _short(cdr_ms, row.duration_ms or 0):
                counts["short"] += 1
                report["short"].append(
                    {
                        **_cdr_json(cdr),
                        "interaction_id": row.id,
                        "cdr_ms": cdr_ms,
                        "recorded_ms": row.duration_ms,
                    }
                )
        report["gaps"] = _gaps(session, start, end, configured)
        report["replica"] = _replica(archive, session, start, end)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="reconcile.run",
            object_type="reconciliation",
            object_id=day.isoformat(),
            details={
                **{k: len(report[k]) for k in ("missing", "failed", "short", "gaps")},
                "replica_missing": sum(r["replica"] == "missing" for r in report["replica"]),
                # Kept in the entry so the status page can name them without re-reading objects.
                "replica_missing_ids": [
                    r["interaction_id"] for r in report["replica"] if r["replica"] == "missing"
                ][:REPLICA_IDS_KEPT],
                "replica_checked": len(report["replica"]),
            },
        )
    trouble = len(report["missing"]) + len(report["failed"]) + len(report["short"])
    if trouble:
        raise_alarm(
            archive,
            code=ALARM,
            severity="major",
            message=f"reconciliation {day.isoformat()}: {trouble} calls missing or short",
        )
    return report


def _replica(
    archive: Archive, session: Session, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Every live record of the day with its second copy's state (empty without a replica)."""
    ids = list(
        session.execute(
            select(Interaction.id)
            .where(
                Interaction.started_at >= start,
                Interaction.started_at < end,
                Interaction.purged_at.is_(None),
            )
            .order_by(Interaction.started_at, Interaction.id)
        ).scalars()
    )
    states = replica_states(archive, session, ids)
    if states is None:
        return []
    return [{"interaction_id": rid, "replica": states[rid]} for rid in ids]


def _gaps(
    session: Session, start: datetime, end: datetime, lines: set[str]
) -> list[dict[str, Any]]:
    """Capture failures and in-call gaps on configured lines that day."""
    rows = session.execute(
        select(Interaction)
        .where(
            Interaction.started_at >= start,
            Interaction.started_at < end,
            Interaction.line_number.in_(sorted(lines)),
            Interaction.purged_at.is_(None),
        )
        .order_by(Interaction.started_at)
    ).scalars()
    out: list[dict[str, Any]] = []
    for row in rows:
        if row.kind == "capture_failure":
            out.append(_gap(row, row.started_at, row.ended_at, row.outcome))
        gaps = session.execute(select(CaptureGap).where(CaptureGap.interaction_id == row.id))
        out.extend(
            _gap(
                row,
                row.started_at + timedelta(milliseconds=gap.start_ms),
                row.started_at + timedelta(milliseconds=gap.end_ms),
                gap.reason,
            )
            for gap in gaps.scalars()
        )
    return out


def _gap(
    row: Interaction, start: datetime, end: datetime | None, reason: str | None
) -> dict[str, Any]:
    return {
        "interaction_id": row.id,
        "line": row.line_number,
        "start": iso(start),
        "end": iso(end),
        "reason": reason,
    }


def replica_findings(archive: Archive, *, reports: int = 7) -> list[dict[str, Any]]:
    """The replica state of the last `reports` completeness reports, newest first.

    Each item: the day, when it ran, how many records were checked and which lacked their second
    copy (as the report's audit entry kept them).
    """
    with archive.index.read() as session:
        rows = session.execute(
            select(AuditEntry)
            .where(AuditEntry.action == "reconcile.run")
            .order_by(AuditEntry.seq.desc())
            .limit(reports)
        ).scalars()
        return [
            {
                "day": row.object_id,
                "ran_at": iso(row.ts),
                "checked": row.details.get("replica_checked", 0),
                "missing": list(row.details.get("replica_missing_ids", [])),
            }
            for row in rows
        ]
