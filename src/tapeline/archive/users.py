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
from sqlalchemy import select

from tapeline.archive import audit, totp
from tapeline.archive.access import Action, Role, require
from tapeline.archive.core import Archive
from tapeline.archive.models import User, utcnow
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


def authenticate(
    archive: Archive, *, name: str, password: str, code: str | None, now: float | None = None
) -> audit.Actor:
    """Check a password (and TOTP code when the account has one); failures count toward lockout.

    Raises:
        AccessDenied: wrong name, password or code, a locked or disabled account (one message
            for all, so the answer tells an attacker nothing).
    """
    denied = AccessDenied("authentication failed")
    with archive.index.write() as session:
        user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if user is None:
            _HASHER.hash(password)  # same work as a real check: no timing oracle on names
            raise denied
        if user.disabled or (user.locked_until is not None and user.locked_until > utcnow()):
            raise denied
        ok = True
        try:
            _HASHER.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if ok and user.totp_secret is not None:
            secret = archive.vault.archive_key.unwrap(
                user.totp_secret, _TOTP_AAD + user.name.encode()
            )
            ok = code is not None and totp.verify(secret, code, time.time() if now is None else now)
        if not ok:
            user.failed_logins += 1
            if user.failed_logins >= MAX_FAILED_LOGINS:
                user.locked_until = utcnow() + LOCKOUT
            audit.append(
                session,
                node_id=archive.node_id,
                actor=audit.Actor(name=name),
                action="auth.failed",
                object_type="user",
                object_id=name,
                details={"failed_logins": user.failed_logins},
            )
        else:
            user.failed_logins = 0
            return audit.Actor(name=user.name, roles=tuple(user.roles), teams=tuple(user.teams))
    raise denied
