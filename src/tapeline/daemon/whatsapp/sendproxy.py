"""The optional send proxy: business systems send through us, so what they send is captured.

`POST /whatsapp/{version}/{phone_number_id}/messages` with `Authorization: Bearer <client token>`
(tokens from `whatsapp.send_proxy_tokens_file`, one per line, optionally `name token`). The request
is forwarded to the Graph API with the appliance's own access token (so clients never hold it);
Graph's answer is returned unchanged, and when it carries a wamid the request and the answer are
filed as an outbound message, whose later statuses then find it. The client's `{version}` is not
used: the configured `whatsapp.graph_base_url` decides the API version.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from tapeline.daemon.whatsapp.ingest import Ingest, SentMessage
from tapeline.errors import StorageError

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1024 * 1024
HTTP_BAD_GATEWAY = 502


@dataclass(frozen=True, slots=True)
class ProxyClient:
    """A business system allowed to send through the proxy."""

    name: str
    token: str


def parse_clients(text: str) -> list[ProxyClient]:
    """`name token` or `token` per line; blank lines and `#` comments skipped."""
    clients = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, _, token = stripped.rpartition(" ")
        clients.append(ProxyClient(name=name.strip() or f"client-{number}", token=token))
    return clients


class SendProxy:
    """Forwards and files outbound messages."""

    def __init__(
        self,
        *,
        clients: list[ProxyClient],
        base_url: str,
        access_token: str | None,
        ingest: Ingest,
        timeout_s: float,
    ) -> None:
        self._clients = clients
        self._base = base_url.rstrip("/")
        self._token = access_token
        self._ingest = ingest
        self._timeout = timeout_s

    def _client(self, header: str | None) -> ProxyClient | None:
        value = (header or "").strip()
        if not value.lower().startswith("bearer "):
            return None
        given = value[len("bearer ") :].strip().encode()
        found = None
        for client in self._clients:
            if hmac.compare_digest(client.token.encode(), given):
                found = client
        return found

    async def handle(self, request: Request) -> Response:
        """Authenticate, forward, file, answer."""
        client = self._client(request.headers.get("authorization"))
        if client is None:
            return PlainTextResponse("unauthorised", status_code=401)
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            return PlainTextResponse("payload too large", status_code=413)
        phone_number_id = str(request.path_params["phone_number_id"])
        try:
            sent: Any = json.loads(body)
        except (ValueError, RecursionError):
            return PlainTextResponse("request is not JSON", status_code=400)
        if not isinstance(sent, dict):
            return PlainTextResponse("request is not a JSON object", status_code=400)
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                answer = await http.post(
                    f"{self._base}/{phone_number_id}/messages", content=body, headers=headers
                )
        except httpx.HTTPError as exc:
            log.warning("send proxy: Graph unreachable: %s", exc.__class__.__name__)
            return PlainTextResponse("Graph API unreachable", status_code=HTTP_BAD_GATEWAY)
        await self._file(client, phone_number_id, sent, body, answer)
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type", "application/json"),
        )

    async def _file(
        self,
        client: ProxyClient,
        phone_number_id: str,
        sent: dict[str, Any],
        body: bytes,
        answer: httpx.Response,
    ) -> None:
        try:
            reply = answer.json()
            wamid = str(reply["messages"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            log.info("send proxy: Graph answered %d without a wamid", answer.status_code)
            return
        message = SentMessage(
            phone_number_id=phone_number_id,
            wamid=wamid,
            request=sent,
            raw_request=body,
            raw_response=answer.content,
            client=client.name,
            accepted_status=str(reply["messages"][0].get("message_status", "accepted")),
        )
        try:
            await asyncio.to_thread(self._ingest.file_sent, message)
        except StorageError:
            log.exception("send proxy: message %s sent but not filed", wamid)
