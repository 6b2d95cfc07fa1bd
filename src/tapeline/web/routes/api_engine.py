"""`/api/v1` for legal holds and exports, on the same engine functions and role rules as the page.

Holds: list, place, request release, approve release (a second legal account). Exports: start,
status, download (audited). Refusals answer 403, unknown ids 404, bad input 400 or 422.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tapeline.archive import holds
from tapeline.errors import AccessDenied, NotFound, StorageError, TapelineError
from tapeline.web.deps import Ctx, CurrentUser, RowId
from tapeline.web.routes.exports import download, job_json, start_export
from tapeline.web.routes.holds import scope_of

router = APIRouter(prefix="/api/v1", tags=["holds", "exports"])
Text = Field(default="", max_length=200)
T = TypeVar("T")


class Scope(BaseModel):
    """Which records: every field optional, combined with AND; dates as YYYY-MM-DD or RFC 3339."""

    model_config = ConfigDict(extra="forbid")
    party: str = Text
    line: str = Text
    team: str = Text
    channel: str = Field(default="", pattern="^(|voice|whatsapp)$")
    since: str = Field(default="", max_length=40)
    until: str = Field(default="", max_length=40)

    def as_scope(self) -> dict[str, Any]:
        """The stored JSON form of this scope."""
        return scope_of(
            party=self.party,
            line=self.line,
            team=self.team,
            channel=self.channel,
            since=self.since,
            until=self.until,
        )


class HoldIn(Scope):
    """A hold to place: a matter and a scope, or a saved search by name."""

    matter: str = Field(min_length=1, max_length=200)
    saved_search: str | None = Field(default=None, max_length=100)


class ReleaseIn(BaseModel):
    """Why a hold may end."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class ExportIn(Scope):
    """An export to write: a scope and the purpose recorded in its manifest."""

    purpose: str = Field(default="", max_length=200)


def _engine(call: Callable[[], T]) -> T | JSONResponse:
    """Run an engine call; its input refusals answer 400 (403 and 404 have app-wide handlers)."""
    try:
        return call()
    except (AccessDenied, NotFound, StorageError):
        raise
    except TapelineError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)


@router.get("/holds")
def api_holds(ctx: Ctx, user: CurrentUser) -> list[dict[str, Any]]:
    """Every hold, newest first, with its record count (legal, records managers, auditors)."""
    return holds.hold_report(ctx.archive, user.actor)


@router.post("/holds", status_code=201, response_model=None)
def api_place(ctx: Ctx, user: CurrentUser, body: HoldIn) -> dict[str, Any] | JSONResponse:
    """Place a hold (legal): every matching record now and later."""
    return _engine(
        lambda: holds.place_hold(
            ctx.archive,
            user.actor,
            matter=body.matter.strip(),
            scope=body.as_scope(),
            saved_search=body.saved_search or None,
        )
    )


@router.post("/holds/{hold_id}/release-request", response_model=None)
def api_request_release(
    ctx: Ctx, user: CurrentUser, hold_id: RowId, body: ReleaseIn
) -> dict[str, Any] | JSONResponse:
    """Ask for a hold's release, with a reason (legal)."""
    matter = holds.matter_of(ctx.archive, hold_id)
    return _engine(
        lambda: holds.request_release(ctx.archive, user.actor, matter=matter, reason=body.reason)
    )


@router.post("/holds/{hold_id}/approve", response_model=None)
def api_approve_release(
    ctx: Ctx, user: CurrentUser, hold_id: RowId
) -> dict[str, Any] | JSONResponse:
    """Approve a requested release (a legal account other than the requester)."""
    matter = holds.matter_of(ctx.archive, hold_id)
    return _engine(lambda: holds.approve_release(ctx.archive, user.actor, matter=matter))


@router.post("/exports", status_code=202, response_model=None)
def api_export(ctx: Ctx, user: CurrentUser, body: ExportIn) -> dict[str, Any] | JSONResponse:
    """Start an export (export officer); poll its status, then download it."""
    started = _engine(lambda: start_export(ctx, user, body.as_scope(), purpose=body.purpose))
    return started if isinstance(started, JSONResponse) else job_json(started)


@router.get("/exports/{job_id}")
def api_export_status(ctx: Ctx, user: CurrentUser, job_id: str) -> dict[str, Any]:
    """An export's state: queued, running, done (with its manifest hash) or failed."""
    return job_json(ctx.exports.get(user.actor, job_id))


@router.get(
    "/exports/{job_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def api_export_download(request: Request, ctx: Ctx, user: CurrentUser, job_id: str) -> Response:
    """The finished bundle (audited before a byte is sent)."""
    return download(request, ctx, user, job_id)
