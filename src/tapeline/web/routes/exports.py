"""Exports on the page: start one from the search filters, watch it, download it, check a copy.

The export officer role, the audit of writing (`export.export_records`), of each download and of
each uploaded check (`exporting`) are in `tapeline.archive`; this module only moves bytes.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response

from tapeline.archive import exporting
from tapeline.archive.access import Action, allowed, require
from tapeline.archive.searches import filters_from
from tapeline.errors import NotFound, TapelineError
from tapeline.web.deps import Ctx, CurrentUser, WebContext, client_address
from tapeline.web.exportjobs import DONE, QUEUED, RUNNING, Job
from tapeline.web.pages import render
from tapeline.web.routes.holds import scope_of
from tapeline.web.routes.records import CHANNELS, SearchForm, SearchQuery
from tapeline.web.sessions import LoggedIn

router = APIRouter(include_in_schema=False)
Field = Annotated[str, Form(max_length=200)]
# An export of a large matter. Starlette has spooled the upload to a temporary file by the time
# the handler runs; past this size it is not copied again nor checked.
MAX_UPLOAD = 2 * 1024**3
CHUNK = 1024 * 1024


def start_export(ctx: WebContext, user: LoggedIn, scope: dict[str, Any], *, purpose: str) -> Job:
    """Queue an export of the records a scope matches (page and API)."""
    require(user.actor, Action.EXPORT)  # refused here too, so no job is queued for nobody
    if not scope:
        raise TapelineError("an export needs at least one filter (a party, line, team, dates...)")
    region = ctx.archive.config.node.default_region
    # What a search would show: hidden records are not exported behind the user's back.
    filters = replace(filters_from(scope, region=region), include_hidden=False)
    shown = {k: str(v) for k, v in scope.items()}
    return ctx.exports.start(ctx.archive, user.actor, filters, scope=shown, purpose=purpose)


def job_json(job: Job) -> dict[str, Any]:
    """A job as the page and the API show it."""
    return {
        "id": job.id,
        "state": job.state,
        "scope": job.scope,
        "purpose": job.purpose,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "records": job.records,
        "files": job.files,
        "export_id": job.export_id or None,
        "manifest_sha256": job.manifest_sha256 or None,
        "error": job.error or None,
    }


def download(request: Request, ctx: WebContext, user: LoggedIn, job_id: str) -> Response:
    """The finished bundle, sent only after its download is audited (page and API)."""
    require(user.actor, Action.EXPORT)  # a refusal, not "not found", for the wrong role
    job = ctx.exports.get(user.actor, job_id)
    if job.state != DONE or job.path is None:
        raise NotFound(f"export {job_id} is not ready ({job.state})")
    exporting.record_download(
        ctx.archive,
        user.actor,
        export_id=job.export_id,
        manifest_sha256=job.manifest_sha256,
        client=client_address(request),
    )
    return FileResponse(
        job.path,
        media_type="application/zip",
        filename=f"tapeline-export-{job.export_id}.zip",
        headers={"Cache-Control": "no-store"},
    )


def _page(  # noqa: PLR0913  # the page, who sees it, and what the last action said
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    q: SearchForm,
    *,
    error: str = "",
    report: dict[str, Any] | None = None,
) -> Response:
    if not any(allowed(user.actor, a) for a in (Action.EXPORT, Action.READ_AUDIT)):
        require(user.actor, Action.EXPORT)
    jobs = [job_json(j) for j in ctx.exports.mine(user.actor)]
    values = {
        "q": q,
        "channels": CHANNELS,
        "jobs": jobs,
        "busy": any(j["state"] in {QUEUED, RUNNING} for j in jobs),
        "can_export": allowed(user.actor, Action.EXPORT),
        "error": error,
        "report": report,
        "partial": "_export_jobs.html",
    }
    status = 400 if error else 200
    return render(ctx, request, "exports.html", values, user=user, status_code=status)


@router.get("/exports")
def exports_page(request: Request, ctx: Ctx, user: CurrentUser, form: SearchQuery) -> Response:
    """The export form (filled from the search the user came from), their exports, verify."""
    return _page(request, ctx, user, form)


@router.get("/exports/jobs")
def exports_jobs(request: Request, ctx: Ctx, user: CurrentUser, form: SearchQuery) -> Response:
    """The job table alone (htmx polls it while an export runs)."""
    return _page(request, ctx, user, form)


@router.post("/exports")
def create(  # noqa: PLR0913, PLR0917  # one argument per form field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    form: SearchQuery,
    party: Field = "",
    line: Field = "",
    team: Field = "",
    channel: Field = "",
    since: Field = "",
    until: Field = "",
    purpose: Field = "",
) -> Response:
    """Start an export in the background."""
    try:
        scope = scope_of(
            party=party, line=line, team=team, channel=channel, since=since, until=until
        )
        start_export(ctx, user, scope, purpose=purpose.strip())
    except TapelineError as exc:
        return _page(request, ctx, user, form, error=str(exc))
    # Post/redirect/get: reloading the page must not start the same export again.
    return RedirectResponse("/exports", status_code=303)


@router.get("/exports/{job_id}/download")
def download_page(request: Request, ctx: Ctx, user: CurrentUser, job_id: str) -> Response:
    """Download a finished bundle (audited)."""
    return download(request, ctx, user, job_id)


@router.post("/exports/verify")
async def verify(
    request: Request, ctx: Ctx, user: CurrentUser, form: SearchQuery, bundle: UploadFile
) -> Response:
    """Check an uploaded export zip and name every changed, missing or extra file."""
    with tempfile.TemporaryDirectory(prefix="tapeline-verify-") as folder:
        path = Path(folder) / "bundle.zip"
        size = 0
        with path.open("wb") as out:
            while chunk := await bundle.read(CHUNK):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    return _page(request, ctx, user, form, error="the upload is too large")
                out.write(chunk)
        try:
            report = exporting.check_upload(
                ctx.archive, user.actor, path, name=bundle.filename or "upload"
            )
        except TapelineError as exc:
            return _page(request, ctx, user, form, error=str(exc))
    values = {
        "name": bundle.filename or "upload",
        "ok": report.ok,
        "records": report.records,
        "files_checked": report.files_checked,
        "public_key": report.public_key,
        "problems": report.problems,
    }
    return _page(request, ctx, user, form, report=values)
