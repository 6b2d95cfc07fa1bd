"""The WhatsApp Cloud API webhook payload, parsed into typed items (reference whatsapp.md §4-§11).

Pure: bytes in, frozen values out; no sockets, clocks or files. Every level of the envelope is an
array and every item of every `entry`/`changes` is taken. Anything we do not understand (another
`object`, an unknown `field`, value-level `errors`) comes out as a `Notice` so the caller can keep
the raw body and flag it; only a body that is not a JSON object of the expected shape raises
`PayloadError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeAlias

from tapeline.errors import TapelineError

WABA_OBJECT = "whatsapp_business_account"
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
JsonObject: TypeAlias = dict[str, Any]


class PayloadError(TapelineError, ValueError):
    """A webhook body that is not a WhatsApp envelope (kept raw by the caller)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaRef:
    """A media attachment as announced by the webhook (fetched later through the Graph API)."""

    media_id: str
    mime_type: str | None = None
    sha256: str | None = None
    url: str | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    """The WhatsApp user on the other side: phone (`wa_id`) and/or BSUID, and profile name."""

    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    name: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageItem:
    """One message: inbound (`messages`), an echo of what staff sent, or a history backfill."""

    source_field: str
    phone_number_id: str | None
    display_phone_number: str | None
    wamid: str
    type: str
    direction: str
    timestamp: datetime
    party: Party
    text: str | None = None
    media: MediaRef | None = None
    related_wamid: str | None = None
    linked_identifiers: tuple[str, ...] = ()
    errors: tuple[Any, ...] = ()
    raw: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusItem:
    """A status of one of our outbound messages (`statuses[]`, field `messages`)."""

    phone_number_id: str | None
    wamid: str
    status: str
    timestamp: datetime
    recipient_id: str | None = None
    recipient_participant_id: str | None = None
    errors: tuple[Any, ...] = ()
    pricing: JsonObject | None = None
    conversation: JsonObject | None = None
    callback_data: str | None = None

    @property
    def status_id(self) -> str:
        """The idempotency key of this status (reference §7)."""
        stamp = int(self.timestamp.timestamp())
        return f"{self.status}:{stamp}:{self.recipient_participant_id or ''}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallItem:
    """A WhatsApp call event (`calls[]`, or a `statuses[]` entry of type `call`)."""

    phone_number_id: str | None
    display_phone_number: str | None
    wacid: str
    event: str
    timestamp: datetime
    direction: str | None = None
    from_id: str | None = None
    to_id: str | None = None
    status: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_s: int | None = None
    party: Party = field(default_factory=Party)
    errors: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """Something kept but not understood: another object, an unknown field, value errors."""

    reason: str
    source_field: str | None = None
    errors: tuple[Any, ...] = ()


Item: TypeAlias = MessageItem | StatusItem | CallItem | Notice


def parse_body(body: bytes) -> list[Item]:
    """Parse a raw webhook body into items.

    Raises:
        PayloadError: the body is not JSON, or not an object with the envelope's shape.
    """
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(f"body is not JSON: {exc.__class__.__name__}") from exc
    if not isinstance(doc, dict):
        raise PayloadError("body is not a JSON object")
    return parse_document(doc)


def parse_document(doc: JsonObject) -> list[Item]:
    """Parse a decoded webhook document.

    Raises:
        PayloadError: the envelope's arrays or objects have the wrong types.
    """
    if doc.get("object") != WABA_OBJECT:
        if "messaging_product" in doc:  # Meta's bare `value` (history declined, H03)
            return _value(doc, field_name=None)
        return [Notice(reason=f"object {str(doc.get('object'))[:64]!r} is not handled")]
    items: list[Item] = []
    for entry in _list(doc, "entry"):
        for change in _list(_obj(entry, "entry"), "changes"):
            change_obj = _obj(change, "change")
            value = _obj(change_obj.get("value", {}), "value")
            field_name = change_obj.get("field")
            items.extend(_value(value, field_name=_opt_str(field_name)))
    return items


