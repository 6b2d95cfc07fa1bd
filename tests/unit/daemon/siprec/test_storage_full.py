"""The recorder's full-disk refusal raises `storage.full` once and clears it when space returns."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from tapeline.archive.core import Archive
from tapeline.archive.nodes import active_alarms
from tapeline.config import parse_config
from tapeline.daemon.siprec.service import SiprecService
from tests.conftest import config_dict


class Usage(NamedTuple):
    """The shape of `shutil.disk_usage`'s answer."""

    total: int
    used: int
    free: int


def test_full_then_free_raises_once_and_clears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = config_dict(tmp_path)
    data["storage"]["min_free_bytes"] = 1 << 30
    config = parse_config(data, source="test")
    archive = Archive.open(config)
    try:
        service = SiprecService(config)
        service._archive = archive  # noqa: SLF001  # what start() sets, without sockets
        free = {"bytes": 1 << 20}
        monkeypatch.setattr(
            "tapeline.daemon.siprec.service.shutil.disk_usage",
            lambda _path: Usage(1 << 40, (1 << 40) - free["bytes"], free["bytes"]),
        )
        assert service._refusal() == "Storage full"  # noqa: SLF001
        assert service._refusal() == "Storage full"  # noqa: SLF001  # no second alarm row
        alarms = [a for a in active_alarms(archive) if a.code == "storage.full"]
        assert len(alarms) == 1
        free["bytes"] = 1 << 35
        assert service._refusal() is None  # noqa: SLF001
        assert not [a for a in active_alarms(archive) if a.code == "storage.full"]
    finally:
        archive.close()
    assert shutil.disk_usage is not None  # the real function is restored by monkeypatch
