"""How the archive, the templates and the signed-in account reach route handlers.

Deny by default: every route that is not in `PUBLIC_PATHS` takes `CurrentUser` (or
`EnrollingUser`), which

* finds the login session from the `__Host-` cookie, or on `/api/v1` only, an API token from
  `Authorization: Bearer` (cookies are accepted on the API for the signed-in page; tokens are
  never accepted on HTML routes);
* refuses an unsafe method (POST, PUT, PATCH, DELETE) made with the cookie unless it carries the
  session's CSRF token (form field `csrf` or header `X-CSRF-Token`) and, when the browser sends
  one, our own `Origin`. Token requests carry no ambient credential and need no CSRF token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.templating import Jinja2Templates

from tapeline.archive.core import Archive
from tapeline.web import sessions, tokens
from tapeline.web.exportjobs import ExportJobs
from tapeline.web.ratelimit import LoginLimiter

# A row id in a path: bounded so it fits the index's 64-bit integers (found by schemathesis).
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api/"


@dataclass(frozen=True, slots=True)
class WebContext:
    """What every handler may need: built once by `create_app`, kept on `app.state.web`."""

    archive: Archive
    templates: Jinja2Templates
    limiter: LoginLimiter
    exports: ExportJobs = field(default_factory=ExportJobs)


def context(request: Request) -> WebContext:
    """The application's context."""
    ctx: WebContext = request.app.state.web
    return ctx


Ctx = Annotated[WebContext, Depends(context)]


def client_address(request: Request) -> str:
    """The peer address (uvicorn runs with proxy headers off, so this is the real peer)."""
    return request.client.host if request.client else "unknown"


def same_origin(request: Request) -> bool:
    """True unless the request names an Origin other than ours (`null` counts as foreign)."""
    origin = request.headers.get("origin")
    return origin is None or origin.rstrip("/") == str(request.base_url).rstrip("/")


async def _check_csrf(request: Request, logged: sessions.LoggedIn) -> None:
    if request.method in SAFE_METHODS or logged.via_token:
        return
    if not same_origin(request):
        raise HTTPException(403, "cross-origin request refused")
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf")
        sent = value if isinstance(value, str) else None
    if sent is None or not hmac.compare_digest(sent, logged.csrf_token):
        raise HTTPException(403, "missing or wrong CSRF token")


def _unauthenticated(request: Request) -> HTTPException:
    if request.url.path.startswith(API_PREFIX):
        return HTTPException(401, "login or API token required", {"WWW-Authenticate": "Bearer"})
    return HTTPException(303, headers={"Location": "/login"})


def _from_token(ctx: WebContext, request: Request) -> sessions.LoggedIn | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value or not request.url.path.startswith(API_PREFIX):
        return None
    found = tokens.resolve(ctx.archive, value.strip())
    if found is None:
        return None
    actor, token_id = found
    return sessions.LoggedIn(
        actor=actor, csrf_token="", session_key=f"token:{token_id}", via_token=True
    )


async def current_user(request: Request, ctx: Ctx) -> sessions.LoggedIn:
    """The fully signed-in account (session or API token), CSRF-checked on unsafe methods."""
    logged = _from_token(ctx, request)
    if logged is None:
        if request.headers.get("authorization") and request.url.path.startswith(API_PREFIX):
            raise HTTPException(401, "invalid API token", {"WWW-Authenticate": "Bearer"})
        logged = sessions.resolve(ctx.archive, request.cookies.get(sessions.COOKIE))
        if logged is None:
            raise _unauthenticated(request)
        if logged.stage != sessions.FULL:
            if request.url.path.startswith(API_PREFIX):
                raise HTTPException(401, "second factor enrolment unfinished")
            raise HTTPException(303, headers={"Location": "/login/totp"})
    await _check_csrf(request, logged)
    return logged


async def enrolling_user(request: Request, ctx: Ctx) -> sessions.LoggedIn:
    """A session whose password was accepted but whose second factor is still being set up."""
    logged = sessions.resolve(ctx.archive, request.cookies.get(sessions.COOKIE))
    if logged is None:
        raise _unauthenticated(request)
    await _check_csrf(request, logged)
    if logged.stage != sessions.ENROL_TOTP:
        raise HTTPException(303, headers={"Location": "/"})
    return logged


CurrentUser = Annotated[sessions.LoggedIn, Depends(current_user)]
EnrollingUser = Annotated[sessions.LoggedIn, Depends(enrolling_user)]


async def any_session_user(request: Request, ctx: Ctx) -> sessions.LoggedIn:
    """A login session at any stage (for logging out), CSRF-checked."""
    logged = sessions.resolve(ctx.archive, request.cookies.get(sessions.COOKIE))
    if logged is None:
        raise _unauthenticated(request)
    await _check_csrf(request, logged)
    return logged


AnySessionUser = Annotated[sessions.LoggedIn, Depends(any_session_user)]