def _value(value: JsonObject, *, field_name: str | None) -> list[Item]:
    meta = _obj(value.get("metadata", {}), "metadata")
    ctx = _Ctx(
        source_field=field_name or "messages",
        phone_number_id=_opt_str(meta.get("phone_number_id")),
        display=_opt_str(meta.get("display_phone_number")),
        contacts=[_party(_obj(c, "contact")) for c in _list(value, "contacts")],
    )
    items: list[Item] = []
    known = {"messages", "smb_message_echoes", "history", "calls"}
    if field_name is not None and field_name not in known:
        items.append(
            Notice(reason=f"field {field_name[:64]!r} is not handled", source_field=field_name)
        )
        return items
    messages, echoes = _list(value, "messages"), _list(value, "message_echoes")
    errors = tuple(_list(value, "errors"))
    if errors:
        items.append(Notice(reason="value-level errors", source_field=field_name, errors=errors))
    items.extend(_guard(partial(_message, m, ctx, direction="inbound")) for m in messages)
    items.extend(_guard(partial(_message, m, ctx, direction="outbound")) for m in echoes)
    for chunk in _list(value, "history"):
        try:
            items.extend(_history(_obj(chunk, "history"), ctx))
        except PayloadError as exc:
            items.append(Notice(reason=str(exc), source_field=ctx.source_field))
    items.extend(_guard(partial(_any_status, s, ctx)) for s in _list(value, "statuses"))
    items.extend(_guard(partial(_call, c, ctx)) for c in _list(value, "calls"))
    return items


def _guard(parse: Callable[[], Item]) -> Item:
    """One malformed item becomes a Notice; the rest of the batch is still taken."""
    try:
        return parse()
    except PayloadError as exc:
        return Notice(reason=str(exc))


def _any_status(value: object, ctx: _Ctx) -> Item:
    status = _obj(value, "status")
    if status.get("type") == "call":
        return _call_status(status, ctx)
    return _status(status, ctx)


@dataclass(frozen=True, slots=True)
class _Ctx:
    source_field: str
    phone_number_id: str | None
    display: str | None
    contacts: list[Party]

    def contact(self, wa_id: str | None, user_id: str | None) -> Party | None:
        for party in self.contacts:
            if (wa_id and party.wa_id == wa_id) or (user_id and party.user_id == user_id):
                return party
        if wa_id or user_id or len(self.contacts) != 1:
            return None
        return self.contacts[0]


def _history(chunk: JsonObject, ctx: _Ctx) -> list[Item]:
    items: list[Item] = []
    errors = tuple(_list(chunk, "errors"))
    if errors:
        items.append(Notice(reason="history errors", source_field="history", errors=errors))
    for thread in _list(chunk, "threads"):
        thread_obj = _obj(thread, "thread")
        user = _opt_str(thread_obj.get("id"))
        for msg in _list(thread_obj, "messages"):
            if not isinstance(msg, dict):
                items.append(
                    Notice(reason="history message is not an object", source_field="history")
                )
                continue
            msg_obj: JsonObject = msg
            sender = _opt_str(msg_obj.get("from"))
            outbound = sender is not None and sender in {ctx.display, ctx.phone_number_id}
            direction = "outbound" if outbound else "inbound"
            items.append(
                _guard(partial(_message, msg_obj, ctx, direction=direction, thread_user=user))
            )
    return items


