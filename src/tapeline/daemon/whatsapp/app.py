"""The webhook listener's ASGI app: `GET`/`POST /webhooks/whatsapp` and the send proxy only.

Order of a POST: size (413, never truncated), content type (415), signature over the raw bytes
(401 missing, 403 mismatch: nothing stored, alarmed), then the journal (fsynced; 503 if it fails),
and only then 200. Parsing happens later, from the journal. The verify token and app secrets are
never logged.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tapeline.archive.models import utcnow
from tapeline.daemon.whatsapp.signature import Verdict, check
from tapeline.daemon.whatsapp.spool import Delivery, Ticket
from tapeline.errors import StorageError

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/webhooks/whatsapp"
SEND_PATH = "/whatsapp/{version}/{phone_number_id}/messages"
JSON_TYPES = frozenset({"application/json", "text/json"})


@dataclass(slots=True, kw_only=True)
class WebhookHandlers:
    """What the app needs from its service: secrets, the journal, the ingest queue, alarms."""

    secrets: list[bytes]
    verify_token: str | None
    max_body_bytes: int
    commit: Callable[[Delivery], Awaitable[Ticket]]
    accepted: Callable[[Delivery, Ticket], None]
    alarm: Callable[[str, str], Awaitable[None]]
    send: Callable[[Request], Awaitable[Response]] | None = None


class _TooLargeError(Exception):
    pass


def create_webhook_app(handlers: WebhookHandlers) -> Starlette:
    """The listener's app (no docs, no debug, nothing else routed)."""

    async def verify(request: Request) -> Response:
        return await _verify(request, handlers)

    async def receive(request: Request) -> Response:
        refused = await _precheck(request, handlers)
        if refused is not None:
            return refused
        try:
            body = await _read_limited(request, handlers.max_body_bytes)
        except _TooLargeError:
            return await _too_large(handlers)
        peer = request.client.host if request.client else None
        refused = await _check_signature(request, body, peer, handlers)
        if refused is not None:
            return refused
        delivery = Delivery(
            received_at=utcnow(),
            remote=peer,
            content_type=request.headers.get("content-type"),
            body=body,
        )
        try:
            ticket = await handlers.commit(delivery)
        except StorageError:
            await handlers.alarm("whatsapp.journal", "webhook journal cannot be written: 503")
            return PlainTextResponse("try again", status_code=503)
        handlers.accepted(delivery, ticket)
        return PlainTextResponse("OK")

    routes = [
        Route(WEBHOOK_PATH, verify, methods=["GET"]),
        Route(WEBHOOK_PATH, receive, methods=["POST"]),
    ]
    if handlers.send is not None:
        routes.append(Route(SEND_PATH, handlers.send, methods=["POST"]))
    return Starlette(routes=routes)


async def _verify(request: Request, handlers: WebhookHandlers) -> Response:
    params = request.query_params
    token = params.get("hub.verify_token", "")
    expected = handlers.verify_token
    if params.get("hub.mode") != "subscribe" or expected is None:
        return PlainTextResponse("forbidden", status_code=403)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        await handlers.alarm("whatsapp.verify_token", "webhook verification with a wrong token")
        return PlainTextResponse("forbidden", status_code=403)
    challenge = params.get("hub.challenge")
    if challenge is None:
        return PlainTextResponse("missing hub.challenge", status_code=400)
    return PlainTextResponse(challenge)


async def _precheck(request: Request, handlers: WebhookHandlers) -> Response | None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > handlers.max_body_bytes:
        return await _too_large(handlers)
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in JSON_TYPES:
            return PlainTextResponse("unsupported media type", status_code=415)
    return None


async def _check_signature(
    request: Request, body: bytes, peer: str | None, handlers: WebhookHandlers
) -> Response | None:
    verdict = check(body, request.headers.get("x-hub-signature-256"), handlers.secrets)
    if verdict is Verdict.MISSING:
        await handlers.alarm("whatsapp.signature_missing", f"unsigned webhook from {peer}")
        return PlainTextResponse("signature required", status_code=401)
    if verdict is Verdict.MISMATCH:
        await handlers.alarm("whatsapp.signature_mismatch", f"forged webhook from {peer}")
        return PlainTextResponse("signature mismatch", status_code=403)
    return None


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


async def _too_large(handlers: WebhookHandlers) -> Response:
    await handlers.alarm(
        "whatsapp.body_too_large", f"webhook body over {handlers.max_body_bytes} bytes refused"
    )
    return PlainTextResponse("payload too large", status_code=413)
