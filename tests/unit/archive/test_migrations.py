"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from tapeline.archive.core import Archive
from tapeline.archive.models import Base
from tests.conftest import PostgresServer


def test_migrated_schema_matches_the_models(archive: Archive) -> None:
    with archive.index.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_several_processes_starting_together_migrate_once(postgres: PostgresServer) -> None:
    """Nodes started together on one fresh PostgreSQL index: one migrates, the rest wait."""
    url = postgres.new_database()
    script = "import sys; from tapeline.archive.db import Index; Index.open(sys.argv[1]).dispose()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else b"") for p in procs]
    for proc in procs:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert [code for code, _ in outcomes] == [0] * 4, [err[-800:] for _, err in outcomes]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert len(versions) == 1
    assert diff == []
