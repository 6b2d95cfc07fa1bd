"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tapeline.archive.core import Archive
from tapeline.archive.models import Base


def test_migrated_schema_matches_the_models(archive: Archive) -> None:
    with archive.index.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
