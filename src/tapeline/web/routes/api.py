"""The JSON API `/api/v1`: search, interaction detail, audio, a person's timeline.

Reached with a per-user API token (`Authorization: Bearer tl_...`) or the page's session. Hold,
export and retention routes join here when the engine of issue 8 (`tapeline.archive`) lands.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from tapeline.archive.access import Action, allowed, require
from tapeline.archive.cdr import reconcile
from tapeline.archive.reading import conversation, find, play, show
from tapeline.errors import AccessDenied
from tapeline.web.deps import Ctx, CurrentUser, RowId, client_address
from tapeline.web.pages import PAGE_SIZE
from tapeline.web.ranges import ranged_response
from tapeline.web.routes.records import SearchQuery

router = APIRouter(prefix="/api/v1", tags=["records"])


@router.get("/interactions")
def api_search(ctx: Ctx, user: CurrentUser, form: SearchQuery) -> list[dict[str, Any]]:
    """Interactions matching the filters, newest first, 50 per page (`page=`)."""
    return find(ctx.archive, user.actor, form.filters())[:PAGE_SIZE]


@router.get("/interactions/{interaction_id}")
def api_show(ctx: Ctx, user: CurrentUser, interaction_id: str) -> dict[str, Any]:
    """One interaction in the shape of `docs/interaction.schema.json`."""
    record, _ = show(ctx.archive, user.actor, interaction_id)
    return record


@router.get(
    "/interactions/{interaction_id}/audio",
    response_class=Response,
    responses={200: {"content": {"audio/flac": {}, "audio/ogg": {}}}, 206: {}, 416: {}},
)
def api_audio(request: Request, ctx: Ctx, user: CurrentUser, interaction_id: str) -> Response:
    """The decrypted recording (HTTP Range supported); audited once per token and record."""
    audio = play(
        ctx.archive,
        user.actor,
        interaction_id,
        once_key=user.session_key,
        client=client_address(request),
    )
    return ranged_response(
        audio.data,
        media_type=audio.media_type,
        etag=interaction_id,
        range_header=request.headers.get("range"),
        if_range=request.headers.get("if-range"),
    )


@router.get("/people/{counterparty_id}/timeline")
def api_timeline(ctx: Ctx, user: CurrentUser, counterparty_id: RowId) -> dict[str, Any]:
    """Every interaction with one person (calls and WhatsApp), oldest first."""
    person, records = conversation(ctx.archive, user.actor, counterparty_id)
    return {
        "counterparty": {
            "id": person.id,
            "display_name": person.display_name,
            "identifiers": person.identifiers,
        },
        "interactions": records,
    }


def schema_router(app: FastAPI) -> APIRouter:
    """`/api/v1/openapi.json`, served only to signed-in administrators."""
    schema = APIRouter(prefix="/api/v1", include_in_schema=False)

    @schema.get("/openapi.json")
    def api_schema(user: CurrentUser) -> dict[str, Any]:
        require(user.actor, Action.MANAGE_USERS)
        return app.openapi()

    return schema


@router.get("/reconciliation")
def api_reconciliation(
    ctx: Ctx,
    user: CurrentUser,
    day: Annotated[str, Query(alias="date", pattern=r"^\d{4}-\d{2}-\d{2}$")],
) -> dict[str, Any]:
    """The daily completeness report (records managers, auditors, admins)."""
    if not any(allowed(user.actor, a) for a in (Action.RETENTION, Action.READ_AUDIT)):
        raise AccessDenied(f"{user.actor.name} may not read the reconciliation report")
    return reconcile(ctx.archive, user.actor, date.fromisoformat(day))
