"""The hold, retention and export screens and their /api/v1 routes, through the ASGI app."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from tapeline.archive import policies
from tapeline.archive.exportcheck import verify_export
from tapeline.archive.models import AuditEntry, Hold, Interaction, RetentionProposal
from tapeline.web import exportjobs
from tapeline.web.deps import WebContext
from tests.asgiclient import AsgiClient
from tests.unit.web.conftest import CLIENT, Site, csrf_of


def _actions(site: Site, actor: str) -> list[str]:
    with site.archive.index.read() as session:
        query = select(AuditEntry.action).where(AuditEntry.actor == actor)
        return list(session.execute(query.order_by(AuditEntry.seq)).scalars())


def _holds(site: Site) -> list[Hold]:
    with site.archive.index.read() as session:
        return list(session.execute(select(Hold).order_by(Hold.id)).scalars())


def _token(site: Site, name: str) -> dict[str, str]:
    owner = site.login(name)
    made = owner.post("/account/tokens", data={"csrf": csrf_of(owner), "label": "t"})
    token = re.search(r'id="new-token">(tl_[A-Za-z0-9_-]+)<', made.text)
    assert token is not None
    return {"Authorization": f"Bearer {token.group(1)}"}


def _jobs(client: AsgiClient) -> WebContext:
    ctx: WebContext = client.app.state.web  # type: ignore[attr-defined]  # a FastAPI app
    return ctx


def test_hold_placed_listed_on_the_record_and_released_only_by_a_second_legal(site: Site) -> None:
    lena = site.login("lena")
    placed = lena.post(
        "/holds", data={"csrf": csrf_of(lena), "matter": "SEC inquiry 14", "party": CLIENT}
    )
    assert placed.status_code == 200, placed.text
    assert "placed on 5 records" in placed.text  # two calls and three messages with the client
    assert re.search(r'<td class="count">5</td><td class="state">active</td>', placed.text)
    hold_id = _holds(site)[0].id
    reviewer = site.login("rita")
    record = reviewer.get(f"/records/{site.call_id}")
    assert "on hold: SEC inquiry 14" in record.text
    token = csrf_of(lena)
    asked = lena.post(
        f"/holds/{hold_id}/release-request", data={"csrf": token, "reason": "matter closed"}
    )
    assert "release-requested" in asked.text
    own = lena.post(f"/holds/{hold_id}/approve", data={"csrf": token})
    assert own.status_code == 403
    assert "cannot approve it" in own.text
    assert _holds(site)[0].state == "release-requested"
    leo = site.login("leo")
    released = leo.post(f"/holds/{hold_id}/approve", data={"csrf": csrf_of(leo)})
    assert released.status_code == 200
    assert "released by leo" in released.text
    assert "on hold" not in reviewer.get(f"/records/{site.call_id}").text
    assert _actions(site, "lena")[-3:] == [
        "hold.placed",
        "hold.release_requested",
        "hold.release_refused",
    ] or {"hold.placed", "hold.release_requested", "hold.release_refused"} <= set(
        _actions(site, "lena")
    )
    assert "hold.released" in _actions(site, "leo")


def test_only_legal_places_holds_and_the_form_needs_its_csrf_token(site: Site) -> None:
    lena = site.login("lena")
    forged = lena.post("/holds", data={"csrf": "forged", "matter": "M", "party": CLIENT})
    assert forged.status_code == 403
    no_scope = lena.post("/holds", data={"csrf": csrf_of(lena), "matter": "M"})
    assert no_scope.status_code == 400
    assert "needs a scope" in no_scope.text
    auditor = site.login("audrey")
    assert "Place a hold" not in auditor.get("/holds").text  # reads the report, no form
    refused = auditor.post("/holds", data={"csrf": csrf_of(auditor), "matter": "M", "line": "x"})
    assert refused.status_code == 403
    rita = site.login("rita")
    assert rita.get("/holds").status_code == 403  # a reviewer does not read the hold report
    assert _holds(site) == []


def test_retention_change_needs_a_second_records_manager_and_extension_lengthens(
    site: Site,
) -> None:
    remy = site.login("remy")
    page = remy.get("/retention")
    assert page.status_code == 200
    assert 'id="classes"' in page.text
    proposed = remy.post(
        "/retention/classes",
        data={
            "csrf": csrf_of(remy),
            "name": "fx-desk",
            "minimum_days": "3000",
            "start": "creation",
        },
    )
    assert proposed.status_code == 200, proposed.text
    found = re.search(r"Proposal (\d+) open", proposed.text)
    assert found is not None
    proposal = found.group(1)
    own = remy.post(f"/retention/proposals/{proposal}/approve", data={"csrf": csrf_of(remy)})
    assert own.status_code == 403
    assert "cannot approve it" in own.text
    rosa = site.login("rosa")
    approved = rosa.post(f"/retention/proposals/{proposal}/approve", data={"csrf": csrf_of(rosa)})
    assert approved.status_code == 200
    assert "<td>fx-desk</td><td>3000</td>" in approved.text
    with site.archive.index.read() as session:
        before = session.get_one(Interaction, site.call_id).retain_until
    extended = rosa.post(
        "/retention/extend",
        data={
            "csrf": csrf_of(rosa),
            "interaction_id": site.call_id,
            "years": "30",
            "reason": "litigation risk",
        },
    )
    assert extended.status_code == 200, extended.text
    with site.archive.index.read() as session:
        after = session.get_one(Interaction, site.call_id).retain_until
    assert after > before
    policy = rosa.post(
        "/retention/policies",
        data={"csrf": csrf_of(rosa), "name": "fx-lines", "class": "fx-desk", "team": "rates"},
    )
    found = re.search(r"Proposal (\d+) open", policy.text)
    assert found is not None, policy.text
    in_force = remy.post(
        f"/retention/proposals/{found.group(1)}/approve", data={"csrf": csrf_of(remy)}
    )
    assert re.search(
        r"<td>fx-lines</td><td>fx-desk</td><td><span class=\"q\">team=rates", in_force.text
    )
    assert "retention.extended" in _actions(site, "rosa")
    assert "retention.approval_refused" in _actions(site, "remy")
    rita = site.login("rita")
    denied = rita.post(
        "/retention/classes",
        data={"csrf": csrf_of(rita), "name": "x", "minimum_days": "1"},
    )
    assert denied.status_code == 403


def test_export_runs_in_the_background_downloads_audited_and_verifies(
    site: Site, tmp_path: Path
) -> None:
    eve = site.login("eve")
    started = eve.post(
        "/exports", data={"csrf": csrf_of(eve), "party": CLIENT, "purpose": "FCA 2026/031"}
    )
    assert started.status_code == 303, started.text  # reloading must not export again
    assert started.headers["location"] == "/exports"
    _jobs(eve).exports.wait()
    table = eve.get("/exports/jobs", headers={"HX-Request": "true"})
    assert table.text.lstrip().startswith('<div id="export-jobs"')
    assert "every 2s" not in table.text  # nothing running: polling stops
    link = re.search(r'href="(/exports/[^"]+/download)"', table.text)
    assert link is not None, table.text
    bundle = eve.get(link.group(1))
    assert bundle.status_code == 200
    assert bundle.headers["content-type"] == "application/zip"
    path = tmp_path / "export.zip"
    path.write_bytes(bundle.content)
    report = verify_export(path)
    assert report.ok, report.problems
    assert report.records == 5
    assert {"records.exported", "export.downloaded"} <= set(_actions(site, "eve"))
    good = eve.post(
        "/exports/verify",
        data={"csrf": csrf_of(eve)},
        files={"bundle": ("export.zip", bundle.content, "application/zip")},
    )
    assert "export ok" in good.text
    tampered = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "metadata.csv":
                data = data.replace(b"voice", b"VOICE", 1)
            target.writestr(item, data)
    bad = eve.post(
        "/exports/verify",
        data={"csrf": csrf_of(eve)},
        files={"bundle": ("export.zip", tampered.getvalue(), "application/zip")},
    )
    assert "metadata.csv: changed" in bad.text
    assert _actions(site, "eve").count("export.verified") == 2
    other = site.login("rita", client=eve)  # same app, so the job exists there
    assert other.get(link.group(1)).status_code == 403  # a reviewer cannot download exports


def test_api_places_releases_holds_and_exports_with_tokens(site: Site, tmp_path: Path) -> None:
    lena, leo, eve = _token(site, "lena"), _token(site, "leo"), _token(site, "eve")
    api = site.client()
    made = api.post(
        "/api/v1/holds",
        json={"matter": "FINRA 7", "party": CLIENT, "channel": "voice"},
        headers=lena,
    )
    assert made.status_code == 201, made.text
    assert made.json()["records"] == 2
    hold_id = made.json()["id"]
    assert [h["matter"] for h in api.get("/api/v1/holds", headers=leo).json()] == ["FINRA 7"]
    assert api.post("/api/v1/holds", json={"matter": "x"}, headers=lena).status_code == 400
    asked = api.post(
        f"/api/v1/holds/{hold_id}/release-request", json={"reason": "closed"}, headers=lena
    )
    assert asked.json()["state"] == "release-requested"
    assert api.post(f"/api/v1/holds/{hold_id}/approve", headers=lena).status_code == 403
    assert api.post(f"/api/v1/holds/{hold_id}/approve", headers=leo).json()["state"] == "released"
    assert (
        api.post("/api/v1/holds", json={"matter": "y", "line": "1"}, headers=eve).status_code == 403
    )
    started = api.post(
        "/api/v1/exports", json={"party": CLIENT, "channel": "whatsapp"}, headers=eve
    )
    assert started.status_code == 202, started.text
    job = started.json()["id"]
    _jobs(api).exports.wait()
    status = api.get(f"/api/v1/exports/{job}", headers=eve).json()
    assert status["state"] == "done"
    assert status["records"] == 3
    assert api.get(f"/api/v1/exports/{job}", headers=lena).status_code == 404  # not theirs
    zipped = api.get(f"/api/v1/exports/{job}/download", headers=eve)
    path = tmp_path / "api.zip"
    path.write_bytes(zipped.content)
    assert verify_export(path).ok
    assert "export.downloaded" in _actions(site, "eve")


def test_an_export_matching_nothing_fails_visibly_and_leaves_no_file(site: Site) -> None:
    eve = site.login("eve")
    eve.post("/exports", data={"csrf": csrf_of(eve), "party": "+15550100000"})
    jobs = _jobs(eve).exports
    jobs.wait()
    table = eve.get("/exports/jobs", headers={"HX-Request": "true"}).text
    assert 'data-state="failed"' in table
    assert "no record matches" in table
    assert "download" not in table
    assert jobs.folder is not None
    assert list(jobs.folder.iterdir()) == []  # the half-made zip was removed


def test_a_hold_on_a_saved_search_covers_what_the_search_matches(site: Site) -> None:
    lena = site.login("lena")
    saved = lena.post(
        "/searches",
        data={"csrf": csrf_of(lena), "name": "client-voice", "party": CLIENT, "channel": "voice"},
    )
    assert "Search client-voice saved." in saved.text
    placed = lena.post(
        "/holds",
        data={"csrf": csrf_of(lena), "matter": "M-2", "saved_search": "client-voice"},
    )
    assert "placed on 2 records" in placed.text, placed.text  # the two calls, no messages
    assert "search.saved" in _actions(site, "lena")


def test_an_unexpected_error_in_the_export_worker_fails_the_job_instead_of_hanging(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        message = "decoder crashed"
        raise RuntimeError(message)

    monkeypatch.setattr(exportjobs, "export_records", broken)
    eve = site.login("eve")
    eve.post("/exports", data={"csrf": csrf_of(eve), "party": CLIENT})
    _jobs(eve).exports.wait()
    table = eve.get("/exports/jobs", headers={"HX-Request": "true"}).text
    assert 'data-state="failed"' in table
    assert "internal error" in table
    assert "every 2s" not in table  # the page stops polling


def test_a_class_change_from_the_page_keeps_the_accessible_period(site: Site) -> None:
    remy = site.login("remy")
    with_access = remy.post(
        "/retention/classes",
        data={"csrf": csrf_of(remy), "name": "sec-17a-4", "minimum_days": "2000"},
    )
    found = re.search(r"Proposal (\d+) open", with_access.text)
    assert found is not None, with_access.text
    with site.archive.index.read() as session:
        payload = session.get_one(RetentionProposal, int(found.group(1))).payload
    seeded = {c["name"]: c for c in policies.overview(site.archive)["classes"]}["sec-17a-4"]
    assert seeded["accessible_days"] is not None  # a class that has one, or this proves nothing
    assert payload["accessible_days"] == seeded["accessible_days"]
    assert payload["minimum_days"] == 2000  # the value typed in the form
