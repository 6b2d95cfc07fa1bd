"""The payload parser on the corpus, on reference vectors, and on arbitrary input."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.daemon.whatsapp.payload import (
    CallItem,
    MessageItem,
    Notice,
    PayloadError,
    StatusItem,
    parse_body,
    parse_document,
)
from tests.conftest import CORPUS

NO_CORPUS = "corpus ../shared/corpus absent (pywa__*.json); see corpus/SOURCES.md"
HAVE_CORPUS = (CORPUS / "pywa__message.json").exists()


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / name).read_text(encoding="utf-8"))
    return data


@pytest.mark.skipif(not HAVE_CORPUS, reason=NO_CORPUS)
def test_every_corpus_message_parses_to_a_message_with_its_type() -> None:
    for key, doc in load("pywa__message.json").items():
        items = parse_document(doc)
        messages = [i for i in items if isinstance(i, MessageItem)]
        assert len(messages) == 1, key
        raw = doc["entry"][0]["changes"][0]["value"]["messages"][0]
        assert messages[0].type == raw["type"]
        assert messages[0].wamid == raw["id"]
        assert messages[0].party.wa_id == "972987654321"
        assert messages[0].phone_number_id == "1122334455667"
        assert messages[0].timestamp == datetime.fromtimestamp(int(raw["timestamp"]), UTC)


@pytest.mark.skipif(not HAVE_CORPUS, reason=NO_CORPUS)
def test_corpus_media_reactions_and_context() -> None:
    docs = load("pywa__message.json")
    [video] = parse_document(docs["video"])
    assert isinstance(video, MessageItem)
    assert video.media is not None
    assert (video.media.media_id, video.media.mime_type) == ("765756756", "video/mp4")
    assert video.raw["context"] == {"forwarded": True}
    [reaction] = parse_document(docs["reaction"])
    assert isinstance(reaction, MessageItem)
    assert (reaction.text, reaction.related_wamid) == ("😮", "wamid.yzxyzx=")
    [removed] = parse_document(docs["unreaction_no_emoji"])
    assert isinstance(removed, MessageItem)
    assert removed.text is None
    notice, message = parse_document(docs["interactive_message_with_err"])
    assert isinstance(notice, Notice)
    assert notice.errors[0]["code"] == 131000
    assert isinstance(message, MessageItem)


@pytest.mark.skipif(not HAVE_CORPUS, reason=NO_CORPUS)
def test_corpus_statuses_keep_errors_pricing_and_group_participant() -> None:
    docs = load("pywa__message_status.json")
    for key, doc in docs.items():
        [status] = [i for i in parse_document(doc) if isinstance(i, StatusItem)]
        assert status.status == doc["entry"][0]["changes"][0]["value"]["statuses"][0]["status"], key
    [failed] = parse_document(docs["failed"])
    assert isinstance(failed, StatusItem)
    assert failed.errors[0]["code"] == 130472
    [sent] = parse_document(docs["with_tracker"])
    assert isinstance(sent, StatusItem)
    assert sent.callback_data == "some data"
    assert sent.pricing == {"billable": True, "pricing_model": "CBP", "category": "service"}
    [group] = parse_document(docs["group"])
    assert isinstance(group, StatusItem)
    assert group.status_id.endswith(":<GROUP_PARTICIPANT_USER_PHONE_NUMBER>")


@pytest.mark.skipif(not HAVE_CORPUS, reason=NO_CORPUS)
def test_corpus_calls() -> None:
    [connect] = parse_document(load("pywa__call_connect.json")["user_initiated"])
    assert isinstance(connect, CallItem)
    assert (connect.event, connect.direction, connect.party.wa_id) == (
        "connect",
        "USER_INITIATED",
        "972987654321",
    )
    assert connect.party.user_id == "US.13491208655302741918"
    notice, terminate = parse_document(load("pywa__call_terminate.json")["call_terminate"])
    assert isinstance(notice, Notice)
    assert isinstance(terminate, CallItem)
    assert (terminate.status, terminate.duration_s) == ("COMPLETED", 120)
    assert terminate.party.wa_id == "16315553601"  # business-initiated: the user is `to`


def test_system_messages_link_identifiers_only_from_their_fields() -> None:
    doc = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messages": [
                                {
                                    "from": "972987654321",
                                    "id": "w1",
                                    "timestamp": "1753851315",
                                    "type": "system",
                                    "system": {
                                        "body": "User A changed from \u200e972987654321 to 9729123",
                                        "wa_id": "972912345678",
                                        "type": "user_changed_number",
                                    },
                                },
                                {
                                    "id": "w2",
                                    "timestamp": "1753851315",
                                    "type": "system",
                                    "system": {
                                        "body": "changed",
                                        "user_id": "MX.0987654321",
                                        "previous_user_id": "CO.1234567890",
                                        "type": "user_changed_user_id",
                                    },
                                },
                            ]
                        },
                    }
                ]
            }
        ],
    }
    first, second = parse_document(doc)
    assert isinstance(first, MessageItem)
    assert isinstance(second, MessageItem)
    assert first.linked_identifiers == ("+972912345678",)
    assert second.party.user_id == "CO.1234567890"
    assert second.linked_identifiers == ("bsuid:MX.0987654321",)


def test_other_objects_and_unknown_fields_are_notices() -> None:
    [page] = parse_body(b'{"object": "page", "entry": []}')
    assert isinstance(page, Notice)
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"changes": [{"field": "account_update", "value": {}}]}],
    }
    [unknown] = parse_document(doc)
    assert isinstance(unknown, Notice)
    assert unknown.source_field == "account_update"


def test_one_malformed_item_does_not_lose_the_rest_of_the_batch() -> None:
    doc = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messages": [
                                {
                                    "id": "ok",
                                    "timestamp": "1",
                                    "type": "text",
                                    "text": {"body": "fine"},
                                },
                                {"id": "bad", "timestamp": "not a time", "type": "text"},
                                "not even an object",
                            ]
                        },
                    }
                ]
            }
        ],
    }
    items = parse_document(doc)
    assert [type(i).__name__ for i in items] == ["MessageItem", "Notice", "Notice"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not JSON: JSONDecodeError"),
        (b'"\xc3\x28"', "body is not JSON: UnicodeDecodeError"),
        (b"[1, 2]", "body is not a JSON object"),
        (b'{"object": "whatsapp_business_account", "entry": {}}', "entry is not an array"),
    ],
)
def test_bodies_that_are_not_envelopes_raise_payload_error(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as error:
        parse_body(body)
    assert str(error.value) == message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=40,
)
KEYS = st.sampled_from(
    [
        "object",
        "entry",
        "changes",
        "value",
        "field",
        "messages",
        "statuses",
        "calls",
        "history",
        "message_echoes",
        "contacts",
        "metadata",
        "id",
        "timestamp",
        "type",
        "text",
        "from",
        "threads",
        "errors",
        "image",
        "edit",
        "system",
        "status",
    ]
)
SHAPED = st.recursive(
    st.none()
    | st.integers()
    | st.text(max_size=12)
    | st.just("whatsapp_business_account")
    | st.just("1697043223"),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=60,
)


@settings(deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_give_items_or_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        parse_body(data)


@settings(deadline=None, max_examples=300)
@given(SHAPED | JSON)
def test_arbitrary_json_in_the_envelope_shape_gives_items_or_payload_error(doc: Any) -> None:
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"changes": [doc]}]})
    with contextlib.suppress(PayloadError):
        parse_body(body.encode())
    with contextlib.suppress(PayloadError):
        parse_body(json.dumps(doc).encode())
