"""Shared pieces of the WhatsApp tests: a recorder with the webhook service, signing, a mock Graph.

The mock Graph API is the one stand-in allowed (Meta cannot be reached here): a real HTTP server on
loopback that speaks the media endpoints — `GET /{version}/{media_id}` answers the JSON lookup,
`GET /files/{media_id}` the bytes, both only with the right bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from tapeline.archive.core import Archive
from tapeline.archive.models import Alarm, OutboxEvent
from tapeline.archive.records import Filters, search
from tapeline.config import Config, parse_config
from tapeline.daemon.recorder import Recorder
from tapeline.daemon.whatsapp.service import WhatsappService
from tapeline.daemon.whatsapp.signature import sign
from tests.conftest import CORPUS, config_dict, free_port

SECRET = b"tapeline-test-app-secret"
OLD_SECRET = b"tapeline-previous-secret"
VERIFY_TOKEN = "verify-me-please"  # a throw-away test value
ACCESS_TOKEN = "test-access-token"  # a throw-away test value
PHONE_ID_ALICE = "1122334455667"
PHONE_ID_BOB = "743897493242"
PHONE_ID_CAROL = "106540352242922"
WAIT_S = 20.0


def corpus(name: str) -> dict[str, Any]:
    """One corpus file, decoded (callers skip when the corpus is absent)."""
    data: dict[str, Any] = json.loads((CORPUS / name).read_text(encoding="utf-8"))
    return data


def corpus_available() -> bool:
    return (CORPUS / "pywa__message.json").exists()


def whatsapp_config(base: Path, *, graph_url: str, **extra: Any) -> Config:
    data = config_dict(base)
    secrets = base / "secrets"
    secrets.mkdir()
    (secrets / "app_secret").write_bytes(SECRET + b"\n" + OLD_SECRET + b"\n")
    (secrets / "verify_token").write_text(VERIFY_TOKEN)
    (secrets / "access_token").write_text(ACCESS_TOKEN)
    data["whatsapp"] = {
        "listen": f"127.0.0.1:{free_port()}",
        "app_secret_file": str(secrets / "app_secret"),
        "verify_token_file": str(secrets / "verify_token"),
        "access_token_file": str(secrets / "access_token"),
        "graph_base_url": graph_url,
        "media_retry_base_s": 0.05,
        **extra,
    }
    data["lines"][0]["whatsapp_phone_number_id"] = PHONE_ID_ALICE
    data["lines"][1]["whatsapp_phone_number_id"] = PHONE_ID_BOB
    data["lines"].append(
        {
            "number": "+442071230003",
            "owner": "Carol Desk",
            "team": "rates",
            "whatsapp_phone_number_id": PHONE_ID_CAROL,
        }
    )
    return parse_config(data, source="test")


@dataclass(slots=True)
class Running:
    """A recorder running in this event loop, with its WhatsApp service and an HTTP client."""

    config: Config
    recorder: Recorder
    service: WhatsappService
    client: httpx.AsyncClient

    @property
    def archive(self) -> Archive:
        assert self.recorder.archive is not None
        return self.recorder.archive

    @property
    def url(self) -> str:
        return f"http://{self.config.whatsapp.listen}/webhooks/whatsapp"

    async def post(
        self, body: bytes, *, secret: bytes | None = SECRET, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        sent = {"Content-Type": "application/json"}
        if secret is not None:
            sent["X-Hub-Signature-256"] = sign(body, secret)
        sent.update(headers or {})
        return await self.client.post(self.url, content=body, headers=sent)

    async def settle(self, predicate: Callable[[], bool] | None = None) -> None:
        """Wait until everything accepted is filed (and `predicate` holds)."""
        check = predicate or (lambda: True)
        async with asyncio.timeout(WAIT_S):
            await self.service.wait_for(lambda: self.service.idle and check())

    def records(self, **filters: Any) -> list[dict[str, Any]]:
        with self.archive.index.read() as session:
            return search(session, Filters(include_hidden=True, region="GB", **filters))

    def message(self, wamid: str) -> dict[str, Any]:
        found = [r for r in self.records() if (r["message"] or {}).get("wamid") == wamid]
        assert len(found) == 1, f"{len(found)} records for {wamid}"
        return found[0]

    def alarms(self) -> set[str]:
        with self.archive.index.read() as session:
            return set(session.execute(select(Alarm.code)).scalars())

    def events(self, type_: str) -> list[dict[str, Any]]:
        with self.archive.index.read() as session:
            rows = session.execute(select(OutboxEvent).where(OutboxEvent.type == type_))
            return [dict(r.data) for r in rows.scalars()]


@contextlib.asynccontextmanager
async def running_recorder(config: Config) -> AsyncIterator[Running]:
    service = WhatsappService(config)
    recorder = Recorder(config, services=[service])
    task = asyncio.create_task(recorder.run(), name="recorder-under-test")
    ready = asyncio.create_task(recorder.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED, timeout=WAIT_S)
    if task.done():
        ready.cancel()
        task.result()
    assert recorder.ready.is_set(), "recorder did not become ready"
    try:
        async with httpx.AsyncClient(timeout=WAIT_S) as client:
            yield Running(config, recorder, service, client)
    finally:
        recorder.request_stop()
        async with asyncio.timeout(WAIT_S):
            await task


def envelope(
    value: dict[str, Any], *, field_name: str = "messages", phone_id: str = PHONE_ID_ALICE
) -> dict[str, Any]:
    """A webhook document around one `value`."""
    meta = {"display_phone_number": "442071230001", "phone_number_id": phone_id}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1234567890987654321",
                "changes": [
                    {
                        "value": {"messaging_product": "whatsapp", "metadata": meta, **value},
                        "field": field_name,
                    }
                ],
            }
        ],
    }


def text_message(
    wamid: str, text: str, *, wa_id: str = "972987654321", ts: int = 1697043223
) -> dict[str, Any]:
    return envelope(
        {
            "contacts": [
                {
                    "profile": {"name": "Test Name"},
                    "wa_id": wa_id,
                    "user_id": "US.13491208655302741918",
                }
            ],
            "messages": [
                {
                    "from": wa_id,
                    "id": wamid,
                    "timestamp": str(ts),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
    )


def body_of(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


# --- config files ---


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_toml(config: Config, path: Path) -> None:
    data = config.model_dump(mode="json")
    lines: list[str] = []
    for section, body in data.items():
        if isinstance(body, list):
            for table in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None)
            continue
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in body.items() if v is not None)
    path.write_text("\n".join(lines) + "\n")


# --- the mock Graph API ---------------------------------------------------------------------------


@dataclass(slots=True)
class MediaFile:
    """What the mock Graph serves for one media id, and how it misbehaves."""

    data: bytes
    mime_type: str = "image/jpeg"
    lookup_failures: int = 0  # answer 500 this many times
    expired_urls: int = 0  # the first URLs handed out answer 404
    truncations: int = 0  # the first downloads are cut short
    graph_sha256: str | None = None  # override what the lookup reports
    gone: bool = False  # 404 forever
    lookups: int = 0
    downloads: int = 0


@dataclass(slots=True)
class MockGraph:
    port: int
    media: dict[str, MediaFile] = field(default_factory=dict)
    unauthorised: int = 0
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v21.0"


def _handler(graph: MockGraph) -> type[BaseHTTPRequestHandler]:  # noqa: C901  # a branch per behaviour
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # stdlib name
            del format, args

        def _send(self, status: int, body: bytes, ctype: str, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # stdlib's name
            if self.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
                graph.unauthorised += 1
                self._send(401, b'{"error":"auth"}', "application/json")
                return
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) == 2 and parts[0] == "files":
                self._download(parts[1])
            elif len(parts) == 2 and parts[0] == "v21.0":
                self._lookup(parts[1])
            else:
                self._send(404, b"{}", "application/json")

        def do_POST(self) -> None:  # stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
                graph.unauthorised += 1
                self._send(401, b'{"error":"auth"}', "application/json")
                return
            graph.sent.append((self.path, body))
            to = json.loads(body).get("to", "")
            answer = {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": str(to).lstrip("+")}],
                "messages": [
                    {"id": f"wamid.proxied.{len(graph.sent)}", "message_status": "accepted"}
                ],
            }
            self._send(200, json.dumps(answer).encode(), "application/json")

        def _lookup(self, media_id: str) -> None:
            item = graph.media.get(media_id)
            if item is None or item.gone:
                self._send(404, b'{"error":"gone"}', "application/json")
                return
            item.lookups += 1
            if item.lookups <= item.lookup_failures:
                self._send(500, b'{"error":"busy"}', "application/json")
                return
            sha = item.graph_sha256 or hashlib.sha256(item.data).hexdigest()
            body = {
                "url": f"http://127.0.0.1:{graph.port}/files/{media_id}?n={item.lookups}",
                "mime_type": item.mime_type,
                "sha256": sha,
                "file_size": len(item.data),
                "id": media_id,
                "messaging_product": "whatsapp",
            }
            self._send(200, json.dumps(body).encode(), "application/json")

        def _download(self, media_id: str) -> None:
            item = graph.media.get(media_id)
            if item is None:
                self._send(404, b"", "text/plain")
                return
            item.downloads += 1
            if item.downloads <= item.expired_urls:
                self._send(404, b"expired", "text/plain")
                return
            if item.downloads <= item.expired_urls + item.truncations:
                self._send(200, item.data[: len(item.data) // 2], item.mime_type, len(item.data))
                self.close_connection = True
                return
            self._send(200, item.data, item.mime_type)

    return Handler


@contextlib.contextmanager
def mock_graph() -> Iterator[MockGraph]:
    graph = MockGraph(port=free_port())
    server = ThreadingHTTPServer(("127.0.0.1", graph.port), _handler(graph))
    thread = threading.Thread(target=server.serve_forever, name="mock-graph", daemon=True)
    thread.start()
    try:
        yield graph
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
