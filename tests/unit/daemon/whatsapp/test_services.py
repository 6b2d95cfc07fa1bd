"""The recorder runs the WhatsApp service exactly when `whatsapp.listen` is set."""

from __future__ import annotations

from pathlib import Path

from tapeline.config import parse_config
from tapeline.daemon.services import build_services
from tests.conftest import config_dict


def test_whatsapp_service_only_with_a_listen_address(tmp_path: Path) -> None:
    data = config_dict(tmp_path)
    assert [s.name for s in build_services(parse_config(data, source="t"))] == [
        "diskwatch",
        "alarmwatch",
        "siprec",
        "jobs",
    ]
    data["whatsapp"] = {"listen": "127.0.0.1:8088", "app_secret_file": str(tmp_path / "s")}
    config = parse_config(data, source="t")
    assert [s.name for s in build_services(config)] == [
        "diskwatch",
        "alarmwatch",
        "siprec",
        "whatsapp",
        "jobs",
    ]
    assert config.whatsapp.max_body_bytes == 3 * 1024 * 1024
    assert config.whatsapp.address == ("127.0.0.1", 8088)
