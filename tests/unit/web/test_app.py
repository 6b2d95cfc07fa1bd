"""The web page through its ASGI app (httpx transport) on a real archive in tmp_path."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select
from starlette.routing import Mount

from tapeline.archive import totp
from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import AuditEntry
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.archive.users import add_user
from tapeline.web.app import PUBLIC_PATHS, create_app
from tapeline.web.sessions import COOKIE
from tests.asgiclient import AsgiClient

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
PASSWORD = "a long enough password"
SYSTEM = Actor.system("test")
SECRETS: dict[str, bytes] = {}


@pytest.fixture
def web(archive: Archive) -> Iterator[tuple[AsgiClient, Archive, str]]:
    for name, roles, teams in (
        ("ada", ["admin"], []),
        ("rita", ["reviewer"], []),
        ("sam", ["supervisor"], ["rates"]),
    ):
        secret = add_user(
            archive,
            name=name,
            roles=roles,
            teams=teams,
            password=PASSWORD,
            by=SYSTEM,
            with_totp=name == "ada",
        )
        if secret is not None:
            SECRETS[name] = secret
    rid = file_synthetic_call(
        archive, line="+442071230001", counterparty="+447700900123", started_at=T0
    )
    file_synthetic_message(
        archive,
        line="+442071230002",
        counterparty="+447700900123",
        started_at=T0,
        text="<script>alert(1)</script>",
        wamid="wamid.W",
    )
    client = AsgiClient(create_app(archive))
    try:
        yield client, archive, rid
    finally:
        client.close()


def _login(client: AsgiClient, name: str) -> None:
    code = totp.totp(SECRETS[name], time.time()) if name in SECRETS else ""
    response = client.post("/login", data={"username": name, "password": PASSWORD, "totp": code})
    assert response.status_code == 303, response.text


def test_every_route_needs_a_session_except_the_allow_list(
    web: tuple[AsgiClient, Archive, str],
) -> None:
    client, _, rid = web
    app = client.app
    checked = 0
    for route in app.routes:  # type: ignore[attr-defined]  # the ASGI app is a FastAPI
        if isinstance(route, Mount):
            assert route.path in PUBLIC_PATHS
            continue
        assert isinstance(route, APIRoute)
        path = re.sub(r"\{[^}]+\}", rid, route.path)
        public = path in PUBLIC_PATHS
        for method in sorted(getattr(route, "methods", {"GET"}) - {"HEAD"}):
            response = client.request(method, path)
            checked += 1
            if public:
                continue
            assert response.status_code in {303, 401, 422}, (method, path, response.status_code)
            if response.status_code == 303:
                assert response.headers["location"] == "/login"
    assert checked >= 10
    assert client.get("/openapi.json").status_code == 404  # no public schema
    assert client.get("/api/v1/openapi.json").status_code == 401


def test_login_sets_a_host_only_strict_cookie_and_wrong_password_fails(
    web: tuple[AsgiClient, Archive, str],
) -> None:
    client, _, _ = web
    bad = client.post("/login", data={"username": "rita", "password": "wrong password!!"})
    assert bad.status_code == 401
    assert COOKIE not in bad.cookies
    good = client.post("/login", data={"username": "rita", "password": PASSWORD})
    cookie = good.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower()
    assert "Domain" not in cookie


def test_cross_origin_login_is_refused(web: tuple[AsgiClient, Archive, str]) -> None:
    client, _, _ = web
    response = client.post(
        "/login",
        data={"username": "rita", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


def test_reviewer_searches_reads_and_plays_and_each_is_audited(
    web: tuple[AsgiClient, Archive, str],
) -> None:
    client, archive, rid = web
    _login(client, "rita")
    page = client.get("/")
    assert page.status_code == 200
    assert "Alice Trader" in page.text
    assert "<script>alert(1)</script>" not in client.get("/records/" + _message_id(client)).text
    api = client.get("/api/v1/interactions", params={"party": "+447700900123"}).json()
    assert len(api) == 2
    audio = client.get(f"/records/{rid}/audio")
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/flac"
    assert audio.content[:4] == b"fLaC"
    with archive.index.read() as session:
        actions = [
            (e.actor, e.action, e.object_id)
            for e in session.execute(select(AuditEntry).where(AuditEntry.actor == "rita")).scalars()
        ]
    assert ("rita", "recording.played", rid) in actions
    assert ("rita", "record.searched", None) in actions


def _message_id(client: AsgiClient) -> str:
    found: str = client.get("/api/v1/interactions", params={"channel": "whatsapp"}).json()[0]["id"]
    return found


def test_admin_can_neither_search_nor_play(web: tuple[AsgiClient, Archive, str]) -> None:
    client, _, rid = web
    _login(client, "ada")
    assert "do not include searching" in client.get("/").text
    assert client.get("/api/v1/interactions").status_code == 403
    assert client.get(f"/records/{rid}/audio").status_code == 403


def test_supervisor_sees_only_their_team(web: tuple[AsgiClient, Archive, str]) -> None:
    client, _, rid = web
    _login(client, "sam")
    records = client.get("/api/v1/interactions").json()
    assert [r["line"]["team"] for r in records] == ["rates"]
    other = _message_id_as(client)
    assert other is None
    assert client.get(f"/api/v1/interactions/{rid}").status_code == 200


def _message_id_as(client: AsgiClient) -> str | None:
    found = client.get("/api/v1/interactions", params={"channel": "whatsapp"}).json()
    return found[0]["id"] if found else None


def test_logout_needs_the_csrf_token(web: tuple[AsgiClient, Archive, str]) -> None:
    client, _, _ = web
    _login(client, "rita")
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/").status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert token is not None
    assert client.post("/logout", data={"csrf": token.group(1)}).status_code == 303
    assert client.get("/").status_code == 303


def test_security_headers_on_every_response(web: tuple[AsgiClient, Archive, str]) -> None:
    client, _, _ = web
    for path in ("/login", "/livez", "/"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"  # see SECURITY_HEADERS


def test_readyz_shows_details_only_to_logged_in_users(
    web: tuple[AsgiClient, Archive, str],
) -> None:
    client, archive, _ = web
    anonymous = client.get("/readyz")
    assert anonymous.headers["content-type"] == "application/health+json"
    assert anonymous.json() == {"status": "pass"}
    _login(client, "rita")
    expected = archive.storage_mode if archive.vault.store.worm else "audit-trail"
    assert client.get("/readyz").json()["storage_mode"] == expected
