"""The CLI as an operator uses it, in subprocesses, on a throw-away appliance."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile

from tapeline.archive.core import Archive
from tapeline.archive.nodes import active_alarms
from tapeline.archive.objects import LocalObjectStore
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.config import load_config
from tapeline.events.outbox import pending
from tests.conftest import REPO, tapeline, write_config_file

SCHEMA = json.loads((REPO / "docs" / "interaction.schema.json").read_text())
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def appliance(tmp_path: Path) -> Path:
    config = write_config_file(tmp_path)
    pw = tmp_path / "pw-admin"
    pw.write_text("correct horse battery staple\n")
    tapeline("user", "add", "ada", "--role", "admin", "-c", str(config), "--password-file", str(pw))
    pw2 = tmp_path / "pw-rita"
    pw2.write_text("reviewer password 123\n")
    tapeline(
        "user",
        "add",
        "rita",
        "--role",
        "reviewer",
        "-c",
        str(config),
        "--password-file",
        str(pw2),
        "--as",
        "ada",
        "--as-password-file",
        str(pw),
    )
    archive = Archive.open(load_config(config, environ={}))
    try:
        file_synthetic_call(
            archive, line="+442071230001", counterparty="+447700900123", started_at=T0, seconds=2.5
        )
        file_synthetic_message(
            archive,
            line="+442071230002",
            counterparty="+447700900123",
            started_at=T0.replace(hour=11),
            text="hello",
            wamid="wamid.A",
        )
        file_synthetic_call(
            archive, line="+442071230002", counterparty="+12025550143", started_at=T0.replace(day=5)
        )
    finally:
        archive.close()
    return config


def test_query_prints_one_schema_valid_json_object_per_line(appliance: Path) -> None:
    out = tapeline("query", "-c", str(appliance), "--party", "07700 900123", "--json").stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2
    for record in records:
        jsonschema.validate(record, SCHEMA)
    assert {r["channel"] for r in records} == {"voice", "whatsapp"}
    since = tapeline("query", "-c", str(appliance), "--since", "2026-03-03", "--json").stdout
    assert len(since.splitlines()) == 1
    until = tapeline(
        "query", "-c", str(appliance), "--until", "2026-03-02T10:00:00Z", "--json"
    ).stdout
    assert len(until.splitlines()) == 1


def test_bad_time_filter_is_a_usage_error(appliance: Path) -> None:
    result = tapeline("query", "-c", str(appliance), "--since", "yesterday", check=False)
    assert result.returncode == 2
    assert "not an RFC 3339 time or date" in result.stderr


def test_show_audio_needs_an_account_and_writes_the_decrypted_recording(
    appliance: Path, tmp_path: Path
) -> None:
    rid = json.loads(
        tapeline(
            "query",
            "-c",
            str(appliance),
            "--channel",
            "voice",
            "--json",
            "--limit",
            "1",
            "--until",
            "2026-03-03",
        ).stdout
    )["id"]
    out = tmp_path / "call.flac"
    denied = tapeline("show", "-c", str(appliance), rid, "--audio", str(out), check=False)
    assert denied.returncode == 77
    admin = tapeline(
        "show",
        "-c",
        str(appliance),
        rid,
        "--audio",
        str(out),
        "--as",
        "ada",
        "--password-file",
        str(tmp_path / "pw-admin"),
        check=False,
    )
    assert admin.returncode == 77  # an admin manages the box but cannot play recordings
    tapeline(
        "show",
        "-c",
        str(appliance),
        rid,
        "--audio",
        str(out),
        "--as",
        "rita",
        "--password-file",
        str(tmp_path / "pw-rita"),
    )
    frames, rate = soundfile.read(out, dtype="int16")
    assert rate == 8000
    assert frames.shape == (20000, 2)
    # independent oracle: sox decodes the same file to the same number of samples
    stat = subprocess.run(["soxi", "-s", str(out)], capture_output=True, text=True, check=True)
    assert int(stat.stdout) == 20000
    assert np.abs(frames[:, 0]).max() > 1000


def test_wrong_password_is_refused_and_audited(appliance: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("not the password\n")
    result = tapeline(
        "query", "-c", str(appliance), "--as", "rita", "--password-file", str(bad), check=False
    )
    assert result.returncode == 77
    assert "authentication failed" in result.stderr


def test_verify_is_clean_then_names_a_flipped_byte(appliance: Path) -> None:
    ok = tapeline("verify", "-c", str(appliance))
    assert "archive ok" in ok.stdout
    config = load_config(appliance, environ={})
    store = LocalObjectStore(config.storage.path)
    victim = next(iter(store.ids()))
    path = store.path_of(victim)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    bad = tapeline("verify", "-c", str(appliance), check=False)
    assert bad.returncode == 1
    assert f"FIRST PROBLEM: object {victim}" in bad.stdout
    # the failure is an alarm in the node's outbox, for the recorder to publish
    archive = Archive.open(config, migrate=False)
    try:
        [alarm] = active_alarms(archive)
        with archive.index.read() as session:
            [event] = [e for e in pending(session, archive.node_id) if e.type == "alarm.raised"]
    finally:
        archive.close()
    assert alarm.code == event.data["code"] == "integrity.verify"
    assert victim in event.data["message"]


def test_verify_names_a_deleted_audit_row(appliance: Path) -> None:
    import sqlite3  # noqa: PLC0415

    config = load_config(appliance, environ={})
    db = config.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = 3")
    bad = tapeline("verify", "-c", str(appliance), check=False)
    assert bad.returncode == 1
    assert "FIRST PROBLEM: audit entry 3 is missing" in bad.stdout


def test_verify_names_an_edited_audit_row(appliance: Path) -> None:
    import sqlite3  # noqa: PLC0415

    config = load_config(appliance, environ={})
    db = config.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 2")
    bad = tapeline("verify", "-c", str(appliance), check=False)
    assert "FIRST PROBLEM: audit entry 2 was altered" in bad.stdout


def test_info_reports_audit_trail_mode_and_public_key(appliance: Path) -> None:
    info = json.loads(tapeline("info", "-c", str(appliance), "--json").stdout)
    assert info["storage_mode"] == "audit-trail"
    assert info["signing_public_key"].startswith("ed25519:")
    assert info["node_id"] == "test-node"


def test_key_export_round_trips_with_the_passphrase(appliance: Path, tmp_path: Path) -> None:
    from tapeline.archive.keyexport import open_export  # noqa: PLC0415
    from tapeline.errors import AccessDenied  # noqa: PLC0415

    phrase = tmp_path / "phrase"
    phrase.write_text("escrow passphrase for the vault\n")
    out = tmp_path / "keys.json"
    tapeline(
        "key", "export", "-c", str(appliance), "--out", str(out), "--passphrase-file", str(phrase)
    )
    assert out.stat().st_mode & 0o777 == 0o600
    config = load_config(appliance, environ={})
    keys = open_export(out.read_bytes(), "escrow passphrase for the vault")
    assert keys["archive_key"] == config.storage.key_file.read_text()
    assert "BEGIN PRIVATE KEY" in keys["signing_key"]
    assert config.storage.key_file.read_text().split()[1] not in out.read_text()
    with pytest.raises(AccessDenied):
        open_export(out.read_bytes(), "wrong passphrase entirely")


def test_user_list_and_admin_only_account_creation(appliance: Path, tmp_path: Path) -> None:
    users = [
        json.loads(x)
        for x in tapeline("user", "list", "-c", str(appliance)).stdout.split("\n")
        if x
    ]
    assert [u["name"] for u in users] == ["ada", "rita"]
    pw = tmp_path / "pw-new"
    pw.write_text("another long password\n")
    refused = tapeline(
        "user",
        "add",
        "eve",
        "--role",
        "admin",
        "-c",
        str(appliance),
        "--password-file",
        str(pw),
        "--as",
        "rita",
        "--as-password-file",
        str(tmp_path / "pw-rita"),
        check=False,
    )
    assert refused.returncode == 77
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    too_short = tapeline(
        "user",
        "add",
        "eve",
        "--role",
        "auditor",
        "-c",
        str(appliance),
        "--password-file",
        str(weak),
        "--as",
        "ada",
        "--as-password-file",
        str(tmp_path / "pw-admin"),
        check=False,
    )
    assert too_short.returncode == 1
    assert "at least 12 characters" in too_short.stderr


def test_a_reader_that_leaves_gets_exit_141_without_a_traceback(appliance: Path) -> None:
    """`tapeline query --json | head`: the pipe closes under the CLI; it ends quietly."""
    import sys  # noqa: PLC0415

    proc = subprocess.Popen(
        [sys.executable, "-m", "tapeline.cli", "query", "-c", str(appliance), "--all", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # before the CLI has started: its first write meets a closed pipe
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr
