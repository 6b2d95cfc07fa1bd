"""Regenerate the initial Alembic revision from the models (only while no appliance is deployed).

Until the first release, the schema is one revision, `0001`, rebuilt from the models whenever
they change: `.venv/bin/python tools/regen_initial_migration.py`. After the first release, use
`alembic revision --autogenerate` for a new revision instead (never edit a released one).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from tapeline.archive.db import MIGRATIONS

REVISION = MIGRATIONS / "versions" / "0001_initial_index.py"


def main() -> None:
    """Rewrite revision 0001 from the current models."""
    REVISION.unlink(missing_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'empty.db'}")
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.revision(cfg, message="Initial index", autogenerate=True, rev_id="0001")
    text = REVISION.read_text()
    lines = [
        "Create Date: (regenerated from the models)" if line.startswith("Create Date:") else line
        for line in text.splitlines()
    ]
    REVISION.write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(REVISION)], check=True)


if __name__ == "__main__":
    main()
