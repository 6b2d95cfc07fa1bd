"""The signed-in account's own page: its second factor (offered to every role) and API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from tapeline.archive import totp
from tapeline.archive.users import (
    enrol_totp,
    needs_second_factor,
    totp_enrolled,
    unwrap_pending_totp,
    wrap_pending_totp,
)
from tapeline.errors import AccessDenied
from tapeline.web import sessions, tokens
from tapeline.web.deps import Ctx, CurrentUser, RowId
from tapeline.web.pages import render
from tapeline.web.routes.auth import otpauth_uri

router = APIRouter(include_in_schema=False)


def _page(  # noqa: PLR0913  # the page plus what the last action produced
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    *,
    new_token: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    enrolling = None
    if user.pending_totp is not None:
        secret = unwrap_pending_totp(ctx.archive, user.actor.name, user.pending_totp)
        enrolling = {
            "secret": totp.secret_base32(secret),
            "uri": otpauth_uri(user.actor.name, secret),
        }
    values = {
        "totp": totp_enrolled(ctx.archive, user.actor.name),
        "totp_required": needs_second_factor(user.actor.roles),
        "enrolling": enrolling,
        "tokens": tokens.list_tokens(ctx.archive, user.actor),
        "new_token": new_token,
        "error": error,
    }
    return render(ctx, request, "account.html", values, user=user, status_code=status_code)


@router.get("/account")
def account(request: Request, ctx: Ctx, user: CurrentUser) -> Response:
    """The account page: second factor and API tokens."""
    return _page(request, ctx, user)


@router.post("/account/totp/start")
def totp_start(request: Request, ctx: Ctx, user: CurrentUser) -> Response:
    """Start setting up an authenticator (a pending secret on this session)."""
    if totp_enrolled(ctx.archive, user.actor.name):
        raise HTTPException(409, "a second factor is set already; an administrator can reset it")
    wrapped = wrap_pending_totp(ctx.archive, user.actor.name, totp.new_secret())
    sessions.set_pending_totp(ctx.archive, request.cookies.get(sessions.COOKIE) or "", wrapped)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/totp")
def totp_confirm(
    request: Request, ctx: Ctx, user: CurrentUser, code: Annotated[str, Form(max_length=16)]
) -> Response:
    """Finish the authenticator set-up with a code from it."""
    if user.pending_totp is None:
        raise HTTPException(409, "start the enrolment first")
    secret = unwrap_pending_totp(ctx.archive, user.actor.name, user.pending_totp)
    try:
        enrol_totp(ctx.archive, name=user.actor.name, secret=secret, code=code)
    except AccessDenied:
        return _page(request, ctx, user, error="That code does not match.", status_code=400)
    sessions.set_pending_totp(ctx.archive, request.cookies.get(sessions.COOKIE) or "", None)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/tokens")
def token_create(
    request: Request, ctx: Ctx, user: CurrentUser, label: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    """Create an API token and show it once."""
    new = tokens.create(ctx.archive, user.actor, label=label)
    return _page(request, ctx, user, new_token=new)


@router.post("/account/tokens/{token_id}/revoke")
def token_revoke(ctx: Ctx, user: CurrentUser, token_id: RowId) -> Response:
    """Revoke one of the account's own API tokens."""
    tokens.revoke(ctx.archive, user.actor, token_id)
    return RedirectResponse("/account", status_code=303)
