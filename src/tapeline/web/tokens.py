"""Per-user API tokens for `/api/v1`: random, shown once, kept only as a SHA-256, revocable.

Tokens are accepted only on `/api/v1` (never on the HTML pages), and creating or revoking one is
audited. An account's tokens are revoked when it is disabled or its roles change
(`tapeline.archive.users`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from tapeline.archive import audit
from tapeline.archive.core import Archive
from tapeline.archive.models import ApiToken, User, utcnow
from tapeline.errors import NotFound

PREFIX = "tl_"
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LABEL = 100


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """A token as listed to its owner (never the token itself)."""

    id: int
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > utcnow())


def create(archive: Archive, actor: audit.Actor, *, label: str) -> str:
    """A new token for the actor's own account; the returned secret is never shown again."""
    token = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    clean = label.strip()[:MAX_LABEL] or "API token"
    with archive.index.write() as session:
        row = ApiToken(
            token_hash=_hash(token),
            user_name=actor.name,
            label=clean,
            created_at=now,
            expires_at=now + DEFAULT_LIFETIME,
            revoked_at=None,
            last_used_at=None,
        )
        session.add(row)
        session.flush()
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="token.created",
            object_type="api_token",
            object_id=str(row.id),
            details={"label": clean, "expires_at": row.expires_at},
        )
    return token


def list_tokens(archive: Archive, actor: audit.Actor) -> list[TokenInfo]:
    """The actor's own tokens, newest first."""
    with archive.index.read() as session:
        rows = session.execute(
            select(ApiToken).where(ApiToken.user_name == actor.name).order_by(ApiToken.id.desc())
        ).scalars()
        return [
            TokenInfo(
                id=r.id,
                label=r.label,
                created_at=r.created_at,
                expires_at=r.expires_at,
                revoked_at=r.revoked_at,
                last_used_at=r.last_used_at,
            )
            for r in rows
        ]


def revoke(archive: Archive, actor: audit.Actor, token_id: int) -> None:
    """Revoke one of the actor's own tokens.

    Raises:
        NotFound: no such token of this account.
    """
    with archive.index.write() as session:
        row = session.get(ApiToken, token_id)
        if row is None or row.user_name != actor.name:
            raise NotFound(f"no API token {token_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.append(
                session,
                node_id=archive.node_id,
                actor=actor,
                action="token.revoked",
                object_type="api_token",
                object_id=str(token_id),
            )


def resolve(archive: Archive, token: str) -> tuple[audit.Actor, int] | None:
    """The account and token id behind a bearer token, or None (unknown, revoked, expired)."""
    if not token.startswith(PREFIX):
        return None
    now = utcnow()
    with archive.index.write() as session:
        row = session.execute(
            select(ApiToken).where(ApiToken.token_hash == _hash(token))
        ).scalar_one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        user = session.execute(select(User).where(User.name == row.user_name)).scalar_one_or_none()
        if user is None or user.disabled:
            return None
        row.last_used_at = now
        actor = audit.Actor(name=user.name, roles=tuple(user.roles), teams=tuple(user.teams))
        return actor, row.id
