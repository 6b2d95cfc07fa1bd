"""User management for administrators: add, disable/enable, reset password or TOTP, roles, teams.

Every change goes through `tapeline.archive.users`, which checks the admin role and audits it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from tapeline.archive.access import Action, Role, require
from tapeline.archive.users import (
    add_user,
    list_users,
    reset_totp,
    set_disabled,
    set_password,
    set_roles,
)
from tapeline.errors import AccessDenied, NotFound, TapelineError
from tapeline.web.deps import Ctx, CurrentUser
from tapeline.web.pages import render

router = APIRouter(include_in_schema=False)
ROLES = tuple(r.value for r in Role)


def _teams(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _page(
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    *,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    require(user.actor, Action.MANAGE_USERS)
    values = {"users": list_users(ctx.archive), "roles": ROLES, "error": error, "notice": notice}
    return render(ctx, request, "users.html", values, user=user, status_code=400 if error else 200)


@router.get("/admin/users")
def users_page(request: Request, ctx: Ctx, user: CurrentUser) -> Response:
    """Every account, with forms to change it."""
    return _page(request, ctx, user)


@router.post("/admin/users")
def user_add(  # noqa: PLR0913, PLR0917  # one argument per account field
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    name: Annotated[str, Form(pattern=r"^[a-z][a-z0-9._-]{1,63}$")],
    password: Annotated[str, Form(max_length=1024)],
    roles: Annotated[list[str], Form()],
    teams: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Add an account."""
    try:
        add_user(
            ctx.archive,
            name=name,
            roles=roles,
            teams=_teams(teams),
            password=password,
            by=user.actor,
        )
    except AccessDenied:
        raise
    except TapelineError as exc:
        return _page(request, ctx, user, error=str(exc))
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{name}/disable")
def user_disable(request: Request, ctx: Ctx, user: CurrentUser, name: str) -> Response:
    """Disable an account (its sessions and tokens end)."""
    try:
        set_disabled(ctx.archive, name=name, disabled=True, by=user.actor)
    except AccessDenied as exc:
        if not _is_admin(user):
            raise
        return _page(request, ctx, user, error=str(exc))
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{name}/enable")
def user_enable(ctx: Ctx, user: CurrentUser, name: str) -> Response:
    """Enable an account again."""
    set_disabled(ctx.archive, name=name, disabled=False, by=user.actor)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{name}/password")
def user_password(
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    name: str,
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    """Reset an account's password (its sessions end)."""
    require(user.actor, Action.MANAGE_USERS)
    try:
        set_password(ctx.archive, name=name, password=password, by=user.actor)
    except NotFound:
        raise
    except TapelineError as exc:
        return _page(request, ctx, user, error=str(exc))
    return _page(request, ctx, user, notice=f"Password of {name} reset; their sessions ended.")


@router.post("/admin/users/{name}/totp-reset")
def user_totp_reset(ctx: Ctx, user: CurrentUser, name: str) -> Response:
    """Remove an account's TOTP secret; it enrols again at its next login."""
    reset_totp(ctx.archive, name=name, by=user.actor)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{name}/roles")
def user_roles(  # noqa: PLR0913, PLR0917  # the account, its new roles and teams
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    name: str,
    roles: Annotated[list[str], Form()],
    teams: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Change an account's roles and teams."""
    try:
        set_roles(ctx.archive, name=name, roles=roles, teams=_teams(teams), by=user.actor)
    except AccessDenied as exc:
        if not _is_admin(user):
            raise
        return _page(request, ctx, user, error=str(exc))
    except NotFound:
        raise
    except TapelineError as exc:
        return _page(request, ctx, user, error=str(exc))
    return RedirectResponse("/admin/users", status_code=303)


def _is_admin(user: CurrentUser) -> bool:
    return Role.ADMIN in user.actor.roles
