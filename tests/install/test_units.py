"""The shipped unit files: systemd-analyze verify and security exposure scores."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.install.conftest import SYSTEMD_DIR, InstalledRoot

pytestmark = [
    pytest.mark.slow,
]

MAX_EXPOSURE = {"tapeline-recorder.service": 2.0, "tapeline-web.service": 1.5}
_OVERALL = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+) (\w+)")


def exposure(unit: Path) -> float:
    """The overall exposure score `systemd-analyze security --offline=true` gives a unit file."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = _OVERALL.search(result.stdout)
    assert match, f"no exposure line:\n{result.stdout}\n{result.stderr}"
    assert match.group(1) == unit.name
    return float(match.group(2))


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_exposure_score(unit: str) -> None:
    score = exposure(SYSTEMD_DIR / unit)
    assert score <= MAX_EXPOSURE[unit], f"{unit}: exposure {score} > {MAX_EXPOSURE[unit]}"


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_unit_verifies(unit: str, installed_root: InstalledRoot, tmp_path: Path) -> None:
    # verify wants ExecStart= to exist: point it at the scratch root's venv.
    text = (SYSTEMD_DIR / unit).read_text(encoding="utf-8")
    (tmp_path / unit).write_text(
        text.replace("/opt/tapeline/venv", str(installed_root.venv)), encoding="utf-8"
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def _directives(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in (SYSTEMD_DIR / unit).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_recorder_has_only_cap_net_raw() -> None:
    d = _directives("tapeline-recorder.service")
    assert d["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert d["AmbientCapabilities"] == ["CAP_NET_RAW"]
    assert d["User"] == ["tapeline"]
    assert d["Type"] == ["notify"]
    assert d["WatchdogSec"]
    assert d["RestartPreventExitStatus"] == ["78"]


def test_web_has_no_capabilities_and_reads_objects_only() -> None:
    d = _directives("tapeline-web.service")
    assert d["CapabilityBoundingSet"] == [""]
    assert d["AmbientCapabilities"] == [""]
    assert d["User"] == ["tapeline"]
    assert d["Type"] == ["notify"]
    assert d["WatchdogSec"]
    assert d["ReadOnlyPaths"] == ["/var/lib/tapeline/objects"]
    assert "AF_PACKET" not in d["RestrictAddressFamilies"][0]
