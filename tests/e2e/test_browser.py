"""The page in a real headless Chromium (Debian's, driven by Playwright) against a real server.

One HTTPS server (the same uvicorn setup `tapeline web` runs, with a self-signed certificate) and
one browser per module. No browser is downloaded: Playwright is pointed at /usr/bin/chromium.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tapeline.archive import totp
from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.exportcheck import verify_export
from tapeline.archive.filing import MediaIn
from tapeline.archive.nodes import heartbeat
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.archive.users import add_user
from tapeline.config import parse_config
from tapeline.tlscert import generate_self_signed
from tapeline.web.server import make_server
from tests.conftest import config_dict, require_tool

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
PASSWORD = "a long enough password"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _png(width: int, height: int) -> bytes:
    """A valid RGB PNG of one colour (a fetched WhatsApp image attachment)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xcc\x22\x22" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png(4, 4)
# Collects CSP violations in the page; Playwright's init scripts are not subject to the CSP.
WATCH_CSP = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)

pytestmark = [
    pytest.mark.slow,
]


@dataclass
class Live:
    """The running server and what was seeded into it."""

    base: str
    archive: Archive
    call_id: str
    admin_totp: bytes
    console: list[str] = field(default_factory=list)
    secrets: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("e2e")
    config = parse_config(config_dict(base), source="test")
    generate_self_signed(config.web.tls_cert_file, config.web.tls_key_file)
    archive = Archive.open(config)
    add_user(
        archive,
        name="rita",
        roles=["reviewer"],
        teams=[],
        password=PASSWORD,
        by=Actor.system("test"),
    )
    secret = add_user(
        archive,
        name="ada",
        roles=["admin"],
        teams=[],
        password=PASSWORD,
        by=Actor.system("test"),
        with_totp=True,
    )
    assert secret is not None
    # Roles that hold, export or approve sign in with a second factor.
    secrets: dict[str, bytes] = {}
    for name, role in (("lena", "legal"), ("eve", "export-officer"), ("remy", "records-manager")):
        made = add_user(
            archive,
            name=name,
            roles=[role],
            teams=[],
            password=PASSWORD,
            by=Actor.system("test"),
            with_totp=True,
        )
        assert made is not None
        secrets[name] = made
    call = file_synthetic_call(
        archive, line="+442071230001", counterparty="+447700900123", started_at=T0, seconds=6.0
    )
    file_synthetic_message(
        archive,
        line="+442071230001",
        counterparty="+447700900123",
        started_at=T0 + timedelta(minutes=5),
        text="Can you call me about the 5y swap?",
        wamid="wamid.E1",
    )
    file_synthetic_message(
        archive,
        line="+442071230001",
        counterparty="+447700900123",
        started_at=T0 + timedelta(minutes=6),
        text="Term sheet attached",
        wamid="wamid.E2",
        direction="outbound",
        status="read",
        media=[MediaIn(data=PNG, media_id="m-e2e", mime_type="image/png")],
    )
    server = make_server(archive)
    thread = threading.Thread(target=server.run, name="e2e-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the web server stopped during start-up"
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    host, port = config.web.address
    try:
        yield Live(
            base=f"https://{host}:{port}",
            archive=archive,
            call_id=call,
            admin_totp=secret,
            secrets=secrets,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        archive.close()


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Browser]:
    del live
    with sync_playwright() as driver:
        require_tool(str(CHROMIUM))
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, live: Live) -> Iterator[Page]:
    context = browser.new_context(ignore_https_errors=True, base_url=live.base)
    context.add_init_script(WATCH_CSP)
    opened = context.new_page()
    opened.on("console", lambda message: live.console.append(f"{message.type}: {message.text}"))
    try:
        yield opened
    finally:
        context.close()


def _login(page: Page, name: str = "rita", code: str = "") -> None:
    page.goto("/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=totp]", code)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def _no_csp_violations(page: Page, live: Live) -> None:
    assert page.evaluate("window.__csp") == []
    assert [line for line in live.console if "Content Security Policy" in line] == []


def test_sign_in_search_open_a_call_and_play_it(page: Page, live: Live, tmp_path: Path) -> None:
    _login(page)
    assert page.evaluate("typeof window.htmx") == "object"  # the vendored htmx loaded
    page.fill("input[name=party]", "+44 7700 900123")
    page.select_option("select[name=channel]", "voice")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/?party=*")  # htmx swapped the results in and pushed the URL
    link = page.locator(f"a[href='/records/{live.call_id}']")
    assert link.count() == 1
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
    audio_statuses: list[int] = []
    page.on(
        "response",
        lambda r: audio_statuses.append(r.status) if r.url.endswith("/audio") else None,
    )
    link.click()
    page.wait_for_url(f"**/records/{live.call_id}")
    channels = page.locator("table.channels").inner_text()
    assert "0 (left)" in channels
    assert "employee: Alice Trader" in channels
    assert "counterparty: +447700900123" in channels
    page.evaluate("document.getElementById('player').play()")
    page.wait_for_function(
        "() => { const a = document.getElementById('player');"
        " return a.duration > 5 && a.currentTime > 0.3 && !a.paused; }",
        timeout=15_000,
    )
    page.screenshot(path=str(tmp_path / "record.png"), full_page=True)
    assert 206 in audio_statuses  # the browser asked for ranges and got partial content
    _no_csp_violations(page, live)


