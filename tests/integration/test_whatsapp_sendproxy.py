"""The send proxy: authenticated clients send through the recorder, and what they send is filed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.whatsapp_support import (
    PHONE_ID_ALICE,
    MockGraph,
    Running,
    body_of,
    envelope,
    mock_graph,
    running_recorder,
    whatsapp_config,
)

CLIENT_TOKEN = "crm-client-token-0123456789"  # a throw-away test value


@pytest.fixture
def graph() -> Iterator[MockGraph]:
    with mock_graph() as server:
        yield server


@pytest.fixture
async def wa(tmp_path: Path, graph: MockGraph) -> Any:
    tokens = tmp_path / "send_tokens"
    tokens.write_text(f"# clients of the send proxy\ncrm {CLIENT_TOKEN}\n")
    config = whatsapp_config(tmp_path, graph_url=graph.base_url, send_proxy_tokens_file=str(tokens))
    async with running_recorder(config) as running:
        yield running


def proxy_url(wa: Running) -> str:
    return f"http://{wa.config.whatsapp.listen}/whatsapp/v21.0/{PHONE_ID_ALICE}/messages"


async def test_send_proxy_refuses_clients_without_a_valid_token(
    wa: Running, graph: MockGraph
) -> None:
    request = {"messaging_product": "whatsapp", "to": "16505551234", "type": "text"}
    assert (await wa.client.post(proxy_url(wa), json=request)).status_code == 401
    wrong = {"Authorization": "Bearer not-a-client"}
    assert (await wa.client.post(proxy_url(wa), json=request, headers=wrong)).status_code == 401
    assert graph.sent == []


async def test_sent_messages_are_forwarded_with_our_token_filed_and_their_statuses_apply(
    wa: Running, graph: MockGraph
) -> None:
    request = {
        "messaging_product": "whatsapp",
        "to": "16505551234",
        "type": "text",
        "text": {"body": "Your trade is confirmed"},
    }
    raw = json.dumps(request).encode()
    response = await wa.client.post(
        proxy_url(wa),
        content=raw,
        headers={"Authorization": f"Bearer {CLIENT_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["messages"][0]["id"] == "wamid.proxied.1"
    assert graph.sent == [(f"/v21.0/{PHONE_ID_ALICE}/messages", raw)]
    record = wa.message("wamid.proxied.1")
    assert record["direction"] == "outbound"
    assert record["message"]["text"] == "Your trade is confirmed"
    assert record["message"]["status"] == "accepted"
    assert record["line"]["owner"] == "Alice Trader"
    assert record["counterparty"]["identifier"] == "+16505551234"
    status = {
        "id": "wamid.proxied.1",
        "status": "delivered",
        "timestamp": "1900000000",
        "recipient_id": "16505551234",
    }
    assert (await wa.post(body_of(envelope({"statuses": [status]})))).status_code == 200
    await wa.settle()
    delivered = wa.message("wamid.proxied.1")
    assert delivered["message"]["status"] == "delivered"
    assert delivered["tags"] == []
    assert "whatsapp.unproxied_outbound" not in wa.alarms()
    assert len(wa.events("message.sent")) == 1
