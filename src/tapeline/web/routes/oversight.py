"""The audit log (auditor, admin) and the status page (every signed-in account)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from tapeline.archive.access import Action, allowed
from tapeline.archive.auditlog import PAGE_SIZE, AuditFilters, chain_status, entries
from tapeline.archive.cdr import replica_findings
from tapeline.archive.models import utcnow
from tapeline.archive.nodes import node_statuses, recent_alarms
from tapeline.archive.trustedclock import confirm_clock, is_suspended
from tapeline.errors import AccessDenied, StorageError, TapelineError
from tapeline.web.deps import Ctx, CurrentUser
from tapeline.web.pages import parse_time, render

router = APIRouter(include_in_schema=False)
STALE_HEARTBEAT_S = 120


@router.get("/audit")
def audit_page(  # noqa: PLR0913, PLR0917  # one argument per filter field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    actor: Annotated[str, Query(max_length=64)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    object_id: Annotated[str, Query(max_length=64)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """The audit log with its filters and the chain's verification status."""
    filters = AuditFilters(
        actor=actor.strip() or None,
        action=action.strip() or None,
        object_id=object_id.strip() or None,
        since=parse_time(since),
        until=parse_time(until, end=True),
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )
    status = chain_status(ctx.archive, user.actor)
    rows = entries(ctx.archive, user.actor, filters)
    values = {
        "rows": rows[:PAGE_SIZE],
        "more": len(rows) > PAGE_SIZE,
        "chain": status,
        "q": {
            "actor": actor,
            "action": action,
            "object_id": object_id,
            "since": since,
            "until": until,
        },
        "page": page,
        "partial": "_audit_rows.html",
    }
    return render(ctx, request, "audit.html", values, user=user)


def _status(
    request: Request, ctx: Ctx, user: CurrentUser, *, error: str = "", notice: str = ""
) -> Response:
    now = utcnow()
    nodes = [
        {
            "node_id": n.node_id,
            "version": n.version,
            "started_at": n.started_at,
            "seen_at": n.seen_at,
            "age_s": int((now - n.seen_at).total_seconds()),
            "stale": (now - n.seen_at).total_seconds() > STALE_HEARTBEAT_S,
            "status": n.status,
        }
        for n in node_statuses(ctx.archive)
    ]
    alarms = recent_alarms(ctx.archive)
    values = {
        "nodes": nodes,
        "active": [a for a in alarms if a.cleared_at is None],
        "cleared": [a for a in alarms if a.cleared_at is not None],
        "storage_mode": ctx.archive.storage_mode,
        "worm": ctx.archive.vault.store.worm,
        "replica_mode": getattr(ctx.archive.vault.store, "replica_mode", None),
        "replica": replica_findings(ctx.archive),
        "clock_suspended": is_suspended(ctx.archive),
        # Only these roles see the button; `confirm_clock` checks the role again.
        "can_confirm_clock": allowed(user.actor, Action.CONFIRM_CLOCK),
        "error": error,
        "notice": notice,
    }
    status = 400 if error else 200
    return render(ctx, request, "status.html", values, user=user, status_code=status)


@router.get("/status")
def status_page(request: Request, ctx: Ctx, user: CurrentUser) -> Response:
    """Recorder heartbeats, alarms, the storage mode and a clock-jump purge suspension."""
    return _status(request, ctx, user)


@router.post("/status/clock-confirm")
def clock_confirm(
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    stated: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Confirm the time after a clock jump (admin, records manager); purging resumes."""
    try:
        info = confirm_clock(ctx.archive, user.actor, stated=parse_time(stated.strip()))
    except (AccessDenied, StorageError):
        raise  # 403 from the app's handler; a storage failure is a server error
    except TapelineError as exc:
        return _status(request, ctx, user, error=str(exc))
    notice = f"Time confirmed as {info['confirmed_time']}; purging resumes."
    return _status(request, ctx, user, notice=notice)
