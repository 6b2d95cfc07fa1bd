"""Finding and reading records: search, a record with its player, media, timeline, thread.

Role checks, team scope and audit entries are in `tapeline.archive.reading`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from tapeline.archive.access import Action, allowed
from tapeline.archive.reading import conversation, find, media, play, show
from tapeline.archive.records import Filters
from tapeline.archive.review import review_history
from tapeline.web.deps import Ctx, CurrentUser, RowId, client_address
from tapeline.web.pages import PAGE_SIZE, parse_time, render
from tapeline.web.ranges import ranged_response

router = APIRouter(include_in_schema=False)

CHANNELS = ("voice", "whatsapp")
KINDS = (
    "call",
    "message",
    "whatsapp_call",
    "orphan_stream",
    "capture_failure",
    "review_resolution",
)
DIRECTIONS = ("inbound", "outbound", "internal")
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchForm:
    """The search page's fields, as typed (empty strings mean no filter)."""

    party: str = ""
    line: str = ""
    team: str = ""
    channel: str = ""
    kind: str = ""
    direction: str = ""
    text: str = ""
    since: str = ""
    until: str = ""
    page: int = 1

    def filters(self, *, limit: int = PAGE_SIZE) -> Filters:
        """The archive filters for this form (one extra row tells whether a next page exists)."""
        return Filters(
            party=self.party or None,
            line=self.line or None,
            team=self.team or None,
            channel=self.channel or None,
            kind=self.kind or None,
            direction=self.direction or None,
            text=self.text or None,
            since=parse_time(self.since),
            until=parse_time(self.until, end=True),
            limit=limit + 1,
            offset=(self.page - 1) * limit,
        )


def search_form(  # noqa: PLR0913, PLR0917  # one argument per filter field
    party: Annotated[str, Query(max_length=200)] = "",
    line: Annotated[str, Query(max_length=200)] = "",
    team: Annotated[str, Query(max_length=100)] = "",
    channel: Annotated[str, Query(pattern="^(|voice|whatsapp)$")] = "",
    kind: Annotated[
        str, Query(pattern="^(|call|message|whatsapp_call|orphan_stream|capture_failure)$")
    ] = "",
    direction: Annotated[str, Query(pattern="^(|inbound|outbound|internal)$")] = "",
    text: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> SearchForm:
    """The search fields from the query string (shared by the page and the API)."""
    return SearchForm(
        party=party.strip(),
        line=line.strip(),
        team=team.strip(),
        channel=channel,
        kind=kind,
        direction=direction,
        text=text.strip(),
        since=since,
        until=until,
        page=page,
    )


SearchQuery = Annotated[SearchForm, Depends(search_form)]


@router.get("/")
def search_page(request: Request, ctx: Ctx, user: CurrentUser, form: SearchQuery) -> Response:
    """Search (the results alone when htmx asks)."""
    can_search = allowed(user.actor, Action.SEARCH)
    results: list[dict[str, Any]] = []
    if can_search:
        results = find(ctx.archive, user.actor, form.filters())
    more = len(results) > PAGE_SIZE
    values = {
        "can_search": can_search,
        "can_export": allowed(user.actor, Action.EXPORT),
        "results": results[:PAGE_SIZE],
        "more": more,
        "q": form,
        "channels": CHANNELS,
        "kinds": KINDS,
        "directions": DIRECTIONS,
        "storage_mode": ctx.archive.storage_mode,
        "partial": "_results.html",
    }
    return render(ctx, request, "search.html", values, user=user)


@router.get("/records/{interaction_id}")
def record_page(request: Request, ctx: Ctx, user: CurrentUser, interaction_id: str) -> Response:
    """One record: parties, player, channels, stream quality, message."""
    record, _ = show(ctx.archive, user.actor, interaction_id)
    values = {
        "r": record,
        "can_play": allowed(user.actor, Action.PLAY),
        # The archive still decides per record (a supervisor only within their teams).
        "can_flag": allowed(user.actor, Action.FLAG),
        # After `show`, which checked access: links to the filed resolutions of past flags.
        "resolutions": [
            h for h in review_history(ctx.archive, interaction_id) if "resolution" in h
        ],
    }
    return render(ctx, request, "record.html", values, user=user)


@router.get("/records/{interaction_id}/audio")
def record_audio(request: Request, ctx: Ctx, user: CurrentUser, interaction_id: str) -> Response:
    """The decrypted recording with HTTP Range; audited once per session."""
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


@router.get("/media/{object_id}")
def media_download(request: Request, ctx: Ctx, user: CurrentUser, object_id: str) -> Response:
    """A message's media attachment (every download audited)."""
    item = media(ctx.archive, user.actor, object_id, client=client_address(request))
    # Only passive types inline; anything else (SVG, HTML, PDF...) only as a download.
    inline = item.media_type in INLINE_IMAGES or item.media_type.startswith(("audio/", "video/"))
    return Response(
        item.data,
        media_type=item.media_type,
        headers={
            "Content-Disposition": "inline" if inline else f'attachment; filename="{object_id}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/people/{counterparty_id}")
def timeline(request: Request, ctx: Ctx, user: CurrentUser, counterparty_id: RowId) -> Response:
    """Calls and WhatsApp with one person, interleaved, oldest first."""
    person, records = conversation(ctx.archive, user.actor, counterparty_id)
    values = {"person": person, "records": records}
    return render(ctx, request, "timeline.html", values, user=user)


@router.get("/people/{counterparty_id}/whatsapp")
def whatsapp_thread(
    request: Request, ctx: Ctx, user: CurrentUser, counterparty_id: RowId
) -> Response:
    """The WhatsApp thread with one person: bubbles in order with statuses and media."""
    person, records = conversation(ctx.archive, user.actor, counterparty_id, channel="whatsapp")
    values = {
        "person": person,
        "records": records,
        "can_play": allowed(user.actor, Action.PLAY),
    }
    return render(ctx, request, "thread.html", values, user=user)
