"""The web process's readiness: the index must answer; objects must be readable."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tapeline.archive.core import Archive
from tapeline.archive.replica import ReplicatedStore
from tapeline.archive.s3store import S3ObjectStore
from tapeline.errors import TapelineError


def readiness(archive: Archive, *, details: bool) -> tuple[int, dict[str, Any]]:
    """HTTP status and health+json body; check details only for logged-in callers."""
    checks: dict[str, tuple[str, str]] = {}
    try:
        with archive.index.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = ("pass", "reachable")
    except SQLAlchemyError as exc:
        checks["database"] = ("fail", exc.__class__.__name__)
    store = archive.vault.store
    if isinstance(store, ReplicatedStore):  # readiness is about the primary, which serves reads
        store = store.primary
    if isinstance(store, S3ObjectStore):
        try:
            store.check_bucket()
            checks["objects"] = ("pass", f"bucket {store.bucket} locked and versioned")
        except TapelineError as exc:
            checks["objects"] = ("fail", str(exc))
    else:
        objects = archive.config.storage.path
        readable = objects.exists() and os.access(objects, os.R_OK | os.X_OK)
        checks["objects"] = (
            ("pass", "readable") if readable else ("fail", f"{objects} not readable")
        )
    status = "fail" if any(s == "fail" for s, _ in checks.values()) else "pass"
    body: dict[str, Any] = {"status": status}
    if details:
        body["checks"] = {k: [{"status": s, "output": o}] for k, (s, o) in checks.items()}
        body["storage_mode"] = archive.storage_mode
    return (503 if status == "fail" else 200), body
