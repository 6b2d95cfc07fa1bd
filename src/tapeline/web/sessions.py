"""Server-side login sessions: the cookie carries a random token; the index keeps its hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import User, WebSession, utcnow

COOKIE = "__Host-tapeline"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The account behind a request, and its session's CSRF token."""

    actor: Actor
    csrf_token: str


def start(archive: Archive, actor: Actor) -> str:
    """Create a session for an authenticated account; returns the cookie token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with archive.index.write() as session:
        session.add(
            WebSession(
                token_hash=_hash(token),
                user_name=actor.name,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
            )
        )
    return token


def resolve(archive: Archive, token: str | None) -> LoggedIn | None:
    """The live session for a cookie token (touching its idle timer), or None."""
    if not token:
        return None
    now = utcnow()
    with archive.index.write() as session:
        row = session.get(WebSession, _hash(token))
        if row is None:
            return None
        if now - row.last_seen_at > IDLE or now - row.created_at > ABSOLUTE:
            session.delete(row)
            return None
        user = session.execute(select(User).where(User.name == row.user_name)).scalar_one_or_none()
        if user is None or user.disabled:
            session.delete(row)
            return None
        row.last_seen_at = now
        actor = Actor(name=user.name, roles=tuple(user.roles), teams=tuple(user.teams))
        return LoggedIn(actor=actor, csrf_token=row.csrf_token)


def end(archive: Archive, token: str | None) -> None:
    """Log out."""
    if token:
        with archive.index.write() as session:
            session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))
