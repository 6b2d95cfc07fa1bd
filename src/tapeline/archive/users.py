"""Appliance accounts: argon2id passwords, roles, teams, optional TOTP, lockout.

Every change is audited in the same transaction. Passwords are never stored, logged or echoed;
a TOTP secret is kept wrapped by the archive key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tapeline.archive import audit, totp
from tapeline.archive.access import Action, Role, require
from tapeline.archive.core import Archive
from tapeline.archive.models import ApiToken, User, WebSession, utcnow
from tapeline.errors import AccessDenied, NotFound, TapelineError

MIN_PASSWORD_LENGTH = 12
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
_HASHER = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory defaults
_TOTP_AAD = b"tapeline-totp|"
SECOND_FACTOR_ROLES = frozenset({Role.ADMIN, Role.LEGAL, Role.RECORDS_MANAGER})


class PasswordPolicyError(TapelineError):
    """A new password that does not meet the policy."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInfo:
    """An account as listed (no secrets)."""

    name: str
    roles: list[str]
    teams: list[str]
    totp: bool
    disabled: bool


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")


def _check_roles(roles: list[str]) -> list[str]:
    known = {r.value for r in Role}
    bad = [r for r in roles if r not in known]
    if bad or not roles:
        raise TapelineError(f"unknown or missing roles {bad}; known: {', '.join(sorted(known))}")
    return sorted(set(roles))


def add_user(  # noqa: PLR0913  # one argument per account field
    archive: Archive,
    *,
    name: str,
    roles: list[str],
    teams: list[str],
    password: str,
    by: audit.Actor,
    with_totp: bool = False,
) -> bytes | None:
    """Create an account; returns the new TOTP secret when asked for one.

    The very first account may be created by the appliance itself (`system:cli` on the box);
    after that only an admin may add accounts.

    Raises:
        AccessDenied: `by` is not an admin and accounts exist already.
        PasswordPolicyError: the password is too weak.
        TapelineError: the name is taken or a role is unknown.
    """
    _check_password(password)
    clean_roles = _check_roles(roles)
    secret = totp.new_secret() if with_totp else None
    with archive.index.write() as session:
        first = session.execute(select(User.id).limit(1)).first() is None
        if not first and "system" not in by.roles:
            require(by, Action.MANAGE_USERS)
        if session.execute(select(User).where(User.name == name)).scalar_one_or_none():
            raise TapelineError(f"account {name!r} exists already")
        now = utcnow()
        session.add(
            User(
                name=name,
                password_hash=_HASHER.hash(password),
                roles=clean_roles,
                teams=sorted(set(teams)),
                totp_secret=archive.vault.archive_key.wrap(secret, _TOTP_AAD + name.encode())
                if secret
                else None,
                disabled=False,
                failed_logins=0,
                locked_until=None,
                created_at=now,
                password_changed_at=now,
            )
        )
        audit.append(
            session,
            node_id=archive.node_id,
            actor=by,
            action="user.added",
            object_type="user",
            object_id=name,
            details={"roles": clean_roles, "teams": sorted(set(teams)), "totp": bool(secret)},
        )
    return secret


def set_password(archive: Archive, *, name: str, password: str, by: audit.Actor) -> None:
    """Change an account's password (the account itself, an admin, or the appliance).

    Raises:
        AccessDenied: someone else who is not an admin.
        NotFound: no such account.
        PasswordPolicyError: the password is too weak.
    """
    _check_password(password)
    if by.name != name and "system" not in by.roles:
        require(by, Action.MANAGE_USERS)
    with archive.index.write() as session:
        user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if user is None:
            raise NotFound(f"no account {name!r}")
        user.password_hash = _HASHER.hash(password)
        user.password_changed_at = utcnow()
        user.failed_logins = 0
        user.locked_until = None
        _revoke_logins(session, name)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=by,
            action="user.password_changed",
            object_type="user",
            object_id=name,
        )


def list_users(archive: Archive) -> list[UserInfo]:
    """Every account, without secrets."""
    with archive.index.read() as session:
        return [
            UserInfo(
                name=u.name,
                roles=list(u.roles),
                teams=list(u.teams),
                totp=u.totp_secret is not None,
                disabled=u.disabled,
            )
            for u in session.execute(select(User).order_by(User.name)).scalars()
        ]


