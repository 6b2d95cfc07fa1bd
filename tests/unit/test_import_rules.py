"""DESIGN §3: dependencies point one way. A broken rule fails here, naming the import."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tapeline"

# package -> internal packages it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "proto": ("archive", "events", "media", "daemon", "web", "cli", "config", "errors", "demo"),
    "media": ("archive", "events", "daemon", "web", "cli", "demo"),
    "archive": ("daemon", "web", "cli", "demo"),
    "events": ("daemon", "web", "cli", "demo"),
    "web": ("daemon", "proto", "cli", "demo"),
    "daemon": ("web", "cli", "demo"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_dependency_rules_hold() -> None:
    broken = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        package = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for name in _imports(path):
            if name == "tapeline.cli" or name.startswith("tapeline.cli."):
                broken.append(f"{rel}: imports the CLI")
            parts = name.split(".")
            if parts[0] != "tapeline" or len(parts) < 2:
                continue
            if parts[1] in FORBIDDEN.get(package, ()):
                broken.append(f"{rel}: {package} must not import {name}")
    assert broken == []


def test_proto_imports_only_the_standard_library() -> None:
    import sys  # noqa: PLC0415

    stdlib = sys.stdlib_module_names
    offenders = []
    for path in (SRC / "proto").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top not in stdlib and top != "tapeline":
                offenders.append(f"{path.relative_to(SRC)}: {name}")
    assert offenders == []
