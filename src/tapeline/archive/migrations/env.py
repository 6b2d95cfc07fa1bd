"""Alembic environment: runs on the connection `tapeline.archive.db.migrate` hands in."""

from __future__ import annotations

from alembic import context

from tapeline.archive.models import Base


def run_migrations_online() -> None:
    """Apply migrations on the caller's connection (offline mode is not used)."""
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