def authenticate(  # noqa: C901, PLR0913  # credentials, clock, client; each refusal audited
    archive: Archive,
    *,
    name: str,
    password: str,
    code: str | None,
    now: float | None = None,
    client: str | None = None,
) -> audit.Actor:
    """Check a password (and TOTP code when the account has one); failures count toward lockout.

    Both outcomes are audited with the client address when one is given.

    Raises:
        AccessDenied: wrong name, password or code, a locked or disabled account (one message
            for all, so the answer tells an attacker nothing).
    """
    denied = AccessDenied("authentication failed")
    where = {"client": client} if client else {}
    with archive.index.write() as session:
        user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if user is None:
            _HASHER.hash(password)  # same work as a real check: no timing oracle on names
            raise denied
        refused = None
        if user.disabled:
            refused = "disabled"
        elif user.locked_until is not None and user.locked_until > utcnow():
            refused = "locked"
        ok = refused is None
        if ok:
            try:
                _HASHER.verify(user.password_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
        if ok and user.totp_secret is not None:
            secret = archive.vault.archive_key.unwrap(
                user.totp_secret, _TOTP_AAD + user.name.encode()
            )
            ok = code is not None and totp.verify(secret, code, time.time() if now is None else now)
        actor = audit.Actor(name=user.name, roles=tuple(user.roles), teams=tuple(user.teams))
        if not ok:
            details: dict[str, object] = {**where}
            if refused is None:
                user.failed_logins += 1
                if user.failed_logins >= MAX_FAILED_LOGINS:
                    user.locked_until = utcnow() + LOCKOUT
                details["failed_logins"] = user.failed_logins
            else:
                details["refused"] = refused
            audit.append(
                session,
                node_id=archive.node_id,
                actor=audit.Actor(name=name),
                action="auth.failed",
                object_type="user",
                object_id=name,
                details=details,
            )
        else:
            user.failed_logins = 0
            audit.append(
                session,
                node_id=archive.node_id,
                actor=actor,
                action="auth.succeeded",
                object_type="user",
                object_id=name,
                details=where,
            )
    if ok:
        return actor
    raise denied


def needs_second_factor(roles: list[str] | tuple[str, ...]) -> bool:
    """Whether an account with these roles must have TOTP (admin, legal, records-manager)."""
    return any(role in SECOND_FACTOR_ROLES for role in roles)


def totp_enrolled(archive: Archive, name: str) -> bool:
    """Whether the account has a TOTP secret."""
    with archive.index.read() as session:
        user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        return user is not None and user.totp_secret is not None


def wrap_pending_totp(archive: Archive, name: str, secret: bytes) -> bytes:
    """A TOTP secret being enrolled, wrapped by the archive key for the session row."""
    return archive.vault.archive_key.wrap(secret, _TOTP_AAD + b"pending|" + name.encode())


def unwrap_pending_totp(archive: Archive, name: str, wrapped: bytes) -> bytes:
    """The inverse of `wrap_pending_totp`."""
    return archive.vault.archive_key.unwrap(wrapped, _TOTP_AAD + b"pending|" + name.encode())


def enrol_totp(
    archive: Archive, *, name: str, secret: bytes, code: str, now: float | None = None
) -> None:
    """Give an account its TOTP secret once the user proves it with a current code (audited).

    Raises:
        AccessDenied: the code does not match the secret (nothing is stored).
        NotFound: no such account.
    """
    if not totp.verify(secret, code, time.time() if now is None else now):
        raise AccessDenied("the authenticator code does not match")
    with archive.index.write() as session:
        user = _get(session, name)
        user.totp_secret = archive.vault.archive_key.wrap(secret, _TOTP_AAD + name.encode())
        audit.append(
            session,
            node_id=archive.node_id,
            actor=audit.Actor(name=user.name, roles=tuple(user.roles), teams=tuple(user.teams)),
            action="user.totp_enrolled",
            object_type="user",
            object_id=name,
        )


def reset_totp(archive: Archive, *, name: str, by: audit.Actor) -> None:
    """Remove an account's TOTP secret (a lost phone); it enrols again at its next login.

    Raises:
        AccessDenied: `by` is not an admin.
        NotFound: no such account.
    """
    require(by, Action.MANAGE_USERS)
    with archive.index.write() as session:
        user = _get(session, name)
        user.totp_secret = None
        _revoke_logins(session, name)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=by,
            action="user.totp_reset",
            object_type="user",
            object_id=name,
        )


def set_disabled(archive: Archive, *, name: str, disabled: bool, by: audit.Actor) -> None:
    """Disable (logging out its sessions and revoking its API tokens) or re-enable an account.

    Raises:
        AccessDenied: `by` is not an admin, or an admin disables their own account.
        NotFound: no such account.
    """
    require(by, Action.MANAGE_USERS)
    if disabled and by.name == name:
        raise AccessDenied("an administrator cannot disable their own account")
    with archive.index.write() as session:
        user = _get(session, name)
        user.disabled = disabled
        if disabled:
            _revoke_logins(session, name)
        else:
            user.failed_logins = 0
            user.locked_until = None
        audit.append(
            session,
            node_id=archive.node_id,
            actor=by,
            action="user.disabled" if disabled else "user.enabled",
            object_type="user",
            object_id=name,
        )


def set_roles(
    archive: Archive, *, name: str, roles: list[str], teams: list[str], by: audit.Actor
) -> None:
    """Change an account's roles and teams (a permission change: audited with before and after).

    The account's sessions end, so the new roles take effect at its next login.

    Raises:
        AccessDenied: `by` is not an admin, or an admin removes their own admin role.
        NotFound: no such account.
        TapelineError: an unknown role.
    """
    require(by, Action.MANAGE_USERS)
    clean_roles = _check_roles(roles)
    if by.name == name and Role.ADMIN not in clean_roles:
        raise AccessDenied("an administrator cannot remove their own admin role")
    with archive.index.write() as session:
        user = _get(session, name)
        before = {"roles": list(user.roles), "teams": list(user.teams)}
        user.roles = clean_roles
        user.teams = sorted({t for t in teams if t})
        _revoke_logins(session, name)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=by,
            action="user.roles_changed",
            object_type="user",
            object_id=name,
            details={"before": before, "after": {"roles": user.roles, "teams": user.teams}},
        )


def _get(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no account {name!r}")
    return user


def _revoke_logins(session: Session, name: str) -> None:
    """End every web session of an account (password, role or status changed)."""
    session.execute(delete(WebSession).where(WebSession.user_name == name))
    session.execute(
        update(ApiToken)
        .where(ApiToken.user_name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
