"""Holds, retention and purge through the CLI, in subprocesses, on a throw-away appliance."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapeline.archive.core import Archive
from tapeline.archive.nodes import raise_alarm
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.archive.trustedclock import CLOCK_ALARM
from tapeline.config import load_config
from tests.conftest import tapeline, write_config_file

T0 = datetime(2018, 3, 2, 9, 30, tzinfo=UTC)
PARTY = "+447700900123"
USERS = {
    "ada": "admin",
    "lena": "legal",
    "leo": "legal",
    "rmo": "records-manager",
    "rex": "records-manager",
    "eve": "export-officer",
    "rita": "reviewer",
}


def as_user(base: Path, name: str) -> list[str]:
    """The flags that make a command act as one of the test accounts."""
    return ["--as", name, "--password-file", str(base / f"pw-{name}")]


@pytest.fixture
def appliance(tmp_path: Path) -> Path:
    config = write_config_file(tmp_path)
    for name, role in USERS.items():
        (tmp_path / f"pw-{name}").write_text(f"{name} long password 1234\n")
        admin = (
            [] if name == "ada" else ["--as", "ada", "--as-password-file", str(tmp_path / "pw-ada")]
        )
        tapeline(
            "user", "add", name, "--role", role, "-c", str(config),
            "--password-file", str(tmp_path / f"pw-{name}"), *admin,
        )  # fmt: skip
    return config


def _file_call(config: Path, counterparty: str = PARTY) -> str:
    archive = Archive.open(load_config(config, environ={}))
    try:
        return file_synthetic_call(
            archive, line="+442071230001", counterparty=counterparty, started_at=T0
        )
    finally:
        archive.close()


def test_hold_add_list_release_approve(appliance: Path) -> None:
    base, c = appliance.parent, str(appliance)
    before = _file_call(appliance)
    out = tapeline(
        "hold", "add", "-c", c, *as_user(base, "lena"), "--matter", "FCA-17", "--party", PARTY
    ).stdout
    assert "placed; 1 records" in out
    after = _file_call(appliance)
    refused = tapeline(
        "hold", "add", "-c", c, *as_user(base, "rmo"), "--matter", "X", "--party", PARTY,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 77
    shown = json.loads(tapeline("show", "-c", c, after).stdout)
    assert shown["holds"][0]["matter"] == "FCA-17"
    assert json.loads(tapeline("show", "-c", c, before).stdout)["holds"]
    tapeline(
        "hold", "release", "-c", c, *as_user(base, "lena"), "--matter", "FCA-17",
        "--reason", "closed",
    )  # fmt: skip
    same = tapeline(
        "hold", "approve", "-c", c, *as_user(base, "lena"), "--matter", "FCA-17", check=False
    )
    assert same.returncode == 77
    assert "cannot approve" in same.stderr
    tapeline("hold", "approve", "-c", c, *as_user(base, "leo"), "--matter", "FCA-17")
    listed = [
        json.loads(x) for x in tapeline("hold", "list", "-c", c, "--json").stdout.splitlines()
    ]
    assert listed[0]["state"] == "released"
    assert listed[0]["records"] == 2
    assert listed[0]["released_by"] == "leo"


def test_retention_propose_approve_list_extend(appliance: Path) -> None:
    base, c = appliance.parent, str(appliance)
    out = tapeline(
        "retention", "propose", "-c", c, *as_user(base, "rmo"), "--class", "desk-8y",
        "--minimum-days", "2922", "--rule", "house rule",
    ).stdout  # fmt: skip
    assert "proposal 1 open" in out
    same = tapeline("retention", "approve", "-c", c, *as_user(base, "rmo"), "1", check=False)
    assert same.returncode == 77
    tapeline("retention", "approve", "-c", c, *as_user(base, "rex"), "1")
    tapeline(
        "retention", "propose", "-c", c, *as_user(base, "rex"), "--policy", "rates",
        "--class", "desk-8y", "--team", "rates",
    )  # fmt: skip
    tapeline("retention", "approve", "-c", c, *as_user(base, "rmo"), "2")
    listed = json.loads(tapeline("retention", "list", "-c", c, "--json").stdout)
    assert {"name": "rates", "class": "desk-8y", "match": {"team": "rates"}} in listed["policies"]
    rid = _file_call(appliance)
    record = json.loads(tapeline("show", "-c", c, rid).stdout)
    assert record["retention_class"] == "desk-8y"
    assert record["retain_until"].startswith("2026-03-02")
    shorter = tapeline(
        "retention", "extend", "-c", c, *as_user(base, "rmo"), "--id", rid,
        "--until", "2020-01-01", "--reason", "tidy", check=False,
    )  # fmt: skip
    assert shorter.returncode == 77
    tapeline(
        "retention", "extend", "-c", c, *as_user(base, "rmo"), "--id", rid, "--years", "10",
        "--reason", "regulator asked",
    )  # fmt: skip
    assert json.loads(tapeline("show", "-c", c, rid).stdout)["retain_until"].startswith("2028-03")


def test_purge_dry_run_propose_and_two_person_approval(appliance: Path) -> None:
    base, c = appliance.parent, str(appliance)
    held = _file_call(appliance)
    free = _file_call(appliance, "+447700900999")
    tapeline("hold", "add", "-c", c, *as_user(base, "lena"), "--matter", "M", "--party", PARTY)
    dry = tapeline("purge", "-c", c, "--dry-run", "--json").stdout
    assert [json.loads(x)["id"] for x in dry.splitlines()] == [free]
    assert held not in dry
    refused = tapeline("purge", "-c", c, "--propose", *as_user(base, "lena"), check=False)
    assert refused.returncode == 77
    out = tapeline("purge", "-c", c, "--propose", *as_user(base, "rmo")).stdout
    batch = out.split()[2]
    same = tapeline("purge", "approve", batch, "-c", c, *as_user(base, "rmo"), check=False)
    assert same.returncode == 77
    ok = tapeline("purge", "approve", batch, "-c", c, *as_user(base, "rex")).stdout
    assert "the recorder executes it after" in ok
    [listed] = [json.loads(x) for x in tapeline("purge", "list", "-c", c).stdout.splitlines()]
    assert listed["state"] == "approved"
    assert [i["id"] for i in listed["items"]] == [free]
    # nothing was deleted by any of these commands
    assert json.loads(tapeline("show", "-c", c, free).stdout)["id"] == free


def test_export_and_verify_export(appliance: Path) -> None:
    base, c = appliance.parent, str(appliance)
    rid = _file_call(appliance)
    out = base / "bundle.zip"
    denied = tapeline("export", "-c", c, "--out", str(out), *as_user(base, "lena"), check=False)
    assert denied.returncode == 77
    assert not out.exists()
    tapeline("export", "-c", c, "--out", str(out), "--party", PARTY, *as_user(base, "eve"))
    key = json.loads(tapeline("info", "-c", c, "--json").stdout)["signing_public_key"]
    good = tapeline("verify-export", str(out), "--key", key).stdout
    assert "export ok" in good
    raw = bytearray(out.read_bytes())
    wav = f"records/{rid}/audio.wav".encode()
    at = raw.index(wav) + len(wav) + 2000  # inside the stored WAV data
    raw[at] ^= 0x01
    out.write_bytes(bytes(raw))
    bad = tapeline("verify-export", str(out), check=False)
    assert bad.returncode == 1
    assert f"FIRST PROBLEM: records/{rid}/audio.wav: changed" in bad.stdout


def test_cdr_import_and_reconcile(appliance: Path) -> None:
    base, c = appliance.parent, str(appliance)
    _file_call(appliance)  # 2018-03-02 09:30, 3 s
    csv = base / "cdr.csv"
    csv.write_text(
        "start,end,from,to,call_id,line\n"
        "2018-03-02T09:30:01Z,2018-03-02T09:30:04Z,+447700900123,+442071230001,,\n"
        "2018-03-02T11:00:00Z,2018-03-02T11:02:00Z,+447700900555,+442071230001,,\n"
    )
    assert "imported 2 CDRs" in tapeline("cdr", "import", "-c", c, str(csv)).stdout
    done = tapeline("reconcile", "-c", c, "--date", "2018-03-02", "--json", check=False)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert [m["from"] for m in report["missing"]] == ["+447700900555"]
    assert report["short"] == []
    assert report["lines"]["+442071230001"]["recorded"] == 1
    bad = base / "bad.csv"
    bad.write_text("start,end,from,to,call_id,line\nyesterday,,a,b,,\n")
    refused = tapeline("cdr", "import", "-c", c, str(bad), check=False)
    assert refused.returncode == 1
    assert "CDR row 2" in refused.stderr


def test_review_flag_blocks_purge_until_resolved_and_clock_confirm_lifts_a_suspension(
    appliance: Path,
) -> None:
    base, c = appliance.parent, str(appliance)
    rid = _file_call(appliance)  # filed in 2018 with the default class: expired by 2026

    def dry() -> list[str]:
        out = tapeline("purge", "-c", c, "--dry-run", "--json").stdout
        return [json.loads(line)["id"] for line in out.splitlines()]

    assert rid in dry()
    out = tapeline(
        "review", "flag", "-c", c, *as_user(base, "rita"), rid, "--reason", "complaint"
    ).stdout
    assert "flagged for review" in out
    assert rid not in dry()
    refused = tapeline(
        "review", "resolve", "-c", c, *as_user(base, "rmo"), rid, "--action", "closed",
        "--comment", "x", check=False,
    )  # fmt: skip
    assert refused.returncode == 77
    out = tapeline(
        "review", "resolve", "-c", c, *as_user(base, "rita"), rid, "--action",
        "no-further-action", "--comment", "order was unsolicited",
    ).stdout  # fmt: skip
    resolution = out.strip().rsplit(" ", 1)[-1]
    record = json.loads(tapeline("show", "-c", c, resolution).stdout)
    assert record["kind"] == "review_resolution"
    assert json.loads(tapeline("show", "-c", c, rid).stdout)["review_flag"] is None
    assert rid in dry()

    archive = Archive.open(load_config(appliance, environ={}))
    try:  # what the recorder's jobs service does when it sees the wall clock jump
        raise_alarm(archive, code=CLOCK_ALARM, severity="critical", message="jumped 86400 s")
    finally:
        archive.close()
    suspended = tapeline("purge", "-c", c, "--dry-run", "--json")
    assert suspended.stdout == ""
    assert "suspended" in suspended.stderr
    assert (
        tapeline("clock", "confirm", "-c", c, *as_user(base, "lena"), check=False).returncode == 77
    )
    out = tapeline("clock", "confirm", "-c", c, *as_user(base, "ada")).stdout
    assert "purging resumes" in out
    assert rid in dry()
