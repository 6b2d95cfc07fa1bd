"""Rendering a page: the template, the signed-in account and what its roles may see in the menu."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import Response

from tapeline.archive.access import Action, allowed
from tapeline.web.deps import WebContext
from tapeline.web.sessions import LoggedIn

PAGE_SIZE = 50


def nav(user: LoggedIn | None) -> dict[str, bool]:
    """Which menu entries the account's roles make useful."""
    if user is None:
        return {}
    actor = user.actor
    return {
        "search": allowed(actor, Action.SEARCH),
        "play": allowed(actor, Action.PLAY),
        "audit": allowed(actor, Action.READ_AUDIT),
        "users": allowed(actor, Action.MANAGE_USERS),
        "holds": any(allowed(actor, a) for a in (Action.HOLD, Action.RETENTION, Action.READ_AUDIT)),
        "review": allowed(actor, Action.FLAG),
        "retention": any(
            allowed(actor, a) for a in (Action.RETENTION, Action.HOLD, Action.READ_AUDIT)
        ),
        "exports": any(allowed(actor, a) for a in (Action.EXPORT, Action.READ_AUDIT)),
    }


def render(  # noqa: PLR0913  # the page, who sees it and how it answers
    ctx: WebContext,
    request: Request,
    name: str,
    values: dict[str, Any],
    *,
    user: LoggedIn | None,
    status_code: int = 200,
) -> Response:
    """A full page, or only its `partial` block's template when htmx asks (`HX-Request`)."""
    data = {"user": user, "nav": nav(user), **values}
    template = name
    partial = values.get("partial")
    if partial and request.headers.get("hx-request") == "true":
        template = partial
    return ctx.templates.TemplateResponse(request, template, data, status_code=status_code)


def parse_time(value: str | None, *, end: bool = False) -> datetime | None:
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
