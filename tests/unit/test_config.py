from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tapeline.config import EX_CONFIG, load_config
from tapeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tapeline.toml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid_and_documents_every_key() -> None:
    config = load_config(REPO / "config" / "tapeline.toml", environ={})
    text = (REPO / "config" / "tapeline.toml").read_text()
    for section, model in config.model_dump().items():
        if isinstance(model, dict):
            for key in model:
                assert f"{key} =" in text, f"{section}.{key} is not documented"
    for field in (
        "number",
        "owner",
        "team",
        "region",
        "extensions",
        "whatsapp_phone_number_id",
        "regulated",
        "since",
        "name",
        "match",
        "mode",
    ):
        assert f"# {field} =" in text


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ('[node]\nstatus_listen = "nope"\n', "node.status_listen", "expected HOST:PORT"),
        ('[storage]\nformt = "flac"\n', "storage.formt", "unknown key"),
        ('[storage]\nformat = "mp3"\n', "storage.format", "Input should be 'flac' or 'opus'"),
        ('[siprec]\nrtp_ports = "100-200"\n', "siprec.rtp_ports", "need 1024 <= LOW < HIGH"),
        ('[[lines]]\nnumber = "0207"\nowner = "x"\n', "lines.0.number", "String should match"),
        ('[[trunks]]\nname = "t"\nmatch = ["not-a-net"]\n', "trunks.0.match", "neither a network"),
    ],
)
def test_bad_config_names_file_key_and_reason(
    tmp_path: Path, body: str, key: str, reason: str
) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.file == str(path)
    assert info.value.key == key
    assert reason in info.value.reason


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    path = _write(tmp_path, '[siprec]\nlisten = ["udp:0.0.0.0:5060"]\n')
    env = {
        "TAPELINE_SIPREC__LISTEN": '["udp:127.0.0.1:5070"]',
        "TAPELINE_NODE__ID": "rec-7",
        "TAPELINE_MQTT__INCLUDE_PARTIES": "true",
    }
    config = load_config(path, environ=env)
    assert config.siprec.listen == ["udp:127.0.0.1:5070"]
    assert config.node.id == "rec-7"
    assert config.mqtt.include_parties is True


def test_not_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[node\n"), environ={})


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapeline.cli", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_config_exits_0_on_good_and_78_on_bad(tmp_path: Path) -> None:
    good = _check(REPO / "config" / "tapeline.toml")
    assert good.returncode == 0, good.stderr
    bad = _check(_write(tmp_path, '[retention]\ndefault_class = "forever"\n'))
    assert bad.returncode == EX_CONFIG
    assert f"{tmp_path / 'tapeline.toml'}: retention.default_class: unknown class" in bad.stderr


def test_check_config_compiles_the_tap_filter_with_libpcap(tmp_path: Path) -> None:
    bad = _check(_write(tmp_path, '[tap]\ninterfaces = ["eth1"]\nfilter = "udp prot 5060"\n'))
    assert bad.returncode == EX_CONFIG
    assert "tapeline.toml: tap: tap.filter 'udp prot 5060'" in bad.stderr
    assert "syntax error" in bad.stderr
    good = _check(_write(tmp_path, '[tap]\ninterfaces = ["eth1"]\nfilter = "udp or tcp"\n'))
    assert good.returncode == 0, good.stderr


def test_demo_template_is_a_valid_config(tmp_path: Path) -> None:
    text = (REPO / "config" / "demo.toml").read_text()
    text = text.replace("@DATA_DIR@", str(tmp_path)).replace("@WEB_PORT@", "8443")
    text = text.replace("@STATUS_PORT@", "9780").replace("@SIP_PORT@", "5060")
    config = load_config(_write(tmp_path, text), environ={})
    assert config.node.id == "demo"
    assert config.storage.path == tmp_path / "objects"
