"""What happens to an export bundle after it is written: its download and an uploaded check.

`export.export_records` audits the writing; a bundle leaving the appliance (downloaded) and an
examiner's copy being checked here are audited too, so the audit log shows every copy that went
out and what a later check of it found. Role rules live here, not in the web routes.
"""

from __future__ import annotations

from pathlib import Path

from tapeline.archive import audit
from tapeline.archive.access import Action, allowed, require
from tapeline.archive.core import Archive
from tapeline.archive.exportcheck import ExportReport, verify_export
from tapeline.errors import AccessDenied


def record_download(
    archive: Archive, actor: audit.Actor, *, export_id: str, manifest_sha256: str, client: str
) -> None:
    """Audit an export bundle leaving the appliance; the caller sends it only after this commits.

    Raises:
        AccessDenied: the actor is not an export officer.
    """
    require(actor, Action.EXPORT)
    with archive.index.write() as session:
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="export.downloaded",
            object_type="export",
            object_id=export_id,
            details={"manifest_sha256": manifest_sha256, "client": client},
        )


def check_upload(archive: Archive, actor: audit.Actor, path: Path, *, name: str) -> ExportReport:
    """Verify an export zip someone uploaded (exportcheck) and audit what was found.

    Raises:
        AccessDenied: the actor is neither an export officer nor an auditor.
    """
    if not any(allowed(actor, a) for a in (Action.EXPORT, Action.READ_AUDIT)):
        raise AccessDenied(f"{actor.name} may not verify export bundles")
    report = verify_export(path)
    with archive.index.write() as session:
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="export.verified",
            object_type="export",
            object_id=None,
            details={
                "file": name[:200],
                "ok": report.ok,
                "records": report.records,
                "files_checked": report.files_checked,
                "problems": report.problems[:50],
            },
        )
    return report
