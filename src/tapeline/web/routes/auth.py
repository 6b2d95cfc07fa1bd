"""Signing in and out: password (argon2id), TOTP, first-login TOTP enrolment, throttling.

`admin`, `legal` and `records-manager` accounts must have a second factor (RFC 6238). One that
has none yet gets, after its password is accepted, a session that reaches only the enrolment page
until it proves a code from its new secret; then a fresh session token replaces that one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from tapeline.archive import totp
from tapeline.archive.users import (
    authenticate,
    enrol_totp,
    needs_second_factor,
    totp_enrolled,
    unwrap_pending_totp,
    wrap_pending_totp,
)
from tapeline.errors import AccessDenied
from tapeline.web import sessions
from tapeline.web.deps import AnySessionUser, Ctx, EnrollingUser, client_address, same_origin
from tapeline.web.pages import render

ISSUER = "Tapeline"

router = APIRouter(include_in_schema=False)


def _with_cookie(response: Response, token: str) -> Response:
    response.set_cookie(
        sessions.COOKIE, token, secure=True, httponly=True, samesite="strict", path="/"
    )
    return response


def otpauth_uri(name: str, secret: bytes) -> str:
    """The `otpauth://` URI authenticator apps take (Key Uri Format)."""
    return (
        f"otpauth://totp/{ISSUER}:{name}?secret={totp.secret_base32(secret)}"
        f"&issuer={ISSUER}&algorithm=SHA1&digits={totp.DIGITS}&period={totp.PERIOD_S}"
    )


@router.get("/login")
def login_form(request: Request, ctx: Ctx) -> Response:
    """The sign-in form."""
    return render(ctx, request, "login.html", {"error": None}, user=None)


@router.post("/login")
def login(
    request: Request,
    ctx: Ctx,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    totp_code: Annotated[str, Form(alias="totp", max_length=16)] = "",
) -> Response:
    """Check the credentials (throttled, audited) and start a session."""
    if not same_origin(request):
        raise HTTPException(403, "cross-origin login refused")
    address = client_address(request)
    if not ctx.limiter.allow(address, username):
        return render(
            ctx,
            request,
            "login.html",
            {"error": "Too many attempts. Wait a minute and try again."},
            user=None,
            status_code=429,
        )
    try:
        actor = authenticate(
            ctx.archive, name=username, password=password, code=totp_code or None, client=address
        )
    except AccessDenied:
        return render(
            ctx,
            request,
            "login.html",
            {"error": "Wrong name, password or code, or the account is locked."},
            user=None,
            status_code=401,
        )
    if needs_second_factor(actor.roles) and not totp_enrolled(ctx.archive, actor.name):
        secret = totp.new_secret()
        token = sessions.start(
            ctx.archive,
            actor,
            stage=sessions.ENROL_TOTP,
            pending=wrap_pending_totp(ctx.archive, actor.name, secret),
        )
        return _with_cookie(RedirectResponse("/login/totp", status_code=303), token)
    token = sessions.start(ctx.archive, actor)
    return _with_cookie(RedirectResponse("/", status_code=303), token)


def _pending_secret(ctx: Ctx, user: sessions.LoggedIn) -> bytes:
    if user.pending_totp is None:
        raise HTTPException(409, "no second factor is being enrolled")
    return unwrap_pending_totp(ctx.archive, user.actor.name, user.pending_totp)


def _enrolment_values(ctx: Ctx, user: sessions.LoggedIn, error: str | None) -> dict[str, object]:
    secret = _pending_secret(ctx, user)
    return {
        "secret": totp.secret_base32(secret),
        "uri": otpauth_uri(user.actor.name, secret),
        "error": error,
        "action": "/login/totp",
        "required": True,
    }


@router.get("/login/totp")
def enrol_form(request: Request, ctx: Ctx, user: EnrollingUser) -> Response:
    """The first-login authenticator set-up page."""
    return render(ctx, request, "totp_enrol.html", _enrolment_values(ctx, user, None), user=user)


@router.post("/login/totp")
def enrol(
    request: Request, ctx: Ctx, user: EnrollingUser, code: Annotated[str, Form(max_length=16)]
) -> Response:
    """Finish the first-login set-up: store the secret, then a fresh full session."""
    secret = _pending_secret(ctx, user)
    try:
        enrol_totp(ctx.archive, name=user.actor.name, secret=secret, code=code)
    except AccessDenied:
        values = _enrolment_values(ctx, user, "That code does not match; try the next one.")
        return render(ctx, request, "totp_enrol.html", values, user=user, status_code=400)
    # Privilege changed (the session becomes a full one): issue a new token, drop the old one.
    sessions.end(ctx.archive, request.cookies.get(sessions.COOKIE))
    token = sessions.start(ctx.archive, user.actor)
    return _with_cookie(RedirectResponse("/", status_code=303), token)


@router.post("/logout")
def logout(request: Request, ctx: Ctx, _: AnySessionUser) -> Response:
    """End the session."""
    sessions.end(ctx.archive, request.cookies.get(sessions.COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, secure=True, httponly=True, samesite="strict")
    return response