def _message(
    value: object, ctx: _Ctx, *, direction: str, thread_user: str | None = None
) -> MessageItem:
    msg = _obj(value, "message")
    wamid = _req_str(msg, "id")
    type_ = _opt_str(msg.get("type")) or "unknown"
    if direction == "outbound":
        wa_id = _opt_str(msg.get("to")) or thread_user
        user_id = _opt_str(msg.get("to_user_id"))
    else:
        wa_id = _opt_str(msg.get("from")) or thread_user
        user_id = _opt_str(msg.get("from_user_id"))
    contact = ctx.contact(wa_id, user_id)
    party = Party(
        wa_id=wa_id or (contact.wa_id if contact else None),
        user_id=user_id or (contact.user_id if contact else None),
        parent_user_id=contact.parent_user_id if contact else None,
        name=contact.name if contact else None,
        username=contact.username if contact else None,
    )
    linked: tuple[str, ...] = ()
    if type_ == "system":
        system = _obj(msg.get("system", {}), "system")
        party, linked = _system_identity(system, party)
    content = msg
    related = None
    if type_ == "edit":
        edit = _obj(msg.get("edit", {}), "edit")
        related = _opt_str(edit.get("original_message_id"))
        content = _obj(edit.get("message", {}), "edit.message")
    elif type_ == "revoke":
        related = _opt_str(_obj(msg.get("revoke", {}), "revoke").get("original_message_id"))
    elif type_ == "reaction":
        related = _opt_str(_obj(msg.get("reaction", {}), "reaction").get("message_id"))
    return MessageItem(
        source_field=ctx.source_field,
        phone_number_id=ctx.phone_number_id,
        display_phone_number=ctx.display,
        wamid=wamid,
        type=type_,
        direction=direction,
        timestamp=_time(msg.get("timestamp"), "timestamp"),
        party=party,
        text=_text(content),
        media=_media(content),
        related_wamid=related,
        linked_identifiers=linked,
        errors=tuple(_list(msg, "errors")),
        raw=msg,
    )


def _system_identity(system: JsonObject, party: Party) -> tuple[Party, tuple[str, ...]]:
    """Identifier links stated by a system message (never parsed out of its body)."""
    kind = system.get("type")
    if kind == "user_changed_number" and _opt_str(system.get("wa_id")):
        return party, (f"+{system['wa_id']}",)
    if kind == "user_changed_user_id":
        new, old = _opt_str(system.get("user_id")), _opt_str(system.get("previous_user_id"))
        if old and new:
            return Party(user_id=old, name=party.name), (f"bsuid:{new}",)
        if new:
            return Party(user_id=new, name=party.name), ()
    return party, ()


def _text(msg: JsonObject) -> str | None:  # noqa: C901, PLR0911  # one branch per message type
    type_ = msg.get("type")
    body = msg.get(type_) if isinstance(type_, str) else None
    if not isinstance(body, dict):
        body = {}
    if type_ == "text":
        return _opt_str(body.get("body"))
    if type_ in MEDIA_TYPES:
        return _opt_str(body.get("caption"))
    if type_ == "location":
        parts = [body.get("name"), body.get("address")]
        named = " — ".join(str(p) for p in parts if p)
        where = f"{body.get('latitude')},{body.get('longitude')}"
        return named or (where if "latitude" in body else None)
    if type_ == "contacts":
        names = [
            str(_obj(card, "card").get("name", {}).get("formatted_name", ""))
            for card in _list(msg, "contacts")
            if isinstance(card, dict) and isinstance(card.get("name"), dict)
        ]
        return ", ".join(n for n in names if n) or None
    if type_ == "interactive":
        sub = body.get(str(body.get("type")), {})
        if isinstance(sub, dict):
            return _opt_str(sub.get("title") or sub.get("body") or sub.get("response"))
        return None
    if type_ in {"button", "order"}:
        return _opt_str(body.get("text"))
    if type_ == "reaction":
        return _opt_str(body.get("emoji")) or None
    if type_ == "system":
        return _opt_str(body.get("body"))
    return None


