"""Supervisory review on the page: flag a record, the review queue, resolve a flag.

Role rules (a reviewer, or a supervisor for their own teams) and the audit entries are in
`tapeline.archive.review`; the routes only pass the user's actor. AccessDenied and NotFound
reach the app's handlers (403 and 404, as on every other page), so a record outside a
supervisor's teams answers 404 just like a record that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from tapeline.archive import review
from tapeline.errors import AccessDenied, NotFound, StorageError, TapelineError
from tapeline.web.deps import Ctx, CurrentUser
from tapeline.web.pages import render

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form(min_length=1, max_length=2000)]
Short = Annotated[str, Form(min_length=1, max_length=200)]


def _queue(
    request: Request, ctx: Ctx, user: CurrentUser, *, error: str = "", notice: str = ""
) -> Response:
    values = {"flags": review.open_flags(ctx.archive, user.actor), "error": error, "notice": notice}
    return render(ctx, request, "review.html", values, user=user, status_code=400 if error else 200)


def _user_error(exc: TapelineError) -> str:
    # Refusals and unknown records go to the app's 403/404 handlers; a storage failure is not
    # the user's doing and surfaces as a server error. What is left is a bad request.
    if isinstance(exc, (AccessDenied, NotFound, StorageError)):
        raise exc
    return str(exc)


@router.get("/review")
def review_queue(request: Request, ctx: Ctx, user: CurrentUser) -> Response:
    """Open review flags the user may act on (a supervisor sees their teams only)."""
    return _queue(request, ctx, user)


@router.post("/records/{interaction_id}/review-flag")
def flag(
    request: Request, ctx: Ctx, user: CurrentUser, interaction_id: str, reason: Text
) -> Response:
    """Flag a record for review; it cannot be disposed of until the flag is resolved."""
    try:
        review.flag_for_review(ctx.archive, user.actor, interaction_id, reason=reason)
    except TapelineError as exc:
        return _queue(request, ctx, user, error=_user_error(exc))
    # Post/redirect/get: the record page then shows the open flag.
    return RedirectResponse(f"/records/{interaction_id}", status_code=303)


@router.post("/review/{interaction_id}/resolve")
def resolve(  # noqa: PLR0913, PLR0917  # one argument per form field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    interaction_id: str,
    action: Short,
    comment: Text,
) -> Response:
    """Resolve a flag: the archive files the resolution as a record, then lifts the flag."""
    try:
        info = review.resolve_review(
            ctx.archive, user.actor, interaction_id, action=action, comment=comment
        )
    except TapelineError as exc:
        return _queue(request, ctx, user, error=_user_error(exc))
    notice = f"Flag on {interaction_id} resolved; resolution filed as {info['resolution']}."
    return _queue(request, ctx, user, notice=notice)
