"""No CLI command and no web route deletes a record (C-69): only the recorder's executor does.

Every leaf command of the CLI is listed here (a new command fails the test until it is added)
and run, as the role that may use it, against an archive holding a held record, an unexpired
record and an expired unheld one, plus an approved purge batch naming all three whose grace
period is over. Every web route is then called with every method, logged in as every role.
Afterwards all three records are intact and readable, and no batch was executed.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from tapeline import cli
from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.holds import place_hold
from tapeline.archive.ids import new_id
from tapeline.archive.models import Interaction, PurgeBatch, PurgeItem, utcnow
from tapeline.archive.reading import show
from tapeline.archive.searches import scope_from
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.archive.users import add_user
from tapeline.archive.verify import verify_archive
from tapeline.config import load_config
from tapeline.proto.net import PcapWriter
from tapeline.web.app import create_app
from tests.asgiclient import AsgiClient
from tests.conftest import write_config_file

OLD = datetime(2015, 1, 5, 9, 0, tzinfo=UTC)
PASSWORD = "a long enough password 1"
HELD_PARTY = "+447700900123"
ROLES = {
    "ada": "admin",
    "rita": "reviewer",
    "lena": "legal",
    "leo": "legal",
    "rmo": "records-manager",
    "rex": "records-manager",
    "eve": "export-officer",
    "aud": "auditor",
}
# Long-running programs, each tested elsewhere: none of them has a delete path but the
# recorder's jobs service, whose executor re-checks every invariant (tests/unit/archive/test_purge).
LONG_RUNNING = {("recorder",), ("web",), ("demo",), ("selftest",)}


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001  # argparse has no public walk
    if not subs:
        return {prefix}
    found: set[tuple[str, ...]] = set()
    for name, child in subs[0].choices.items():
        found |= _leaves(child, (*prefix, name))
    return found


class Appliance:
    """A config file, its archive, and the three records to protect."""

    def __init__(self, base: Path, database_url: str | None) -> None:
        self.base = base
        self.config = write_config_file(base, database_url)
        self.archive = Archive.open(load_config(self.config, environ={}))
        for name, role in ROLES.items():
            (base / f"pw-{name}").write_text(PASSWORD + "\n")
            add_user(
                self.archive, name=name, roles=[role], teams=[], password=PASSWORD,
                by=Actor.system("test"),
            )  # fmt: skip
        self.held = self._call(HELD_PARTY, OLD)
        self.expired = self._call("+447700900999", OLD)
        self.young = self._call("+447700900777", utcnow() - timedelta(days=10))
        place_hold(
            self.archive, Actor(name="lena", roles=("legal",)), matter="M",
            scope=scope_from(party=HELD_PARTY),
        )  # fmt: skip
        self.batches = [self._forged_batch("approved"), self._forged_batch("proposed")]

    def _call(self, party: str, started: datetime) -> str:
        return file_synthetic_call(
            self.archive, line="+442071230001", counterparty=party, started_at=started
        )

    def _forged_batch(self, state: str) -> str:
        batch_id = new_id()
        past = utcnow() - timedelta(days=30)
        with self.archive.index.write() as session:
            session.add(
                PurgeBatch(
                    id=batch_id, state=state, selected_at=past, proposed_by="rmo",
                    proposed_at=past, approved_by="rex" if state == "approved" else None,
                    approved_at=past if state == "approved" else None,
                    not_before=past if state == "approved" else None, executed_at=None,
                    certificate_id=None,
                )
            )  # fmt: skip
            session.flush()
            for rid in (self.held, self.expired, self.young):
                session.add(
                    PurgeItem(
                        batch_id=batch_id, interaction_id=rid, retention_class="finra-4511",
                        retain_until=OLD, outcome=None,
                    )
                )  # fmt: skip
        return batch_id

    def as_(self, name: str) -> list[str]:
        return ["--as", name, "--password-file", str(self.base / f"pw-{name}")]

    def assert_intact(self) -> None:
        reviewer = Actor(name="rita", roles=("reviewer",))
        with self.archive.index.read() as session:
            for rid in (self.held, self.expired, self.young):
                assert session.get_one(Interaction, rid).purged_at is None, rid
            states = {session.get_one(PurgeBatch, b).state for b in self.batches}
            assert "executed" not in states
        for rid in (self.held, self.expired, self.young):
            _, audio = show(self.archive, reviewer, rid, audio=True)
            assert audio
        assert verify_archive(self.archive).ok


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def appliance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Appliance]:
    url = (
        request.getfixturevalue("postgres").new_database() if request.param == "postgres" else None
    )
    made = Appliance(tmp_path, url)
    try:
        yield made
    finally:
        made.archive.close()


def _invocations(a: Appliance) -> dict[tuple[str, ...], list[list[str]]]:
    c = ["-c", str(a.config)]
    pw = str(a.base / "pw-ada")
    cdr = a.base / "cdr.csv"
    cdr.write_text(
        "start,end,from,to,call_id,line\n2015-01-05T09:00:00Z,2015-01-05T09:00:03Z,+447700900999,+442071230001,,\n"
    )
    bundle = str(a.base / "bundle.zip")
    capture_path = a.base / "empty.pcap"
    capture_path.write_bytes(PcapWriter().header(1))
    capture = str(capture_path)
    return {
        ("check-config",): [c],
        ("info",): [c],
        ("query",): [[*c, "--all", "--json"]],
        ("show",): [[*c, a.held, *a.as_("rita"), "--audio", str(a.base / "out.flac")]],
        ("verify",): [c],
        # an index with records: refused before it reads or writes anything
        ("restore",): [[*c, "--from-replica"], c],
        ("key", "generate"): [c],
        ("key", "export"): [[*c, "--out", str(a.base / "keys.bin"), "--passphrase-file", pw]],
        # the node's key files exist: refused, never overwritten
        ("key", "import"): [[*c, "--in", str(a.base / "keys.bin"), "--passphrase-file", pw]],
        ("user", "add"): [
            [
                *c,
                "newbie",
                "--role",
                "reviewer",
                "--password-file",
                pw,
                "--as",
                "ada",
                "--as-password-file",
                pw,
            ],
        ],
        ("user", "passwd"): [
            [*c, "rita", "--new-password-file", pw, "--as", "ada", "--as-password-file", pw]
        ],
        ("user", "list"): [c],
        ("hold", "add"): [[*c, *a.as_("lena"), "--matter", "N", "--party", "+447700900999"]],
        ("hold", "list"): [[*c, "--json"]],
        ("hold", "release"): [[*c, *a.as_("lena"), "--matter", "M", "--reason", "done"]],
        ("hold", "approve"): [[*c, *a.as_("leo"), "--matter", "M"]],
        ("search", "save"): [[*c, *a.as_("rmo"), "--name", "all-rates", "--team", "rates"]],
        ("search", "list"): [c],
        ("retention", "list"): [[*c, "--json"]],
        ("retention", "propose"): [
            [*c, *a.as_("rmo"), "--class", "finra-4511", "--minimum-days", "1"]
        ],
        ("retention", "approve"): [[*c, *a.as_("rex"), "1"]],
        ("retention", "extend"): [
            [*c, *a.as_("rmo"), "--id", a.young, "--until", "2016-01-01", "--reason", "x"],
            [*c, *a.as_("rmo"), "--search", "all-rates", "--years", "1", "--reason", "x"],
        ],
        ("purge",): [
            [*c, "--dry-run"],
            [*c, "--propose", *a.as_("rmo")],
            [*c, "approve", a.batches[1], *a.as_("rex")],
            [*c, "list"],
        ],
        ("export",): [[*c, "--out", bundle, *a.as_("eve")]],
        ("verify-export",): [[bundle]],
        ("cdr", "import"): [[*c, str(cdr)]],
        ("reconcile",): [[*c, "--date", "2015-01-05"]],
        ("review", "flag"): [[*c, *a.as_("rita"), a.expired, "--reason", "check"]],
        ("review", "resolve"): [
            [*c, *a.as_("rita"), a.expired, "--action", "closed", "--comment", "fine"]
        ],
        ("clock", "confirm"): [[*c, *a.as_("ada")], [*c, *a.as_("rmo")]],
        # tapped calls are only ever added: an empty capture and a real one both file, not delete
        ("import-pcap",): [[*c, capture]],
        ("tap", "import"): [[*c, capture]],
    }


def test_no_cli_command_deletes_a_record(
    appliance: Appliance, capsys: pytest.CaptureFixture[str]
) -> None:
    invocations = _invocations(appliance)
    assert _leaves(cli.build_parser()) == set(invocations) | LONG_RUNNING
    codes = {}
    for command, runs in invocations.items():
        for args in runs:
            codes[(*command, *args[:1])] = cli.main([*command, *args])
    capsys.readouterr()
    assert codes[("export", "-c")] == 0
    assert codes[("hold", "approve", "-c")] == 0  # the held record is released: still not deleted
    assert codes[("review", "resolve", "-c")] == 0  # files a resolution record, deletes nothing
    assert codes[("restore", "-c")] != 0  # never over an index that has records
    appliance.assert_intact()


def test_no_web_route_deletes_a_record(appliance: Appliance) -> None:
    client = AsgiClient(create_app(appliance.archive))
    try:
        calls = 0
        for name in ROLES:
            client.cookies.clear()
            login = client.post("/login", data={"username": name, "password": PASSWORD})
            assert login.status_code == 303
            for route in client.app.routes:  # type: ignore[attr-defined]  # a FastAPI app
                if not isinstance(route, APIRoute):
                    continue
                methods = route.methods or set()
                assert not methods & {"DELETE", "PUT", "PATCH"}, route.path
                for rid in (appliance.held, appliance.expired, appliance.young):
                    path = re.sub(r"\{[^}]+\}", rid, route.path)
                    for method in sorted(methods - {"HEAD"}):
                        if path == "/logout":
                            continue
                        client.request(method, path, params={"date": "2015-01-05"})
                        calls += 1
        assert calls > 50
    finally:
        client.close()
    appliance.assert_intact()
