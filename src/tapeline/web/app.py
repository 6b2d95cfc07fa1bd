"""The compliance web page and its JSON API: `create_app(archive)` builds it; nothing at import.

Every route needs a signed-in session (or, on `/api/v1`, an API token) except the allow-list
`PUBLIC_PATHS`; a test walks the routes and proves it. Unsafe methods need the session's CSRF
token (`tapeline.web.deps`). Reading, playing and searching go through
`tapeline.archive.reading`, which checks roles and team scope and writes the audit entries.

Routes live in `tapeline.web.routes.*`, one router per area; the hold, retention and export
screens of the archive engine (issue 8) are added the same way, as routers calling
`tapeline.archive` functions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp

from tapeline import __version__
from tapeline.archive.core import Archive
from tapeline.errors import AccessDenied, NotFound
from tapeline.web import sessions
from tapeline.web.deps import API_PREFIX, Ctx, CurrentUser, WebContext
from tapeline.web.health import readiness
from tapeline.web.pages import render
from tapeline.web.ratelimit import LoginLimiter
from tapeline.web.routes import (
    account,
    admin,
    api,
    api_engine,
    api_review,
    auth,
    exports,
    holds,
    oversight,
    records,
    retention,
    review,
)

HERE = Path(__file__).parent
PUBLIC_PATHS = frozenset({"/login", "/livez", "/readyz", "/static"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not `no-referrer`: under it browsers send `Origin: null` on every POST, even same-origin,
    # so the Origin check could not tell our own forms from a forged one. `same-origin` still
    # never sends our URLs (which carry phone numbers in search queries) to another origin.
    "Referrer-Policy": "same-origin",
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


def _error(request: Request, status_code: int, detail: str) -> Response:
    if request.url.path.startswith(API_PREFIX):
        return JSONResponse({"detail": detail}, status_code=status_code)
    ctx: WebContext = request.app.state.web
    logged = sessions.resolve(ctx.archive, request.cookies.get(sessions.COOKIE))
    user = logged if logged is not None and logged.stage == sessions.FULL else None
    return render(
        ctx,
        request,
        "error.html",
        {"status": status_code, "detail": detail},
        user=user,
        status_code=status_code,
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    ctx: WebContext = app.state.web
    ctx.exports.close()  # finished bundles are copies of records: none left behind on disk


def create_app(archive: Archive, *, limiter: LoginLimiter | None = None) -> FastAPI:
    """Build the web application around an opened archive."""
    # The schema is served behind login (api.schema_router), never at FastAPI's public default URL.
    app = FastAPI(
        title="Tapeline",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan,
    )
    app.state.web = WebContext(
        archive=archive,
        templates=Jinja2Templates(directory=HERE / "templates"),
        limiter=limiter or LoginLimiter(),
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    registry = CollectorRegistry()
    registry.register(_WebCollector())

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, exc: AccessDenied) -> Response:
        return _error(request, 403, str(exc))

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, str(exc))

    @app.get("/livez", include_in_schema=False)
    def livez() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request, ctx: Ctx) -> Response:
        logged = sessions.resolve(ctx.archive, request.cookies.get(sessions.COOKIE))
        code, body = readiness(ctx.archive, details=logged is not None)
        return JSONResponse(body, status_code=code, media_type="application/health+json")

    @app.get("/metrics", include_in_schema=False)
    def metrics(_: CurrentUser) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    routers = (
        auth.router,
        account.router,
        records.router,
        admin.router,
        oversight.router,
        holds.router,
        retention.router,
        exports.router,
        review.router,
    )
    for router in (
        *routers,
        api.router,
        api_engine.router,
        api_review.router,
        api.schema_router(app),
    ):
        # Flat, so `app.routes` lists every path operation (the route enumeration test walks it).
        app.router.routes.extend(router.routes)
    return app
