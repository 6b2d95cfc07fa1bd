"""Who may do what (DESIGN §7). Enforced here, so the CLI and the web page cannot differ."""

from __future__ import annotations

from enum import StrEnum

from tapeline.archive.audit import Actor
from tapeline.errors import AccessDenied


class Role(StrEnum):
    """The appliance roles."""

    ADMIN = "admin"
    RECORDS_MANAGER = "records-manager"
    LEGAL = "legal"
    REVIEWER = "reviewer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    EXPORT_OFFICER = "export-officer"


# Someone with a shell on the appliance running the CLI without `--as`: they can read the index
# file anyway (file permissions are its protection, DESIGN §5), so metadata search is allowed and
# audited under their Unix name; content (audio, exports) always needs an account.
LOCAL_OPERATOR = "local-operator"


class Action(StrEnum):
    """The guarded actions."""

    MANAGE_USERS = "manage-users"
    SEARCH = "search"
    PLAY = "play"
    FLAG = "flag"
    EXPORT = "export"
    HOLD = "hold"
    RETENTION = "retention"
    READ_AUDIT = "read-audit"
    CONFIRM_CLOCK = "confirm-clock"


PERMISSIONS: dict[Action, frozenset[str]] = {
    Action.MANAGE_USERS: frozenset({Role.ADMIN}),
    Action.SEARCH: frozenset({Role.REVIEWER, Role.SUPERVISOR, Role.AUDITOR, LOCAL_OPERATOR}),
    Action.PLAY: frozenset({Role.REVIEWER, Role.SUPERVISOR, Role.AUDITOR}),
    Action.FLAG: frozenset({Role.REVIEWER, Role.SUPERVISOR}),
    Action.EXPORT: frozenset({Role.EXPORT_OFFICER}),
    Action.HOLD: frozenset({Role.LEGAL}),
    Action.RETENTION: frozenset({Role.RECORDS_MANAGER}),
    Action.READ_AUDIT: frozenset({Role.AUDITOR, Role.ADMIN}),
    # Confirming the time after a clock jump lifts the purge suspension: the admin owns the
    # clock (NTP), the records manager owns disposition; either may vouch, and it is audited.
    Action.CONFIRM_CLOCK: frozenset({Role.ADMIN, Role.RECORDS_MANAGER}),
}

# Supervisors see only their teams; everyone else allowed to search sees every team.
_TEAM_SCOPED = frozenset({Role.SUPERVISOR})


def allowed(actor: Actor, action: Action) -> bool:
    """Whether any of the actor's roles grants the action."""
    return any(role in PERMISSIONS[action] for role in actor.roles)


def require(actor: Actor, action: Action) -> None:
    """Refuse unless the actor may do `action`.

    Raises:
        AccessDenied: naming the action and the roles that would allow it.
    """
    if not allowed(actor, action):
        needed = ", ".join(sorted(PERMISSIONS[action]))
        raise AccessDenied(f"{actor.name} may not {action} (needs one of: {needed})")


def team_scope(actor: Actor, action: Action) -> frozenset[str] | None:
    """The teams the actor is limited to for `action`, or None for no limit."""
    unscoped = [r for r in actor.roles if r in PERMISSIONS[action] and r not in _TEAM_SCOPED]
    if unscoped:
        return None
    return frozenset(actor.teams)
