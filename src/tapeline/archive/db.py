"""Index engine, sessions and migrations.

SQLite runs in WAL mode with `synchronous=FULL` (a filed record must survive a power cut) and every
write transaction starts with `BEGIN IMMEDIATE`, so two processes (recorder and web) serialise on
the write lock up front instead of failing half-way on a lock upgrade. PostgreSQL needs neither.
Schema changes go through Alembic only; `migrate()` brings any database to the head revision.
Several nodes (recorders, web processes) may start together against one PostgreSQL index: the
upgrade runs inside one transaction that first takes a transaction-scoped advisory lock, so one
process migrates while the others wait and then find the schema at head (PostgreSQL's DDL is
transactional, so a failed upgrade leaves nothing half-done). SQLite serialises on BEGIN IMMEDIATE.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from tapeline.errors import StorageError

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_S = 30
# Any fixed 64-bit key: only Tapeline's own migrations take it ("tapeline" in ASCII).
MIGRATION_LOCK_KEY = int.from_bytes(b"tapeline", "big") & 0x7FFF_FFFF_FFFF_FFFF
READ_ONLY_OPTION = "tapeline_read_only"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # pysqlite: we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Reads take no write lock (WAL readers never block the writer, nor it them).
        reading = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Build the engine for `database.url`, creating the SQLite folder when needed.

    Raises:
        StorageError: the SQLite folder cannot be created.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create index folder: {exc.strerror}") from exc
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        )
        _sqlite_setup(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def serialise(session: Session, name: str) -> None:
    """Make this transaction the only one, across every node, holding the lock `name`.

    PostgreSQL: a transaction-scoped advisory lock keyed by a hash of `name`, released at commit
    or rollback. SQLite needs none: every write transaction already holds the database's one
    write lock from BEGIN IMMEDIATE.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def migrate(engine: Engine) -> None:
    """Bring the index schema to the newest revision.

    Raises:
        StorageError: the database cannot be reached or migrated.
    """
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise StorageError(f"index migration failed: {exc}") from exc


class Index:
    """The index database: an engine and the sessions made from it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True) -> Index:
        """Connect (and migrate) the index named by `database.url`."""
        index = cls(make_engine(url))
        if run_migrations:
            migrate(index.engine)
        return index

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one transaction, committed on success and rolled back on error.

        Raises:
            StorageError: the database refused the transaction.
        """
        try:
            with self._sessions() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(f"index write failed: {exc.__class__.__name__}: {exc}") from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries (one transaction, so reads see one snapshot; no write lock)."""
        try:
            with self._read_sessions() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(f"index read failed: {exc.__class__.__name__}: {exc}") from exc

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
