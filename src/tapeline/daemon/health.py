"""Health checks behind `/readyz` (application/health+json, pass/warn/fail)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tapeline.archive.core import Archive
from tapeline.archive.models import Alarm
from tapeline.archive.nodes import node_alarms
from tapeline.errors import StorageError

PASS, WARN, FAIL = "pass", "warn", "fail"
_ORDER = {PASS: 0, WARN: 1, FAIL: 2}


@dataclass(slots=True)
class Health:
    """The checks of one process; extra checks (listeners, broker) are added by their owners."""

    archive: Archive
    extra: dict[str, Callable[[], tuple[str, str]]] = field(default_factory=dict)

    def _folder(self, path: Path, floor: int) -> tuple[str, str]:
        try:
            path.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(path).free
        except OSError as exc:
            return FAIL, f"{path}: {exc.strerror}"
        if not os.access(path, os.W_OK):
            return FAIL, f"{path} is not writable"
        if free < floor:
            return FAIL, f"{path}: {free} bytes free, below the floor of {floor}"
        if free < self.archive.config.alarms.disk_free_warn_bytes:
            return WARN, f"{path}: {free} bytes free"
        return PASS, f"{free} bytes free"

    def _database(self) -> tuple[str, str]:
        try:
            with self.archive.index.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return FAIL, f"index unreachable: {exc.__class__.__name__}"
        return PASS, "reachable"

    def _alarms(self) -> dict[str, tuple[str, str]]:
        # Every active alarm of this node makes the node `warn` (it still records), and the
        # integrity alarms get their own check, the component operators look for first.
        try:
            alarms = node_alarms(self.archive)
        except StorageError as exc:
            unknown = (WARN, f"alarms unreadable: {exc}")
            return {"alarms": unknown, "integrity": unknown}

        def summary(found: list[Alarm], none: str) -> tuple[str, str]:
            if not found:
                return PASS, none
            return WARN, "; ".join(f"{a.code} ({a.severity}): {a.message}" for a in found)

        integrity = [a for a in alarms if a.code.startswith("integrity.")]
        return {
            "alarms": summary(alarms, "none active"),
            "integrity": summary(integrity, "no integrity alarm active"),
        }

    def checks(self, *, writes: bool) -> dict[str, tuple[str, str]]:
        """Run every check; `writes` adds the folders this process writes to."""
        cfg = self.archive.config.storage
        results = {"database": self._database(), **self._alarms()}
        if writes:
            results["storage"] = self._folder(cfg.path, cfg.min_free_bytes)
            results["spool"] = self._folder(cfg.spool, cfg.min_free_bytes)
        for name, check in self.extra.items():
            results[name] = check()
        return results

    def report(self, *, writes: bool, details: bool) -> tuple[int, dict[str, Any]]:
        """HTTP status and body; details only for authenticated callers or loopback."""
        checks = self.checks(writes=writes)
        status = max((s for s, _ in checks.values()), key=_ORDER.__getitem__, default=PASS)
        body: dict[str, Any] = {"status": status}
        if details:
            body["checks"] = {
                name: [{"status": s, "output": out}] for name, (s, out) in checks.items()
            }
            body["storage_mode"] = self.archive.storage_mode
        return (503 if status == FAIL else 200), body
