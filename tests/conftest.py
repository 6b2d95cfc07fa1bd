"""Shared fixtures: a throw-away appliance config, archives on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tapeline.archive.core import Archive
from tapeline.archive.crypto import generate_archive_key, generate_signing_key
from tapeline.config import Config, parse_config

# CI replays the same examples every run (a red CI must mean a changed program, not a new random
# draw); developers' runs keep exploring. Failures found either way are pinned with @example.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_keys(base: Path) -> tuple[Path, Path]:
    """New archive and signing keys under `base/keys`."""
    archive_key = base / "keys" / "archive.key"
    signing_key = base / "keys" / "signing.key"
    generate_archive_key(archive_key)
    generate_signing_key(signing_key)
    return archive_key, signing_key


def config_dict(base: Path, database_url: str | None = None) -> dict[str, Any]:
    """A complete config for an appliance living under `base`."""
    archive_key, signing_key = write_keys(base)
    return {
        "node": {
            "id": "test-node",
            "status_listen": f"127.0.0.1:{free_port()}",
            "signing_key_file": str(signing_key),
            "default_region": "GB",
        },
        "storage": {
            "path": str(base / "objects"),
            "spool": str(base / "spool"),
            "key_file": str(archive_key),
            "min_free_bytes": 0,
        },
        "database": {"url": database_url or f"sqlite:///{base / 'index' / 'tapeline.db'}"},
        "web": {
            "listen": f"127.0.0.1:{free_port()}",
            "tls_cert_file": str(base / "tls" / "web.crt"),
            "tls_key_file": str(base / "tls" / "web.key"),
        },
        "siprec": {"listen": [f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]},
        "lines": [
            {"number": "+442071230001", "owner": "Alice Trader", "team": "rates"},
            {"number": "+442071230002", "owner": "Bob Sales", "team": "equities"},
        ],
    }


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config(config_dict(tmp_path), source="test")


class PostgresServer:
    """A real PostgreSQL cluster in a temp folder, run as the `postgres` user on a free port."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tapeline-pg-"))
        self.port = free_port()
        bindir = self._bindir()
        shutil.chown(self.dir, "postgres")
        run = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                *run,
                str(bindir / "initdb"),
                "-D",
                str(self.dir / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
        )
        self._ctl = [*run, str(bindir / "pg_ctl"), "-D", str(self.dir / "data")]
        subprocess.run(
            [
                *self._ctl,
                "-w",
                "-l",
                str(self.dir / "log"),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    @staticmethod
    def _bindir() -> Path:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not versions:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        return versions[-1]

    def new_database(self) -> str:
        import psycopg  # noqa: PLC0415  # only the PostgreSQL tests need it

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run([*self._ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    """An opened archive on each index backend."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
    cfg = parse_config(config_dict(tmp_path, url), source="test")
    opened = Archive.open(cfg)
    try:
        yield opened
    finally:
        opened.close()


def write_config_file(base: Path, database_url: str | None = None) -> Path:
    """A config file for an appliance under `base` (keys and TLS certificate included)."""
    from tapeline.tlscert import generate_self_signed  # noqa: PLC0415
    from tests.tomlwriter import dumps  # noqa: PLC0415

    data = config_dict(base, database_url)
    generate_self_signed(Path(data["web"]["tls_cert_file"]), Path(data["web"]["tls_key_file"]))
    path = base / "tapeline.toml"
    path.write_text(dumps(data))
    return path


def tapeline(
    *args: str, check: bool = True, input_: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a subprocess."""
    import sys  # noqa: PLC0415

    result = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        input=input_,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"tapeline {' '.join(args)} exited {result.returncode}: {result.stderr}"
        )
    return result