def test_read_a_whatsapp_thread_with_an_image(page: Page, live: Live, tmp_path: Path) -> None:
    _login(page)
    page.goto(f"/records/{live.call_id}")
    page.click("text=timeline")
    page.wait_for_url("**/people/*")
    page.click("text=WhatsApp thread")
    page.wait_for_url("**/people/*/whatsapp")
    bubbles = page.locator("ol.thread li.bubble")
    assert bubbles.count() == 2
    assert "5y swap" in bubbles.nth(0).inner_text()
    assert "Term sheet" in bubbles.nth(1).inner_text()
    assert "read" in bubbles.nth(1).inner_text()
    page.wait_for_function(
        "() => { const i = document.querySelector('img.media'); return i && i.naturalWidth === 4; }"
    )
    page.screenshot(path=str(tmp_path / "thread.png"), full_page=True)
    _no_csp_violations(page, live)


def test_admin_and_auditor_screens_render_without_csp_violations(
    page: Page, live: Live, tmp_path: Path
) -> None:
    heartbeat(live.archive, status={"calls_active": 0}, starting=True)
    _login(page, "ada", totp.totp(live.admin_totp, time.time()))
    assert "do not include searching" in page.content()  # an admin cannot search or play
    page.goto("/audit?action=auth.")
    assert "every link intact" in page.inner_text("p.chain")
    assert "auth.succeeded" in page.inner_text("table.audit")
    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
    page.fill("input[name=actor]", "rita")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/audit?actor=rita*")
    page.goto("/status")
    assert "test-node" in page.inner_text("main")
    page.screenshot(path=str(tmp_path / "status.png"), full_page=True)
    page.goto("/admin/users")
    assert "rita" in page.inner_text("table.users")
    page.screenshot(path=str(tmp_path / "users.png"), full_page=True)
    page.goto("/account")
    page.screenshot(path=str(tmp_path / "account.png"), full_page=True)
    for shot in ("audit", "status", "users", "account"):
        assert (tmp_path / f"{shot}.png").stat().st_size > 1000
    _no_csp_violations(page, live)


def _code(live: Live, name: str) -> str:
    return totp.totp(live.secrets[name], time.time())


def test_place_a_hold_and_see_it_on_the_record(page: Page, live: Live, tmp_path: Path) -> None:
    _login(page, "lena", _code(live, "lena"))
    page.goto("/holds")
    page.fill("#place-hold input[name=matter]", "SEC inquiry 2026-14")
    page.fill("#place-hold input[name=party]", "+44 7700 900123")
    page.click("#place-hold button[type=submit]")
    page.wait_for_selector("p.notice")
    assert "placed on 3 records" in page.inner_text("p.notice")  # the call and both messages
    row = page.locator("#holds tbody tr").first
    assert row.locator("td.count").inner_text() == "3"
    assert row.locator("td.state").inner_text() == "active"
    page.screenshot(path=str(tmp_path / "holds.png"), full_page=True)
    _no_csp_violations(page, live)
    page.click("header form button[type=submit]")  # log out, then read the record as a reviewer
    page.wait_for_url("**/login")
    _login(page)
    page.goto(f"/records/{live.call_id}")
    assert "on hold: SEC inquiry 2026-14" in page.inner_text("#record-holds")
    page.screenshot(path=str(tmp_path / "record-held.png"), full_page=True)
    assert (tmp_path / "holds.png").stat().st_size > 1000
    _no_csp_violations(page, live)


def test_create_an_export_download_and_verify_it(page: Page, live: Live, tmp_path: Path) -> None:
    _login(page, "eve", _code(live, "eve"))
    page.goto("/exports?party=%2B447700900123&channel=whatsapp")  # filters carried from a search
    assert page.input_value("#new-export input[name=party]") == "+447700900123"
    page.fill("#new-export input[name=purpose]", "FCA request 2026/031")
    page.click("#new-export button[type=submit]")
    link = page.locator("#export-jobs a.download")
    link.wait_for(timeout=60_000)  # htmx polls the job table until the bundle is written
    with page.expect_download() as started:
        link.click()
    bundle = tmp_path / "export.zip"
    started.value.save_as(bundle)
    report = verify_export(bundle)
    assert report.ok, report.problems
    assert report.records == 2  # the two WhatsApp messages
    page.set_input_files("#verify-export input[name=bundle]", str(bundle))
    page.click("#verify-export button[type=submit]")
    page.wait_for_selector("#verify-report")
    assert "export ok" in page.inner_text("#verify-report")
    page.screenshot(path=str(tmp_path / "exports.png"), full_page=True)
    assert (tmp_path / "exports.png").stat().st_size > 1000
    _no_csp_violations(page, live)


def test_retention_page_lists_classes(page: Page, live: Live, tmp_path: Path) -> None:
    _login(page, "remy", _code(live, "remy"))
    page.goto("/retention")
    assert page.locator("#classes tbody tr").count() >= 1
    assert page.locator("#propose-class").count() == 1
    page.screenshot(path=str(tmp_path / "retention.png"), full_page=True)
    assert (tmp_path / "retention.png").stat().st_size > 1000
    _no_csp_violations(page, live)
