"""A seeded appliance for the page tests: accounts of every role, calls and WhatsApp messages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tapeline.archive import totp
from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.filing import MediaIn
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.archive.users import add_user
from tapeline.config import Config
from tapeline.web.app import create_app
from tapeline.web.ratelimit import LoginLimiter
from tests.asgiclient import AsgiClient

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
PASSWORD = "a long enough password"
SYSTEM = Actor.system("test")
ALICE_LINE = "+442071230001"  # team rates
BOB_LINE = "+442071230002"  # team equities
CLIENT = "+447700900123"
# A 1x1 PNG: what a WhatsApp image attachment looks like once fetched.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)
ACCOUNTS: tuple[tuple[str, list[str], list[str]], ...] = (
    ("ada", ["admin"], []),
    ("rita", ["reviewer"], []),
    ("sam", ["supervisor"], ["rates"]),
    ("audrey", ["auditor"], []),
    ("lena", ["legal"], []),
    ("leo", ["legal"], []),
    ("remy", ["records-manager"], []),
    ("rosa", ["records-manager"], []),
    ("eve", ["export-officer"], []),
    # Every role the API's write routes need, so the fuzz test reaches their handlers.
    ("max", ["reviewer", "legal", "export-officer"], []),
)
# Roles that approve or export need a second factor (C-74); these accounts get one.
WITH_TOTP = frozenset({"ada", "lena", "leo", "remy", "rosa", "eve", "max"})


@dataclass
class Site:
    """The app, its archive, the seeded ids and the accounts' TOTP secrets."""

    archive: Archive
    call_id: str  # Alice (rates) with CLIENT
    other_call_id: str  # Bob (equities) with CLIENT
    message_ids: list[str]  # WhatsApp with CLIENT, oldest first: Bob, Bob (image), Alice
    secrets: dict[str, bytes] = field(default_factory=dict)
    clock: list[float] = field(default_factory=lambda: [0.0])
    clients: list[AsgiClient] = field(default_factory=list)

    def client(self) -> AsgiClient:
        """A new browser (own cookies) on the same app."""
        limiter = LoginLimiter(clock=lambda: self.clock[0])
        made = AsgiClient(create_app(self.archive, limiter=limiter))
        self.clients.append(made)
        return made

    def login(self, name: str, client: AsgiClient | None = None) -> AsgiClient:
        """A browser signed in as `name` (with its TOTP code when it has one)."""
        browser = client or self.client()
        code = totp.totp(self.secrets[name], time.time()) if name in self.secrets else ""
        answer = browser.post("/login", data={"username": name, "password": PASSWORD, "totp": code})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/"
        return browser


def csrf_of(client: AsgiClient) -> str:
    """The session's CSRF token, as the page embeds it."""
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/account").text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def site(config: Config) -> Iterator[Site]:
    archive = Archive.open(config)
    secrets: dict[str, bytes] = {}
    for name, roles, teams in ACCOUNTS:
        secret = add_user(
            archive,
            name=name,
            roles=roles,
            teams=teams,
            password=PASSWORD,
            by=SYSTEM,
            with_totp=name in WITH_TOTP,
        )
        if secret is not None:
            secrets[name] = secret
    call = file_synthetic_call(archive, line=ALICE_LINE, counterparty=CLIENT, started_at=T0)
    other = file_synthetic_call(
        archive, line=BOB_LINE, counterparty=CLIENT, started_at=T0 + timedelta(hours=1)
    )
    messages = [
        file_synthetic_message(
            archive,
            line=BOB_LINE,
            counterparty=CLIENT,
            started_at=T0 + timedelta(minutes=10),
            text="Morning, can you price the 5y?",
            wamid="wamid.A",
            counterparty_name="Carol Client",
        ),
        file_synthetic_message(
            archive,
            line=BOB_LINE,
            counterparty=CLIENT,
            started_at=T0 + timedelta(minutes=11),
            text="Here is the term sheet",
            wamid="wamid.B",
            direction="outbound",
            status="read",
            media=[MediaIn(data=PNG, media_id="m1", mime_type="image/png")],
        ),
        file_synthetic_message(
            archive,
            line=ALICE_LINE,
            counterparty=CLIENT,
            started_at=T0 + timedelta(minutes=12),
            text="100% done_deal",
            wamid="wamid.C",
        ),
    ]
    made = Site(
        archive=archive,
        call_id=call,
        other_call_id=other,
        message_ids=messages,
        secrets=secrets,
    )
    try:
        yield made
    finally:
        for client in made.clients:
            client.app.state.web.exports.close()  # type: ignore[attr-defined]  # a FastAPI app
            client.close()
        archive.close()
