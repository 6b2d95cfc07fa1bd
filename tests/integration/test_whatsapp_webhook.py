"""The webhook listener inside a real recorder, driven by a real HTTP client (httpx)."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tapeline.archive.audit import Actor
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.archive.users import add_user
from tapeline.cli import main
from tests.integration.whatsapp_support import (
    OLD_SECRET,
    PHONE_ID_ALICE,
    VERIFY_TOKEN,
    Running,
    body_of,
    corpus,
    corpus_available,
    envelope,
    running_recorder,
    text_message,
    whatsapp_config,
    write_toml,
)

NO_CORPUS = "corpus ../shared/corpus absent (pywa__*.json); see corpus/SOURCES.md"

# Reference whatsapp.md §3, vector S2: these exact bytes, signed with the test secret.
S2_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
    b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881",'
    b'"phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Jos\\u00e9"},'
    b'"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.TEST1",'
    b'"timestamp":"1749416383","type":"text","text":{"body":"caf\\u00e9 \\ud83d\\ude00 a\\/b"}}]},'
    b'"field":"messages"}]}]}'
)
S2_SIGNATURE = "sha256=0ab55f4595c06d60a8a7ba0baea59714c52dce8b31d67ad17bab9943097a6aa8"


@pytest.fixture
async def wa(tmp_path: Path) -> Any:
    config = whatsapp_config(tmp_path, graph_url="http://127.0.0.1:9/v21.0", max_body_bytes=65536)
    async with running_recorder(config) as running:
        yield running


EXPECTED_TYPES = {
    "text": ("text", "Body Text"),
    "image": ("image", None),
    "video": ("video", "caption"),
    "document": ("document", "caption"),
    "audio": ("audio", None),
    "voice": ("audio", None),
    "static_sticker": ("sticker", None),
    "reaction": ("reaction", "😮"),
    "unreaction_empty": ("reaction", None),
    "current_location": ("location", "12.25089,43.90539"),
    "chosen_location": ("location", "Facebook HQ — 1 Hacker Way, Menlo Park, CA 94025"),
    "contacts": ("contacts", "Chandler Bing, Monica, Rachel Green"),
    "order": ("order", ""),
    "unsupported": ("unsupported", None),
    "reply": ("text", "replied text"),
    "forwarded_many_times": ("text", "text forwarded many times"),
    "interactive_message_with_err": ("interactive", None),
    "referral": ("text", "BODY"),
}


@pytest.mark.skipif(not corpus_available(), reason=NO_CORPUS)
async def test_corpus_messages_are_filed_with_type_text_parties_and_time(wa: Running) -> None:
    payloads = corpus("pywa__message.json")
    for key in EXPECTED_TYPES:
        doc = copy.deepcopy(payloads[key])
        # pywa reuses one wamid across fixtures; give each its own so none is deduplicated.
        doc["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.corpus.{key}"
        response = await wa.post(body_of(doc))
        assert response.status_code == 200, key
    await wa.settle()
    for key, (type_, text) in EXPECTED_TYPES.items():
        record = wa.message(f"wamid.corpus.{key}")
        source = payloads[key]["entry"][0]["changes"][0]["value"]["messages"][0]
        assert record["channel"] == "whatsapp"
        assert record["kind"] == "message"
        assert record["direction"] == "inbound"
        assert record["message"]["type"] == type_, key
        assert record["message"]["text"] == text, key
        assert record["line"]["owner"] == "Alice Trader"
        assert record["counterparty"]["identifier"] == "+972987654321"
        assert "US.13491208655302741918" in record["counterparty"]["identifiers"]
        stamp = int(source["timestamp"])
        assert record["started_at"].startswith(
            __import__("datetime")
            .datetime.fromtimestamp(stamp, __import__("datetime").UTC)
            .isoformat()[:19]
        )
    image = wa.message("wamid.corpus.image")["message"]["media"]
    assert [(m["media_id"], m["mime_type"]) for m in image] == [("65463453", "image/jpeg")]
    assert "whatsapp.unhandled_payload" in wa.alarms()  # the value-level 131000 error is flagged


async def test_verification_handshake_answers_only_the_right_token(wa: Running) -> None:
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "x1158"}
    response = await wa.client.get(wa.url, params=good)
    assert response.status_code == 200
    assert response.text == "x1158"
    assert response.headers["content-type"].startswith("text/plain")
    wrong = {**good, "hub.verify_token": "nope"}
    assert (await wa.client.get(wa.url, params=wrong)).status_code == 403
    assert (await wa.client.get(wa.url, params={**good, "hub.mode": "x"})).status_code == 403
    no_challenge = {k: v for k, v in good.items() if k != "hub.challenge"}
    assert (await wa.client.get(wa.url, params=no_challenge)).status_code == 400
    base = wa.url.rsplit("/webhooks", 1)[0]
    for path in ("/docs", "/openapi.json", "/metrics", "/webhooks/other", "/"):
        assert (await wa.client.get(base + path)).status_code == 404


async def test_missing_and_forged_signatures_are_refused_unstored_and_alarmed(wa: Running) -> None:
    body = body_of(text_message("wamid.forged", "should not be kept"))
    missing = await wa.post(body, secret=None)
    assert missing.status_code == 401
    empty = await wa.post(body, secret=None, headers={"X-Hub-Signature-256": "sha256="})
    assert empty.status_code == 401
    sha1 = await wa.post(body, secret=None, headers={"X-Hub-Signature": "sha1=abcd"})
    assert sha1.status_code == 401
    forged = await wa.post(body, secret=b"not-the-secret")
    assert forged.status_code == 403
    await wa.settle()
    assert wa.records() == []
    assert {"whatsapp.signature_missing", "whatsapp.signature_mismatch"} <= wa.alarms()
    assert list((wa.config.storage.spool / "whatsapp").glob("*.tpj")) == [] or all(
        p.stat().st_size < 200 for p in (wa.config.storage.spool / "whatsapp").glob("*.tpj")
    )


async def test_second_rotated_secret_is_accepted(wa: Running) -> None:
    body = body_of(text_message("wamid.rotated", "signed with the old secret"))
    assert (await wa.post(body, secret=OLD_SECRET)).status_code == 200
    await wa.settle()
    assert wa.message("wamid.rotated")["message"]["text"] == "signed with the old secret"


async def test_raw_bytes_with_unicode_escapes_verify_and_reserialised_bodies_do_not(
    wa: Running,
) -> None:
    headers = {"X-Hub-Signature-256": S2_SIGNATURE.upper().replace("SHA256=", "sha256=")}
    assert (await wa.post(S2_BODY, secret=None, headers=headers)).status_code == 200
    parsed = json.loads(S2_BODY)
    for other in (
        json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode(),
        json.dumps(parsed, separators=(",", ":")).encode(),
        json.dumps(parsed).encode(),
    ):
        forged = await wa.post(other, secret=None, headers={"X-Hub-Signature-256": S2_SIGNATURE})
        assert forged.status_code == 403
    await wa.settle()
    record = wa.message("wamid.TEST1")
    assert record["message"]["text"] == "café 😀 a/b"
    assert record["counterparty"]["display_name"] == "José"
    assert record["line"]["owner"] == "Carol Desk"


async def test_body_over_the_limit_is_refused_and_alarmed_and_at_the_limit_accepted(
    wa: Running,
) -> None:
    limit = wa.config.whatsapp.max_body_bytes
    doc = text_message("wamid.big", "x")
    base = body_of(doc)
    pad = limit - len(base)
    exact = body_of(text_message("wamid.big", "x" * (pad + 1)))
    assert len(exact) == limit
    over = body_of(text_message("wamid.big2", "x" * (pad + 2)))
    assert (await wa.post(over)).status_code == 413
    assert "whatsapp.body_too_large" in wa.alarms()
    assert (await wa.post(exact)).status_code == 200
    await wa.settle()
    assert len(wa.message("wamid.big")["message"]["text"]) == pad + 1
    assert not [r for r in wa.records() if (r["message"] or {}).get("wamid") == "wamid.big2"]


async def test_wrong_content_type_is_415(wa: Running) -> None:
    body = body_of(text_message("wamid.form", "form"))
    response = await wa.post(body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    charset = await wa.post(body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert charset.status_code == 200


async def test_invalid_json_with_valid_signature_is_kept_raw_answered_200_and_alarmed(
    wa: Running,
) -> None:
    body = b'{"object": "whatsapp_business_account", "entry": [ this is not json'
    assert (await wa.post(body)).status_code == 200
    assert (await wa.post(body)).status_code == 200  # Meta's retry of the same bytes
    await wa.settle()
    [kept] = wa.records(kind="capture_failure")
    assert kept["outcome"] == "unparsed_webhook"
    assert "whatsapp.invalid_payload" in wa.alarms()
    from sqlalchemy import select  # noqa: PLC0415

    from tapeline.archive.models import StoredObject  # noqa: PLC0415

    with wa.archive.index.read() as session:
        obj = session.execute(
            select(StoredObject).where(
                StoredObject.interaction_id == kept["id"], StoredObject.kind == "webhook_body"
            )
        ).scalar_one()
        assert obj.wrapped_key is not None
        assert wa.archive.vault.load(obj.id, obj.wrapped_key, obj.sha256) == body


async def test_ten_identical_deliveries_make_one_record(wa: Running) -> None:
    body = body_of(text_message("wamid.dup", "only once"))
    responses = await asyncio.gather(*(wa.post(body) for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    await wa.settle()
    assert len([r for r in wa.records() if r["message"]["wamid"] == "wamid.dup"]) == 1
    assert len(wa.events("message.received")) == 1


def _status(wamid: str, status: str, ts: int, **extra: Any) -> bytes:
    item = {"id": wamid, "status": status, "timestamp": str(ts), "recipient_id": "972987654321"}
    return body_of(envelope({"statuses": [{**item, **extra}]}))


async def test_statuses_out_of_order_never_go_backwards_and_failed_keeps_errors(
    wa: Running,
) -> None:
    for status, ts in (("read", 30), ("sent", 10), ("delivered", 20), ("read", 30)):
        assert (await wa.post(_status("wamid.out1", status, 1698266900 + ts))).status_code == 200
    errors = [{"code": 130472, "title": "User's number is part of an experiment"}]
    for status, ts, extra in (
        ("sent", 10, {}),
        ("failed", 20, {"errors": errors}),
        ("delivered", 15, {}),
    ):
        assert (
            await wa.post(_status("wamid.out2", status, 1698266900 + ts, **extra))
        ).status_code == 200
    await wa.settle()
    first = wa.message("wamid.out1")
    assert first["message"]["status"] == "read"
    assert first["direction"] == "outbound"
    assert first["tags"] == ["unproxied_outbound"]
    second = wa.message("wamid.out2")["message"]
    assert second["status"] == "failed"
    assert second["errors"][0]["code"] == 130472
    statuses = wa.events("message.status")
    assert len([e for e in statuses if e["interaction_id"] == first["id"]]) == 3  # dup read dropped
    assert "whatsapp.unproxied_outbound" in wa.alarms()


async def test_a_batch_of_entries_and_changes_is_taken_whole(wa: Running) -> None:
    def change(n: int) -> dict[str, Any]:
        messages = [
            {
                "from": "447700900123",
                "id": f"wamid.batch.{n}.{i}",
                "timestamp": "1697043223",
                "type": "text",
                "text": {"body": f"batch {n}.{i}"},
            }
            for i in range(3)
        ]
        meta = {"display_phone_number": "442071230001", "phone_number_id": PHONE_ID_ALICE}
        value = {"messaging_product": "whatsapp", "metadata": meta, "messages": messages}
        if n == 0:
            value["statuses"] = [
                {
                    "id": "wamid.batch.out",
                    "status": "sent",
                    "timestamp": "1697043223",
                    "recipient_id": "447700900123",
                }
            ]
        return {"value": value, "field": "messages"}

    doc = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "waba1", "changes": [change(0), change(1)]},
            {"id": "waba2", "changes": [change(2)]},
        ],
    }
    assert (await wa.post(body_of(doc))).status_code == 200
    await wa.settle()
    texts = sorted(r["message"]["text"] for r in wa.records() if r["message"]["type"] == "text")
    assert texts == sorted(f"batch {n}.{i}" for n in range(3) for i in range(3))
    assert wa.message("wamid.batch.out")["message"]["status"] == "sent"
    assert all(r["counterparty"]["identifier"] == "+447700900123" for r in wa.records())


async def test_bsuid_only_user_is_a_counterparty(wa: Running) -> None:
    doc = envelope(
        {
            "contacts": [
                {"profile": {"name": "No Phone", "username": "nophone"}, "user_id": "US.777"}
            ],
            "messages": [
                {
                    "from_user_id": "US.777",
                    "id": "wamid.bsuid",
                    "timestamp": "1753851315",
                    "type": "text",
                    "text": {"body": "hi"},
                }
            ],
        }
    )
    assert (await wa.post(body_of(doc))).status_code == 200
    await wa.settle()
    record = wa.message("wamid.bsuid")
    assert record["counterparty"]["identifier"] == "US.777"
    assert wa.records(party="bsuid:US.777")[0]["id"] == record["id"]


async def test_edits_revokes_and_reactions_are_new_records_linked_to_the_original(
    wa: Running,
) -> None:
    assert (await wa.post(body_of(text_message("wamid.orig", "original words")))).status_code == 200
    for item in (
        {
            "type": "edit",
            "edit": {
                "original_message_id": "wamid.orig",
                "message": {"type": "text", "text": {"body": "edited words"}},
            },
        },
        {"type": "revoke", "revoke": {"original_message_id": "wamid.orig"}},
        {"type": "reaction", "reaction": {"message_id": "wamid.orig", "emoji": "👍"}},
    ):
        wamid = f"wamid.{item['type']}"
        message = {"from": "972987654321", "id": wamid, "timestamp": "1697043300", **item}
        assert (await wa.post(body_of(envelope({"messages": [message]})))).status_code == 200
    await wa.settle()
    assert wa.message("wamid.orig")["message"]["text"] == "original words"
    assert wa.message("wamid.edit")["message"]["text"] == "edited words"
    assert wa.message("wamid.revoke")["message"]["type"] == "revoke"
    assert wa.message("wamid.reaction")["message"]["text"] == "👍"


async def test_echoes_are_outbound_and_history_placeholders_are_completed(wa: Running) -> None:
    echo = {
        "from": "442071230001",
        "to": "16505551234",
        "id": "wamid.echo1",
        "timestamp": "1739321024",
        "type": "text",
        "text": {"body": "Here's the info you requested!"},
    }
    doc = envelope({"message_echoes": [echo]}, field_name="smb_message_echoes")
    assert (await wa.post(body_of(doc))).status_code == 200
    history = {
        "history": [
            {
                "metadata": {"phase": 0, "chunk_order": 1, "progress": 55},
                "threads": [
                    {
                        "id": "16505551234",
                        "messages": [
                            {
                                "from": "442071230001",
                                "id": "wamid.h1",
                                "timestamp": "1739230955",
                                "type": "text",
                                "text": {"body": "old reply"},
                                "history_context": {"status": "READ"},
                            },
                            {
                                "from": "442071230001",
                                "id": "wamid.h2",
                                "timestamp": "1739230970",
                                "type": "media_placeholder",
                                "history_context": {"status": "PLAYED"},
                            },
                            {
                                "from": "16505551234",
                                "id": "wamid.h3",
                                "timestamp": "1739230970",
                                "type": "text",
                                "text": {"body": "Thanks!"},
                                "history_context": {"status": "READ"},
                            },
                        ],
                    }
                ],
            }
        ]
    }
    assert (await wa.post(body_of(envelope(history, field_name="history")))).status_code == 200
    follow_up = {
        "messages": [
            {
                "from": "16505551234",
                "id": "wamid.h2",
                "timestamp": "1738796547",
                "type": "image",
                "image": {
                    "caption": "Black Prince echeveria",
                    "mime_type": "image/jpeg",
                    "sha256": "3f9d94d399fa61c191bc1d4ca71375a035cd9b9f5b1128e1f0963a415c16b0cc",
                    "id": "24230790383178626",
                },
            }
        ]
    }
    assert (await wa.post(body_of(envelope(follow_up, field_name="history")))).status_code == 200
    await wa.settle()
    sent = wa.message("wamid.echo1")
    assert sent["direction"] == "outbound"
    assert sent["counterparty"]["identifier"] == "+16505551234"
    assert len(wa.events("message.sent")) >= 1
    assert wa.message("wamid.h1")["direction"] == "outbound"
    assert wa.message("wamid.h3")["direction"] == "inbound"
    completed = wa.message("wamid.h2")["message"]
    assert completed["type"] == "image"
    assert completed["text"] == "Black Prince echeveria"
    assert [m["media_id"] for m in completed["media"]] == ["24230790383178626"]


@pytest.mark.skipif(not corpus_available(), reason=NO_CORPUS)
async def test_whatsapp_calls_are_interactions_with_durations(wa: Running) -> None:
    connect = corpus("pywa__call_connect.json")["user_initiated"]
    assert (await wa.post(body_of(connect))).status_code == 200
    terminate = copy.deepcopy(corpus("pywa__call_terminate.json")["call_terminate"])
    call = terminate["entry"][0]["changes"][0]["value"]["calls"][0]
    call["id"] = "wacid.xxxx="  # the connect's call
    assert (await wa.post(body_of(terminate))).status_code == 200
    # terminate before connect: filed from the terminate alone
    early = copy.deepcopy(corpus("pywa__call_terminate.json")["call_terminate"])
    assert (await wa.post(body_of(early))).status_code == 200
    await wa.settle()
    calls = {r["source"]["sip_call_id"]: r for r in wa.records(kind="whatsapp_call")}
    first = calls["wacid.xxxx="]
    assert first["direction"] == "inbound"
    assert first["duration_ms"] == 120_000
    assert first["outcome"] == "completed"
    assert first["line"]["owner"] == "Bob Sales"
    assert first["counterparty"]["identifier"] == "+972987654321"
    assert calls["wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"]["duration_ms"] == 120_000


async def test_unknown_business_number_is_filed_flagged_and_alarmed(wa: Running) -> None:
    doc = text_message("wamid.unknownline", "to nobody")
    doc["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    assert (await wa.post(body_of(doc))).status_code == 200
    await wa.settle()
    record = wa.message("wamid.unknownline")
    assert record["line"] is None
    assert record["tags"] == ["unknown_line"]
    assert "whatsapp.unknown_line" in wa.alarms()


async def test_query_by_party_returns_calls_and_messages_in_one_timeline(
    wa: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call_at = datetime(2023, 10, 11, 16, 0, tzinfo=UTC)
    await asyncio.to_thread(
        file_synthetic_call,
        wa.archive,
        line="+442071230001",
        counterparty="+972987654321",
        started_at=call_at,
        seconds=1.0,
    )
    assert (await wa.post(body_of(text_message("wamid.pair", "after the call")))).status_code == 200
    await wa.settle()
    config_file = tmp_path / "tapeline.toml"
    await asyncio.to_thread(write_toml, wa.config, config_file)
    password = tmp_path / "password"
    await asyncio.to_thread(password.write_text, "a-long-reviewer-password\n")
    await asyncio.to_thread(
        add_user,
        wa.archive,
        name="rita",
        roles=["reviewer"],
        teams=[],
        password="a-long-reviewer-password",  # a throw-away test account
        by=Actor.system("cli"),
    )
    for party in ("+972987654321", "bsuid:US.13491208655302741918"):
        argv = ["query", "-c", str(config_file), "--party", party, "--json"]
        argv += ["--as", "rita", "--password-file", str(password)]
        assert await asyncio.to_thread(main, argv) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(r["kind"], r["channel"]) for r in lines] == [
            ("message", "whatsapp"),
            ("call", "voice"),
        ], party
        assert lines[0]["counterparty"]["id"] == lines[1]["counterparty"]["id"]
