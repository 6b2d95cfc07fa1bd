"""The compliance web page and its JSON API: `create_app(archive)` builds it; nothing at import.

Every route needs a logged-in session except the allow-list `PUBLIC_PATHS` (a test walks the
routes and proves it). Reading a record, playing audio and searching go through
`tapeline.archive.reading`, which checks roles and writes the audit entries.
"""

import hmac
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp

from tapeline import __version__
from tapeline.archive.access import Action, allowed
from tapeline.archive.cdr import reconcile
from tapeline.archive.core import Archive
from tapeline.archive.reading import find, show
from tapeline.archive.records import Filters
from tapeline.archive.users import authenticate
from tapeline.errors import AccessDenied, NotFound
from tapeline.web import sessions
from tapeline.web.health import readiness

HERE = Path(__file__).parent
PUBLIC_PATHS = frozenset({"/login", "/livez", "/readyz", "/static"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Strict-Transport-Security": "max-age=31536000",
    "Cache-Control": "no-store",
}


class SecurityHeaders(BaseHTTPMiddleware):
    """Adds the security headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Pass the request on, then decorate the response."""
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


class _WebCollector(Collector):
    def collect(self) -> list[InfoMetricFamily]:
        return [
            InfoMetricFamily("tapeline_build", "Tapeline build", value={"version": __version__})
        ]


def _parse_time(value: str | None, *, end: bool = False) -> datetime | None:
    """RFC 3339 time or a date (a date as `until` means the end of that day)."""
    if not value:
        return None
    try:
        if "T" not in value:
            day = date.fromisoformat(value)
            parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (
                parsed.replace(hour=23, minute=59, second=59, microsecond=999000) if end else parsed
            )
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise HTTPException(422, f"not an RFC 3339 time or date: {value!r}") from exc
    if parsed.tzinfo is None:
        raise HTTPException(422, f"time needs a UTC offset: {value!r}")
    return parsed


def create_app(archive: Archive) -> FastAPI:  # noqa: C901, PLR0915  # the route table reads best in one place
    """Build the web application around an opened archive."""
    # The schema is served behind login (below), never at FastAPI's public default URL.
    app = FastAPI(
        title="Tapeline", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(SecurityHeaders)
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    registry = CollectorRegistry()
    registry.register(_WebCollector())

    def current(request: Request) -> sessions.LoggedIn:
        logged = sessions.resolve(archive, request.cookies.get(sessions.COOKIE))
        if logged is None:
            if request.url.path.startswith("/api/"):
                raise HTTPException(401, "login required")
            raise HTTPException(303, headers={"Location": "/login"})
        return logged

    user_dep = Annotated[sessions.LoggedIn, Depends(current)]

    @app.exception_handler(AccessDenied)
    async def _denied(_: Request, exc: AccessDenied) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(NotFound)
    async def _missing(_: Request, exc: NotFound) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.get("/livez")
    def livez() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz")
    def readyz(request: Request) -> Response:
        logged = sessions.resolve(archive, request.cookies.get(sessions.COOKIE))
        code, body = readiness(archive, details=logged is not None)
        return JSONResponse(body, status_code=code, media_type="application/health+json")

    @app.get("/metrics")
    def metrics(_: user_dep) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"error": None})

    @app.post("/login")
    def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        totp: Annotated[str, Form()] = "",
    ) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
            raise HTTPException(403, "cross-origin login refused")
        try:
            actor = authenticate(archive, name=username, password=password, code=totp or None)
        except AccessDenied:
            return templates.TemplateResponse(
                request, "login.html", {"error": "Wrong name, password or code."}, status_code=401
            )
        token = sessions.start(archive, actor)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            sessions.COOKIE, token, secure=True, httponly=True, samesite="strict", path="/"
        )
        return response

    @app.post("/logout")
    def logout(request: Request, user: user_dep, csrf: Annotated[str, Form()]) -> Response:
        if not hmac.compare_digest(csrf, user.csrf_token):
            raise HTTPException(403, "bad CSRF token")
        sessions.end(archive, request.cookies.get(sessions.COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(sessions.COOKIE, secure=True, httponly=True, samesite="strict")
        return response

    def _filters(
        party: str | None,
        line: str | None,
        channel: str | None,
        since: str | None,
        until: str | None,
    ) -> Filters:
        return Filters(
            party=party or None,
            line=line or None,
            channel=channel or None,
            since=_parse_time(since),
            until=_parse_time(until, end=True),
            limit=500,
        )

    @app.get("/", response_class=HTMLResponse)
    def search_page(  # noqa: PLR0913, PLR0917  # one argument per filter field
        request: Request,
        user: user_dep,
        party: str | None = None,
        line: str | None = None,
        channel: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Response:
        can_search = allowed(user.actor, Action.SEARCH)
        results: list[dict[str, Any]] = []
        if can_search:
            results = find(archive, user.actor, _filters(party, line, channel, since, until))
        context = {
            "user": user,
            "can_search": can_search,
            "results": results,
            "q": {
                "party": party or "",
                "line": line or "",
                "channel": channel or "",
                "since": since or "",
                "until": until or "",
            },
            "storage_mode": archive.storage_mode,
        }
        return templates.TemplateResponse(request, "search.html", context)

    @app.get("/records/{interaction_id}", response_class=HTMLResponse)
    def record_page(request: Request, interaction_id: str, user: user_dep) -> Response:
        record, _ = show(archive, user.actor, interaction_id)
        return templates.TemplateResponse(
            request,
            "record.html",
            {"user": user, "r": record, "can_play": allowed(user.actor, Action.PLAY)},
        )

    @app.get("/records/{interaction_id}/audio")
    def record_audio(interaction_id: str, user: user_dep) -> Response:
        record, data = show(archive, user.actor, interaction_id, audio=True)
        media = "audio/flac" if record["recording"]["format"] == "flac" else "audio/ogg"
        return Response(data, media_type=media)

    @app.get("/api/v1/interactions")
    def api_search(  # noqa: PLR0913, PLR0917  # one argument per filter field
        user: user_dep,
        party: str | None = None,
        line: str | None = None,
        channel: Annotated[str | None, Query(pattern="^(voice|whatsapp)$")] = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        return find(archive, user.actor, _filters(party, line, channel, since, until))

    @app.get("/api/v1/openapi.json")
    def api_schema(_: user_dep) -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/v1/reconciliation")
    def api_reconciliation(
        user: user_dep, day: Annotated[str, Query(alias="date", pattern=r"^\d{4}-\d{2}-\d{2}$")]
    ) -> dict[str, Any]:
        if not any(allowed(user.actor, a) for a in (Action.RETENTION, Action.READ_AUDIT)):
            raise AccessDenied(f"{user.actor.name} may not read the reconciliation report")
        return reconcile(archive, user.actor, date.fromisoformat(day))

    @app.get("/api/v1/interactions/{interaction_id}")
    def api_show(interaction_id: str, user: user_dep) -> dict[str, Any]:
        record, _ = show(archive, user.actor, interaction_id)
        return record

    return app