def _media(msg: JsonObject) -> MediaRef | None:
    type_ = msg.get("type")
    if type_ not in MEDIA_TYPES:
        return None
    body = msg.get(type_)
    if not isinstance(body, dict) or not _opt_str(body.get("id")):
        return None
    return MediaRef(
        media_id=str(body["id"]),
        mime_type=_opt_str(body.get("mime_type")),
        sha256=_opt_str(body.get("sha256")),
        url=_opt_str(body.get("url")),
        filename=_opt_str(body.get("filename")),
    )


def _status(status: JsonObject, ctx: _Ctx) -> StatusItem:
    pricing = status.get("pricing")
    conversation = status.get("conversation")
    return StatusItem(
        phone_number_id=ctx.phone_number_id,
        wamid=_req_str(status, "id"),
        status=_req_str(status, "status").lower(),
        timestamp=_time(status.get("timestamp"), "timestamp"),
        recipient_id=_opt_str(status.get("recipient_id")),
        recipient_participant_id=_opt_str(status.get("recipient_participant_id")),
        errors=tuple(_list(status, "errors")),
        pricing=pricing if isinstance(pricing, dict) else None,
        conversation=conversation if isinstance(conversation, dict) else None,
        callback_data=_opt_str(status.get("biz_opaque_callback_data")),
    )


def _call_status(status: JsonObject, ctx: _Ctx) -> CallItem:
    recipient = _opt_str(status.get("recipient_id"))
    return CallItem(
        phone_number_id=ctx.phone_number_id,
        display_phone_number=ctx.display,
        wacid=_req_str(status, "id"),
        event="status",
        timestamp=_time(status.get("timestamp"), "timestamp"),
        direction="BUSINESS_INITIATED",
        to_id=recipient,
        status=_opt_str(status.get("status")),
        party=ctx.contact(recipient, None) or Party(wa_id=recipient),
        errors=tuple(_list(status, "errors")),
    )


def _call(value: object, ctx: _Ctx) -> CallItem:
    call = _obj(value, "call")
    direction = _opt_str(call.get("direction"))
    from_id, to_id = _opt_str(call.get("from")), _opt_str(call.get("to"))
    user = to_id if direction == "BUSINESS_INITIATED" else from_id
    duration = call.get("duration")
    return CallItem(
        phone_number_id=ctx.phone_number_id,
        display_phone_number=ctx.display,
        wacid=_req_str(call, "id"),
        event=_opt_str(call.get("event")) or "unknown",
        timestamp=_time(call.get("timestamp"), "timestamp"),
        direction=direction,
        from_id=from_id,
        to_id=to_id,
        status=_opt_str(call.get("status")),
        start_time=_opt_time(call.get("start_time")),
        end_time=_opt_time(call.get("end_time")),
        duration_s=_opt_int(duration),
        party=ctx.contact(user, None) or Party(wa_id=user),
        errors=tuple(_list(call, "errors")),
    )


def _party(contact: JsonObject) -> Party:
    profile = contact.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    return Party(
        wa_id=_opt_str(contact.get("wa_id")),
        user_id=_opt_str(contact.get("user_id")),
        parent_user_id=_opt_str(contact.get("parent_user_id")),
        name=_opt_str(profile.get("name")),
        username=_opt_str(profile.get("username")),
    )


def _list(obj: JsonObject, key: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise PayloadError(f"{key} is not an array")
    return value


def _obj(value: object, what: str) -> JsonObject:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} is not an object")
    return value


def _opt_str(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _req_str(obj: JsonObject, key: str) -> str:
    value = _opt_str(obj.get(key))
    if not value:
        raise PayloadError(f"{key} is missing")
    return value


def _opt_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
        return int(value)
    return None


MAX_DIGITS = 20
MAX_UNIX_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can hold


def _opt_time(value: object) -> datetime | None:
    seconds = _opt_int(value)
    if seconds is None or seconds > MAX_UNIX_TIME:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _time(value: object, key: str) -> datetime:
    stamp = _opt_time(value)
    if stamp is None:
        raise PayloadError(f"{key} is not a Unix time")
    return stamp
