"""Retention on the page: classes, policies, two-person proposals, extending one record.

Who may propose, approve (never the proposer: refused and audited) and extend (never shorter) is
decided in `tapeline.archive.policies`; a refusal is shown here as an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from tapeline.archive import policies
from tapeline.archive.access import Action, allowed
from tapeline.errors import AccessDenied, StorageError, TapelineError
from tapeline.web.deps import Ctx, CurrentUser, RowId
from tapeline.web.pages import parse_time, render
from tapeline.web.routes.records import CHANNELS, DIRECTIONS

router = APIRouter(include_in_schema=False)
Field = Annotated[str, Form(max_length=200)]
Days = Annotated[int | None, Form(ge=1, le=365 * 200)]


def _page(
    request: Request, ctx: Ctx, user: CurrentUser, *, error: str = "", notice: str = ""
) -> Response:
    values = {
        "info": policies.retention_report(ctx.archive, user.actor),
        "can_manage": allowed(user.actor, Action.RETENTION),
        "starts": policies.STARTS,
        "channels": CHANNELS,
        "directions": DIRECTIONS,
        "error": error,
        "notice": notice,
    }
    status = 200
    if error:
        status = 403 if error.startswith("refused: ") else 400
    return render(ctx, request, "retention.html", values, user=user, status_code=status)


def _message(exc: TapelineError) -> str:
    if isinstance(exc, StorageError):  # not the user's doing: a server error
        raise exc
    return f"refused: {exc}" if isinstance(exc, AccessDenied) else str(exc)


@router.get("/retention")
def retention_page(request: Request, ctx: Ctx, user: CurrentUser) -> Response:
    """Classes, policies, open proposals."""
    return _page(request, ctx, user)


@router.post("/retention/classes")
def propose_class(  # noqa: PLR0913, PLR0917  # one argument per form field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    name: Annotated[str, Form(min_length=1, max_length=64)],
    minimum_days: Annotated[int, Form(ge=1, le=365 * 200)],
    maximum_days: Days = None,
    start: Field = "creation",
    rule: Field = "",
) -> Response:
    """Propose a new or changed class (another records manager approves)."""
    # The form has no field for it: a change keeps the class's accessible period as it is.
    known = {c["name"]: c for c in policies.retention_report(ctx.archive, user.actor)["classes"]}
    payload: dict[str, Any] = {
        "name": name.strip(),
        "minimum_days": minimum_days,
        "maximum_days": maximum_days,
        "accessible_days": known.get(name.strip(), {}).get("accessible_days"),
        "start": start,
        "rule": rule.strip(),
    }
    return _propose(request, ctx, user, policies.KIND_CLASS, payload)


@router.post("/retention/policies")
def propose_policy(  # noqa: PLR0913, PLR0917  # one argument per form field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    name: Annotated[str, Form(min_length=1, max_length=120)],
    class_name: Annotated[str, Form(alias="class", min_length=1, max_length=64)],
    line: Field = "",
    team: Field = "",
    channel: Field = "",
    direction: Field = "",
) -> Response:
    """Propose a policy giving matching records a class (another records manager approves)."""
    match = {
        key: value.strip()
        for key, value in {
            "line": line,
            "team": team,
            "channel": channel,
            "direction": direction,
        }.items()
        if value.strip()
    }
    payload = {"name": name.strip(), "class": class_name.strip(), "match": match}
    return _propose(request, ctx, user, policies.KIND_POLICY, payload)


def _propose(
    request: Request, ctx: Ctx, user: CurrentUser, kind: str, payload: dict[str, Any]
) -> Response:
    try:
        row = policies.propose(ctx.archive, user.actor, kind=kind, payload=payload)
    except TapelineError as exc:
        return _page(request, ctx, user, error=_message(exc))
    notice = f"Proposal {row['id']} open: another records manager must approve it."
    return _page(request, ctx, user, notice=notice)


@router.post("/retention/proposals/{proposal_id}/approve")
def approve(request: Request, ctx: Ctx, user: CurrentUser, proposal_id: RowId) -> Response:
    """Approve a proposal (not the proposer's own)."""
    try:
        policies.approve(ctx.archive, user.actor, proposal_id)
    except TapelineError as exc:
        return _page(request, ctx, user, error=_message(exc))
    return _page(request, ctx, user, notice=f"Proposal {proposal_id} approved and in force.")


@router.post("/retention/extend")
def extend(  # noqa: PLR0913, PLR0917  # one argument per form field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    interaction_id: Annotated[str, Form(min_length=1, max_length=64)],
    reason: Field,
    years: Annotated[float | None, Form(gt=0, le=100)] = None,
    until: Field = "",
) -> Response:
    """Lengthen retention of one record (by years from its start, or to a date)."""
    try:
        when: datetime | None = parse_time(until.strip(), end=True) if until.strip() else None
        result = policies.extend(
            ctx.archive,
            user.actor,
            reason=reason,
            interaction_id=interaction_id.strip(),
            years=years,
            until=when,
        )
    except TapelineError as exc:
        return _page(request, ctx, user, error=_message(exc))
    changed = result["records"].get(interaction_id.strip())
    notice = (
        f"Retention of {interaction_id} extended to {changed}."
        if changed
        else f"Retention of {interaction_id} already lasts at least that long."
    )
    return _page(request, ctx, user, notice=notice)
