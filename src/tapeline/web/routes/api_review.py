"""`/api/v1` for supervisory review: flag a record, list open flags, resolve a flag.

A record has at most one open flag, so a flag is addressed by its record's id. The role rules
and audit entries are in `tapeline.archive.review`; refusals answer 403, unknown or out-of-team
records 404, bad input 400 or 422, as on the other engine routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tapeline.archive import review
from tapeline.web.deps import Ctx, CurrentUser
from tapeline.web.routes.api_engine import _engine  # the shared 400 mapping

router = APIRouter(prefix="/api/v1", tags=["review"])


class FlagIn(BaseModel):
    """Why the record needs review."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class ResolveIn(BaseModel):
    """What the reviewer decided, and why."""

    model_config = ConfigDict(extra="forbid")
    action: str = Field(min_length=1, max_length=200)
    comment: str = Field(min_length=1, max_length=2000)


@router.post("/interactions/{interaction_id}/review-flag", status_code=201, response_model=None)
def api_flag(
    ctx: Ctx, user: CurrentUser, interaction_id: str, body: FlagIn
) -> dict[str, Any] | JSONResponse:
    """Flag a record for review (a reviewer, or a supervisor for their teams)."""
    return _engine(
        lambda: review.flag_for_review(ctx.archive, user.actor, interaction_id, reason=body.reason)
    )


@router.get("/review-flags")
def api_flags(ctx: Ctx, user: CurrentUser) -> list[dict[str, Any]]:
    """Records with an open review flag, oldest first (a supervisor's teams only)."""
    return review.open_flags(ctx.archive, user.actor)


@router.post("/review-flags/{interaction_id}/resolve", response_model=None)
def api_resolve(
    ctx: Ctx, user: CurrentUser, interaction_id: str, body: ResolveIn
) -> dict[str, Any] | JSONResponse:
    """Resolve a record's flag; the resolution is filed as a `review_resolution` record."""
    return _engine(
        lambda: review.resolve_review(
            ctx.archive, user.actor, interaction_id, action=body.action, comment=body.comment
        )
    )
