"""A small TOML writer for test configs (tables, arrays of tables, strings, numbers, lists)."""

from __future__ import annotations

import json
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps(data: dict[str, Any]) -> str:
    """TOML text for a config dictionary."""
    lines: list[str] = []
    for section, body in data.items():
        if isinstance(body, dict):
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {_value(v)}" for k, v in body.items())
            lines.append("")
        elif isinstance(body, list) and body and isinstance(body[0], dict):
            for item in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {_value(v)}" for k, v in item.items())
                lines.append("")
    return "\n".join(lines)
