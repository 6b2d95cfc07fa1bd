"""Export bundles written in the background, so the page can show progress and stay responsive.

A bundle of many calls takes a while (decrypting, WAV conversion, hashing), longer than a browser
should wait on one request. Each export runs in its own thread and writes to a private file
(0600 in a 0700 folder of the web process); the page polls its state. Jobs live only in this
process: a restart loses the finished files but never the audit entries (`export.export_records`
audits the writing itself, `exporting.record_download` each download).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.export import export_records
from tapeline.archive.ids import new_id
from tapeline.archive.models import utcnow
from tapeline.archive.records import Filters
from tapeline.errors import NotFound, TapelineError

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
LOG = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class Job:
    """One export: who asked, for what, and how far it got."""

    id: str
    owner: str
    scope: dict[str, str]
    purpose: str
    created_at: datetime
    state: str = QUEUED
    path: Path | None = None
    records: int = 0
    files: int = 0
    export_id: str = ""
    manifest_sha256: str = ""
    error: str = ""
    finished_at: datetime | None = None


@dataclass
class ExportJobs:
    """The export jobs of this web process."""

    folder: Path | None = None  # made on the first export (0700), so idle apps leave nothing
    _jobs: dict[str, Job] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(
        self,
        archive: Archive,
        actor: Actor,
        filters: Filters,
        *,
        scope: dict[str, str],
        purpose: str,
    ) -> Job:
        """Queue an export; the role check happens in `export_records`, in the worker."""
        job = Job(id=new_id(), owner=actor.name, scope=scope, purpose=purpose, created_at=utcnow())
        with self._lock:
            self._jobs[job.id] = job
        worker = threading.Thread(
            target=self._run, args=(archive, actor, filters, job), name=f"export-{job.id}"
        )
        worker.daemon = True  # a half-written bundle is worthless; do not hold shutdown for it
        self._threads.append(worker)
        worker.start()
        return job

    def _run(self, archive: Archive, actor: Actor, filters: Filters, job: Job) -> None:
        job.state = RUNNING
        with self._lock:
            if self.folder is None:
                self.folder = Path(tempfile.mkdtemp(prefix="tapeline-exports-"))
            target = self.folder / f"{job.id}.zip"
        try:
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w+b") as handle:
                summary = export_records(
                    archive, actor, filters, handle, purpose=job.purpose.strip() or None
                )
        except TapelineError as exc:  # refusals and storage errors alike are shown to the user
            target.unlink(missing_ok=True)
            job.error = str(exc)
            job.state = FAILED
        except Exception:  # a worker thread has nobody to raise to: log it, show the job failed
            LOG.exception("export %s failed", job.id)
            target.unlink(missing_ok=True)
            job.error = "internal error (see the web service's log)"
            job.state = FAILED
        else:
            job.path = target
            job.records = summary.records
            job.files = summary.files
            job.export_id = summary.export_id
            job.manifest_sha256 = summary.manifest_sha256
            job.state = DONE
        job.finished_at = utcnow()

    def get(self, actor: Actor, job_id: str) -> Job:
        """A job of this actor (someone else's export is as good as missing).

        Raises:
            NotFound: no such job, or it belongs to another account.
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.owner != actor.name:
            raise NotFound(f"no export {job_id}")
        return job

    def mine(self, actor: Actor) -> list[Job]:
        """This actor's jobs, newest first."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.owner == actor.name]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for every started job (tests and shutdown)."""
        for worker in list(self._threads):
            worker.join(timeout)

    def close(self) -> None:
        """Wait for running jobs, then remove the bundles."""
        self.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
