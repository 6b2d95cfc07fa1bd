"""Server-side login sessions: the cookie carries a random token; the index keeps its hash.

A session is `full`, or `enrol-totp` while an account that must have a second factor sets one up
after its password was accepted; an enrolling session reaches only the enrolment page. Idle and
absolute timeouts are checked on every request; a new token is issued at login and when the
session's privilege changes (enrolment finished).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import PlaybackAudit, User, WebSession, utcnow

COOKIE = "__Host-tapeline"
IDLE = timedelta(minutes=15)
ABSOLUTE = timedelta(hours=8)
FULL = "full"
ENROL_TOTP = "enrol-totp"


def token_hash(token: str) -> str:
    """What the index keeps of a cookie token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The account behind a request, its session's CSRF token and how it authenticated."""

    actor: Actor
    csrf_token: str
    # The login session's key (hash of its token), or `token:<id>` for an API token: playback
    # is audited once per key and record.
    session_key: str
    stage: str = FULL
    pending_totp: bytes | None = None
    via_token: bool = False


def start(
    archive: Archive, actor: Actor, *, stage: str = FULL, pending: bytes | None = None
) -> str:
    """Create a session for an authenticated account; returns the cookie token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with archive.index.write() as session:
        session.add(
            WebSession(
                token_hash=token_hash(token),
                user_name=actor.name,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
                stage=stage,
                pending_totp=pending,
            )
        )
    return token


def resolve(archive: Archive, token: str | None) -> LoggedIn | None:
    """The live session for a cookie token (touching its idle timer), or None."""
    if not token:
        return None
    now = utcnow()
    with archive.index.write() as session:
        row = session.get(WebSession, token_hash(token))
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
        return LoggedIn(
            actor=actor,
            csrf_token=row.csrf_token,
            session_key=row.token_hash,
            stage=row.stage,
            pending_totp=row.pending_totp,
        )


def set_pending_totp(archive: Archive, token: str, wrapped: bytes | None) -> None:
    """Keep (or drop) the secret a session is enrolling."""
    with archive.index.write() as session:
        row = session.get(WebSession, token_hash(token))
        if row is not None:
            row.pending_totp = wrapped


def end(archive: Archive, token: str | None) -> None:
    """Log out (the session's playback dedupe rows go with it)."""
    if token:
        key = token_hash(token)
        with archive.index.write() as session:
            session.execute(delete(PlaybackAudit).where(PlaybackAudit.session_key == key))
            session.execute(delete(WebSession).where(WebSession.token_hash == key))
