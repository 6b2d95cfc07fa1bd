"""Legal holds on the page: place (matter + scope), list with record counts, release in two steps.

Role rules (legal places, requests and approves; a second legal account approves) are in
`tapeline.archive.holds`; a refusal is shown on this page as an error, and the archive audits it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from tapeline.archive import holds, searches
from tapeline.archive.access import Action, allowed
from tapeline.errors import AccessDenied, StorageError, TapelineError
from tapeline.web.deps import Ctx, CurrentUser, RowId
from tapeline.web.pages import parse_time, render
from tapeline.web.routes.records import CHANNELS

router = APIRouter(include_in_schema=False)
Field = Annotated[str, Form(max_length=200)]


def scope_of(  # noqa: PLR0913  # one argument per scope field
    *, party: str, line: str, team: str, channel: str, since: str, until: str
) -> dict[str, Any]:
    """A hold or export scope from form fields (empty fields are no filter)."""
    if channel and channel not in CHANNELS:
        raise TapelineError(f"unknown channel {channel!r}")
    return searches.scope_from(
        party=party.strip() or None,
        line=line.strip() or None,
        team=team.strip() or None,
        channel=channel or None,
        since=parse_time(since.strip()),
        until=parse_time(until.strip(), end=True),
    )


def _page(
    request: Request, ctx: Ctx, user: CurrentUser, *, error: str = "", notice: str = ""
) -> Response:
    values = {
        "holds": holds.hold_report(ctx.archive, user.actor),
        "searches": searches.list_searches(ctx.archive),
        "can_hold": allowed(user.actor, Action.HOLD),
        "channels": CHANNELS,
        "error": error,
        "notice": notice,
    }
    status = 200
    if error:
        status = 403 if error.startswith("refused: ") else 400
    return render(ctx, request, "holds.html", values, user=user, status_code=status)


def _refused(exc: TapelineError) -> str:
    if isinstance(exc, StorageError):  # not the user's doing: let it surface as a server error
        raise exc
    return f"refused: {exc}" if isinstance(exc, AccessDenied) else str(exc)


@router.get("/holds")
def holds_page(request: Request, ctx: Ctx, user: CurrentUser) -> Response:
    """Every hold with its record count; forms for legal."""
    return _page(request, ctx, user)


@router.post("/holds")
def place(  # noqa: PLR0913, PLR0917  # one argument per form field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    matter: Annotated[str, Form(min_length=1, max_length=200)],
    party: Field = "",
    line: Field = "",
    team: Field = "",
    channel: Field = "",
    since: Field = "",
    until: Field = "",
    saved_search: Field = "",
) -> Response:
    """Place a hold on a matter: now on every matching record, and on later ones when filed."""
    try:
        scope = scope_of(
            party=party, line=line, team=team, channel=channel, since=since, until=until
        )
        info = holds.place_hold(
            ctx.archive,
            user.actor,
            matter=matter.strip(),
            scope=scope,
            saved_search=saved_search.strip() or None,
        )
    except TapelineError as exc:
        return _page(request, ctx, user, error=_refused(exc))
    notice = f"Hold {info['id']} placed on {info['records']} records for {info['matter']}."
    return _page(request, ctx, user, notice=notice)


@router.post("/holds/{hold_id}/release-request")
def request_release(
    request: Request, ctx: Ctx, user: CurrentUser, hold_id: RowId, reason: Field
) -> Response:
    """Ask for a release (a second legal account approves)."""
    try:
        matter = holds.matter_of(ctx.archive, hold_id)
        holds.request_release(ctx.archive, user.actor, matter=matter, reason=reason)
    except TapelineError as exc:
        return _page(request, ctx, user, error=_refused(exc))
    return _page(request, ctx, user, notice=f"Release of {matter} requested.")


@router.post("/holds/{hold_id}/approve")
def approve_release(request: Request, ctx: Ctx, user: CurrentUser, hold_id: RowId) -> Response:
    """Approve a requested release (not by the person who asked for it)."""
    try:
        matter = holds.matter_of(ctx.archive, hold_id)
        holds.approve_release(ctx.archive, user.actor, matter=matter)
    except TapelineError as exc:
        return _page(request, ctx, user, error=_refused(exc))
    return _page(request, ctx, user, notice=f"Hold on {matter} released.")


@router.post("/searches")
def save_search(  # noqa: PLR0913, PLR0917  # one argument per form field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    party: Field = "",
    line: Field = "",
    team: Field = "",
    channel: Field = "",
    since: Field = "",
    until: Field = "",
) -> Response:
    """Save a named search that a hold (now and for later records) can be scoped by."""
    try:
        scope = scope_of(
            party=party, line=line, team=team, channel=channel, since=since, until=until
        )
        searches.save_search(ctx.archive, user.actor, name=name.strip(), scope=scope)
    except TapelineError as exc:
        return _page(request, ctx, user, error=_refused(exc))
    return _page(request, ctx, user, notice=f"Search {name.strip()} saved.")
