"""`tapeline verify`: re-hash objects, walk the audit chain and checkpoints; name the first break.

Certificates of destruction are checked against their signatures as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tapeline.archive.audit import iter_chain_problems
from tapeline.archive.checkpoints import checkpoint_problems
from tapeline.archive.core import Archive
from tapeline.archive.crypto import public_key_text
from tapeline.archive.models import AuditEntry, DestructionCertificate, StoredObject
from tapeline.archive.nodes import clear_alarm, raise_alarm
from tapeline.archive.replica import ReplicatedStore
from tapeline.archive.signing import canonical_json, verify
from tapeline.archive.vault import Vault
from tapeline.errors import IntegrityError, NotFound

VERIFY_ALARM = "integrity.verify"
SCRUB_ALARM = "integrity.object"  # raised by archive.scrub, which imports this module


@dataclass(slots=True)
class VerifyReport:
    """What verify found: counts and every problem, in the order found."""

    objects_checked: int = 0
    audit_entries_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem at all."""
        return not self.problems


def verify_archive(archive: Archive) -> VerifyReport:
    """Check every live object against its recorded hash, every unknown file, and the chain."""
    report = VerifyReport()
    known: set[str] = set()
    with archive.index.read() as session:
        rows = session.execute(
            select(StoredObject).where(StoredObject.purged_at.is_(None)).order_by(StoredObject.id)
        ).scalars()
        replica = _replica_vault(archive)
        for obj in rows:
            known.add(obj.id)
            report.objects_checked += 1
            found = object_problem(archive, obj)
            if found is not None:
                report.problems.append(found)
            if replica is not None:
                copy = object_problem(archive, obj, vault=replica)
                if copy is not None:
                    report.problems.append(f"replica copy: {copy}")
        for problem in iter_chain_problems(session):
            report.problems.append(problem.reason)
        report.problems.extend(
            checkpoint_problems(
                session,
                public_key=public_key_text(archive.signing_key),
                target=archive.config.integrity.checkpoint_target,
            )
        )
        report.problems.extend(certificate_problems(session))
        report.audit_entries_checked = _count_entries(session)
    report.problems.extend(
        f"object {oid}: present in the store but not in the index"
        for oid in archive.vault.store.ids()
        if oid not in known
    )
    return report


def alarm_on_report(archive: Archive, report: VerifyReport) -> bool:
    """Raise `integrity.verify` for a failed verify, clear it for a clean one; True if raised.

    The alarm goes through the outbox of this node like any other, so the recorder publishes it
    even when `tapeline verify` ran from the CLI. A clean full verify also clears the scrub's
    `integrity.object`: it has just re-hashed every object the scrub would have.
    """
    if report.ok:
        clear_alarm(archive, code=VERIFY_ALARM)
        clear_alarm(archive, code=SCRUB_ALARM)
        return False
    more = len(report.problems) - 1
    message = f"verify: {report.problems[0]}" + (f" (and {more} more)" if more else "")
    return raise_alarm(archive, code=VERIFY_ALARM, severity="critical", message=message)


def _replica_vault(archive: Archive) -> Vault | None:
    """The second copy opened with the same archive key, when a replica is configured."""
    store = archive.vault.store
    if isinstance(store, ReplicatedStore):
        return Vault(store.replica, archive.vault.archive_key)
    return None


def object_problem(
    archive: Archive, obj: StoredObject, *, vault: Vault | None = None
) -> str | None:
    """Why a live object cannot be read back as recorded (from `vault`, default the archive's)."""
    source = vault or archive.vault
    try:
        if obj.kind == "manifest":
            source.load_self_keyed(obj.id, sha256=obj.sha256)
        elif obj.wrapped_key is None:
            return f"object {obj.id}: its data key is missing"
        else:
            source.load(obj.id, obj.wrapped_key, obj.sha256)
    except (IntegrityError, NotFound) as exc:
        return f"object {obj.id}: {exc}"
    return None


def certificate_problems(session: Session) -> list[str]:
    """Certificates of destruction whose signature does not verify."""
    rows = session.execute(select(DestructionCertificate)).scalars()
    return [
        f"certificate of destruction {c.id}: signature does not verify"
        for c in rows
        if not verify(c.public_key, canonical_json(c.body), c.signature)
    ]


def _count_entries(session: Session) -> int:
    return session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


def replica_states(
    archive: Archive, session: Session, interaction_ids: list[str]
) -> dict[str, str] | None:
    """Each record's second copy, `present` or `missing`; None without a replica.

    `present` means every live object of the record opens from the replica and matches its hash
    (the check verify makes). The completeness report shows it per record, so a record held by
    one copy only is named before the primary is the only thing left of it.
    """
    replica = _replica_vault(archive)
    if replica is None:
        return None
    states = dict.fromkeys(interaction_ids, "present")
    rows = session.execute(
        select(StoredObject).where(
            StoredObject.interaction_id.in_(interaction_ids), StoredObject.purged_at.is_(None)
        )
    ).scalars()
    for obj in rows:
        if obj.interaction_id is not None and object_problem(archive, obj, vault=replica):
            states[obj.interaction_id] = "missing"
    return states
