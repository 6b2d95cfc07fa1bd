"""The compliance page's behaviour through its ASGI app: auth, CSRF, TOTP, tokens, pages, audit."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

from fastapi.routing import APIRoute
from sqlalchemy import select

from tapeline.archive import totp
from tapeline.archive.models import ApiToken, AuditEntry, WebSession
from tapeline.archive.nodes import heartbeat, raise_alarm
from tapeline.archive.users import list_users
from tapeline.web.sessions import COOKIE
from tests.asgiclient import AsgiClient
from tests.unit.web.conftest import CLIENT, PASSWORD, PNG, Site, csrf_of

TEMPLATES = Path(__file__).resolve().parents[3] / "src" / "tapeline" / "web" / "templates"


def _audit(site: Site, **where: str) -> list[AuditEntry]:
    with site.archive.index.read() as session:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        for column, value in where.items():
            query = query.where(getattr(AuditEntry, column) == value)
        return list(session.execute(query).scalars())


def _unsafe_routes(client: AsgiClient) -> list[str]:
    routes = client.app.routes  # type: ignore[attr-defined]  # the ASGI app is a FastAPI
    return [
        re.sub(r"\{[^}]+\}", "1", route.path)
        for route in routes
        if isinstance(route, APIRoute)
        and (route.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}
    ]


def test_every_unsafe_route_refuses_a_missing_or_forged_csrf_token(site: Site) -> None:
    client = site.login("rita")
    unsafe = [p for p in _unsafe_routes(client) if p != "/login"]
    assert len(unsafe) >= 10
    for path in unsafe:
        assert client.post(path).status_code == 403, path
        assert client.post(path, data={"csrf": "forged"}).status_code == 403, path
        assert client.post(path, headers={"X-CSRF-Token": "forged"}).status_code == 403, path
    assert client.get("/").status_code == 200  # still signed in: nothing above logged out


def test_a_right_csrf_token_from_another_origin_is_refused(site: Site) -> None:
    client = site.login("rita")
    token = csrf_of(client)
    evil = client.post(
        "/account/tokens", data={"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert client.post("/account/tokens", data={"csrf": token}).status_code == 200


def test_lockout_after_five_failures_and_every_attempt_is_audited(site: Site) -> None:
    client = site.client()
    for _ in range(5):
        bad = client.post("/login", data={"username": "rita", "password": "not the password"})
        assert bad.status_code == 401
    right = client.post("/login", data={"username": "rita", "password": PASSWORD})
    assert right.status_code == 401
    assert COOKIE not in client.cookies
    failures = _audit(site, action="auth.failed", object_id="rita")
    assert len(failures) == 6
    assert failures[0].details["client"] == "127.0.0.1"
    assert _audit(site, action="auth.succeeded") == []


def test_login_attempts_are_throttled_per_address_and_account(site: Site) -> None:
    client = site.client()
    codes = [
        client.post("/login", data={"username": "nobody", "password": "x" * 12}).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    site.clock[0] += 61  # the window slides on
    again = client.post("/login", data={"username": "nobody", "password": "x" * 12})
    assert again.status_code == 401


def test_successful_sign_in_is_audited_with_the_client_address(site: Site) -> None:
    site.login("rita")
    [entry] = _audit(site, action="auth.succeeded")
    assert (entry.actor, entry.details) == ("rita", {"client": "127.0.0.1"})


def test_idle_and_absolute_session_timeouts(site: Site) -> None:
    client = site.login("rita")
    _age_sessions(site, last_seen=timedelta(minutes=16))
    assert client.get("/").headers["location"] == "/login"
    client = site.login("rita", site.client())
    assert client.get("/").status_code == 200
    _age_sessions(site, created=timedelta(hours=9))
    assert client.get("/").status_code == 303


def _age_sessions(
    site: Site, *, created: timedelta = timedelta(0), last_seen: timedelta = timedelta(0)
) -> None:
    with site.archive.index.write() as session:
        for row in session.execute(select(WebSession)).scalars():
            row.created_at -= created
            row.last_seen_at -= last_seen


def test_second_factor_roles_enrol_on_first_login_then_need_the_code(site: Site) -> None:
    client = site.login("ada")  # admin with TOTP: in straight away
    token = csrf_of(client)
    added = client.post(
        "/admin/users",
        data={"csrf": token, "name": "mia", "password": PASSWORD, "roles": ["records-manager"]},
    )
    assert added.status_code == 303
    mia = site.client()
    first = mia.post("/login", data={"username": "mia", "password": PASSWORD})
    assert first.headers["location"] == "/login/totp"
    assert mia.get("/").headers["location"] == "/login/totp"  # nothing else is reachable
    assert mia.get("/api/v1/interactions").status_code == 401
    page = mia.get("/login/totp")
    secret_b32 = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text)
    assert secret_b32 is not None
    import base64  # noqa: PLC0415

    secret = base64.b32decode(secret_b32.group(1) + "=" * (-len(secret_b32.group(1)) % 8))
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    wrong = mia.post("/login/totp", data={"csrf": csrf.group(1), "code": "000000"})
    assert wrong.status_code == 400
    old_cookie = mia.cookies[COOKIE]
    done = mia.post(
        "/login/totp", data={"csrf": csrf.group(1), "code": totp.totp(secret, time.time())}
    )
    assert done.headers["location"] == "/"
    assert mia.cookies[COOKIE] != old_cookie  # a new session id after the privilege change
    assert mia.get("/account").status_code == 200
    assert [e.actor for e in _audit(site, action="user.totp_enrolled")] == ["mia"]
    again = site.client()
    assert again.post("/login", data={"username": "mia", "password": PASSWORD}).status_code == 401
    code = totp.totp(secret, time.time())
    ok = again.post("/login", data={"username": "mia", "password": PASSWORD, "totp": code})
    assert ok.headers["location"] == "/"


def test_totp_is_offered_to_roles_that_do_not_need_it(site: Site) -> None:
    client = site.login("rita")
    token = csrf_of(client)
    assert "Not enabled" in client.get("/account").text
    client.post("/account/totp/start", data={"csrf": token})
    page = client.get("/account").text
    found = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page)
    assert found is not None
    import base64  # noqa: PLC0415

    secret = base64.b32decode(found.group(1) + "=" * (-len(found.group(1)) % 8))
    client.post("/account/totp", data={"csrf": token, "code": totp.totp(secret, time.time())})
    assert [u.totp for u in list_users(site.archive) if u.name == "rita"] == [True]


def test_api_tokens_are_shown_once_stored_hashed_api_only_and_revocable(site: Site) -> None:
    client = site.login("rita")
    page = client.post("/account/tokens", data={"csrf": csrf_of(client), "label": "nightly"})
    found = re.search(r'id="new-token">(tl_[A-Za-z0-9_-]+)<', page.text)
    assert found is not None
    token = found.group(1)
    assert token not in client.get("/account").text  # shown once
    with site.archive.index.read() as session:
        [row] = session.execute(select(ApiToken)).scalars()
        assert token not in (row.token_hash, row.label)
    robot = AsgiClient(client.app)
    site.clients.append(robot)
    bearer = {"Authorization": f"Bearer {token}"}
    assert len(robot.get("/api/v1/interactions", headers=bearer).json()) == 5
    assert robot.get("/", headers=bearer).status_code == 303  # not on the HTML pages
    assert (
        robot.get("/api/v1/interactions", headers={"Authorization": "Bearer tl_nope"}).status_code
        == 401
    )
    client.post(f"/account/tokens/{row.id}/revoke", data={"csrf": csrf_of(client)})
    assert robot.get("/api/v1/interactions", headers=bearer).status_code == 401
    actions = [e.action for e in _audit(site, actor="rita")]
    assert "token.created" in actions
    assert "token.revoked" in actions


def test_audio_answers_ranges_and_playback_is_audited_once_per_session(site: Site) -> None:
    client = site.login("rita")
    url = f"/records/{site.call_id}/audio"
    whole = client.get(url)
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    size = len(whole.content)
    part = client.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 0-99/{size}"
    assert part.content == whole.content[:100]
    tail = client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206
    assert tail.content == whole.content[-10:]
    seek = client.get(url, headers={"Range": f"bytes={size - 5}-"})
    assert seek.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    beyond = client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    played = _audit(site, action="recording.played", actor="rita")
    assert len(played) == 1
    assert played[0].object_id == site.call_id
    site.login("rita").get(url, headers={"Range": "bytes=0-1"})  # a new session: a new entry
    assert len(_audit(site, action="recording.played", actor="rita")) == 2


def test_supervisor_gets_404_for_another_teams_record_and_it_is_audited(site: Site) -> None:
    client = site.login("sam")  # team rates: Alice's line, not Bob's
    assert client.get(f"/records/{site.call_id}").status_code == 200
    for path in (
        f"/records/{site.other_call_id}",
        f"/records/{site.other_call_id}/audio",
        f"/api/v1/interactions/{site.other_call_id}",
        f"/api/v1/interactions/{site.other_call_id}/audio",
    ):
        assert client.get(path).status_code == 404, path
    assert len(_audit(site, action="record.denied", actor="sam")) == 4
    found = client.get("/api/v1/interactions").json()
    assert {r["line"]["team"] for r in found} == {"rates"}
    person = found[0]["counterparty"]["id"]
    thread = client.get(f"/people/{person}/whatsapp").text
    assert "100% done_deal" in thread
    assert "term sheet" not in thread  # Bob's (equities) message stays hidden
    media = _media_id(site)
    assert client.get(f"/media/{media}").status_code == 404


def _media_id(site: Site) -> str:
    client = site.login("rita")
    record = client.get(f"/api/v1/interactions/{site.message_ids[1]}").json()
    found: str = record["message"]["media"][0]["object_id"]
    return found


def test_whatsapp_thread_in_order_with_statuses_and_audited_media(site: Site) -> None:
    client = site.login("rita")
    person = client.get(f"/api/v1/interactions/{site.call_id}").json()["counterparty"]["id"]
    page = client.get(f"/people/{person}/whatsapp")
    assert page.status_code == 200
    text = page.text
    first, second, third = (
        text.index("price the 5y"),
        text.index("term sheet"),
        text.index("done_deal"),
    )
    assert first < second < third
    assert "outbound · read" in text
    media = _media_id(site)
    assert f'<img class="media" src="/media/{media}"' in text
    image = client.get(f"/media/{media}")
    assert image.content == PNG
    assert image.headers["content-type"] == "image/png"
    downloads = _audit(site, action="media.downloaded", actor="rita")
    assert [d.object_id for d in downloads] == [media]
    assert _audit(site, action="counterparty.viewed", actor="rita")


def test_timeline_interleaves_calls_and_messages_of_one_person(site: Site) -> None:
    client = site.login("rita")
    person = client.get(f"/api/v1/interactions/{site.call_id}").json()["counterparty"]["id"]
    timeline = client.get(f"/api/v1/people/{person}/timeline").json()
    kinds = [r["kind"] for r in timeline["interactions"]]
    assert kinds == ["call", "message", "message", "message", "call"]
    assert CLIENT in timeline["counterparty"]["identifiers"]
    assert client.get(f"/people/{person}").status_code == 200


def test_search_filters_text_direction_kind_team_and_name(site: Site) -> None:
    client = site.login("rita")

    def ids(**params: str) -> list[str]:
        return [r["id"] for r in client.get("/api/v1/interactions", params=params).json()]

    assert ids(text="100% done") == [site.message_ids[2]]  # LIKE wildcards taken literally
    assert ids(text="100_ done") == []
    assert ids(direction="outbound") == [site.message_ids[1]]
    assert sorted(ids(kind="call")) == sorted([site.call_id, site.other_call_id])
    assert set(ids(team="rates")) == {site.call_id, site.message_ids[2]}
    assert ids(party="carol cli") == [site.message_ids[0]]  # part of a name, any case
    assert set(ids(line="Alice Trader")) == {site.call_id, site.message_ids[2]}
    page = client.get("/", params={"text": "term sheet"}, headers={"HX-Request": "true"})
    assert "<html" not in page.text  # htmx gets only the results
    assert "term sheet" in page.text


def test_auditor_reads_the_audit_log_but_cannot_change_anything(site: Site) -> None:
    client = site.login("audrey")
    page = client.get("/audit", params={"action": "auth."})
    assert page.status_code == 200
    assert "verified" in page.text
    assert "auth.succeeded" in page.text
    token = csrf_of(client)
    for path in ("/admin/users", "/admin/users/rita/disable", "/admin/users/rita/roles"):
        answer = client.post(
            path, data={"csrf": token, "name": "xy", "password": PASSWORD, "roles": ["admin"]}
        )
        assert answer.status_code == 403, path
    assert [u.disabled for u in list_users(site.archive) if u.name == "rita"] == [False]
    reviewer = site.login("rita")
    assert reviewer.get("/audit").status_code == 403


def test_admin_manages_accounts_and_every_change_is_audited(site: Site) -> None:
    admin = site.login("ada")
    token = csrf_of(admin)
    rita = site.login("rita")
    changed = admin.post(
        "/admin/users/rita/roles", data={"csrf": token, "roles": ["supervisor"], "teams": "rates"}
    )
    assert changed.status_code == 303
    assert rita.get("/").status_code == 303  # a permission change ends the account's sessions
    [entry] = _audit(site, action="user.roles_changed")
    assert entry.details["before"]["roles"] == ["reviewer"]
    assert entry.details["after"] == {"roles": ["supervisor"], "teams": ["rates"]}
    admin.post("/admin/users/rita/disable", data={"csrf": token})
    assert rita.post("/login", data={"username": "rita", "password": PASSWORD}).status_code == 401
    admin.post("/admin/users/rita/enable", data={"csrf": token})
    reset = admin.post("/admin/users/rita/password", data={"csrf": token, "password": "short"})
    assert reset.status_code == 400
    admin.post(
        "/admin/users/rita/password", data={"csrf": token, "password": "another long password"}
    )
    ok = site.client().post(
        "/login", data={"username": "rita", "password": "another long password"}
    )
    assert ok.status_code == 303
    admin.post("/admin/users/lena/totp-reset", data={"csrf": token})
    assert [u.totp for u in list_users(site.archive) if u.name == "lena"] == [False]
    self_disable = admin.post("/admin/users/ada/disable", data={"csrf": token})
    assert self_disable.status_code == 400
    actions = {e.action for e in _audit(site, actor="ada")}
    assert {
        "user.roles_changed",
        "user.disabled",
        "user.enabled",
        "user.password_changed",
        "user.totp_reset",
    } <= actions
    assert admin.get("/api/v1/openapi.json").status_code == 200
    assert site.login("audrey").get("/api/v1/openapi.json").status_code == 403


def test_status_page_shows_heartbeats_alarms_and_storage_mode(site: Site) -> None:
    heartbeat(site.archive, status={"calls_active": 3}, starting=True)
    raise_alarm(site.archive, code="disk.90", severity="major", message="objects 91% full")
    page = site.login("audrey").get("/status").text
    assert "test-node" in page
    assert "calls active: 3" in page
    assert "objects 91% full" in page
    assert "audit-trail" in page
    assert "not WORM" in page
    assert "No replica is configured" in page


def test_templates_have_no_inline_script_or_style_and_csp_forbids_them(site: Site) -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert re.search(r"<script(?![^>]*\bsrc=)", text) is None, template.name
        assert re.search(r"<style|\sstyle=|\son[a-z]+=", text) is None, template.name
    csp = site.client().get("/login").headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "script-src 'self'" in csp
    htmx = (TEMPLATES.parent / "static" / "htmx.min.js").read_text()
    assert htmx.startswith("/*! htmx.org 2.")
    assert "0BSD" in htmx.splitlines()[0]
