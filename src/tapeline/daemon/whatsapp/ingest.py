"""Filing journaled webhook deliveries: parsed items become records through the one filing path.

Strategy: idempotent by construction. A message is looked up by its wamid first (the index's
unique constraint is the last word: a concurrent duplicate fails its transaction and is then
found); a status by wamid plus its status id; a call event by wacid plus the event itself. So a
delivery filed twice (Meta's retries, a second subscribed app, journal recovery after a crash)
changes nothing the second time. Runs on a worker thread: everything here blocks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tapeline.archive.amend import Amender, StatusIn
from tapeline.archive.core import Archive
from tapeline.archive.filing import (
    AttachmentIn,
    Filer,
    MediaIn,
    MessageIn,
    NewInteraction,
    PartyIn,
)
from tapeline.archive.models import utcnow
from tapeline.archive.nodes import raise_alarm
from tapeline.config import Config, Line
from tapeline.daemon.whatsapp.payload import (
    CallItem,
    MessageItem,
    Notice,
    Party,
    PayloadError,
    StatusItem,
    parse_body,
)
from tapeline.daemon.whatsapp.spool import Delivery
from tapeline.errors import StorageError

log = logging.getLogger(__name__)
PLACEHOLDER_TYPES = frozenset({"media_placeholder", "unproxied"})
SOURCE = "whatsapp"


@dataclass(slots=True)
class IngestReport:
    """What one delivery produced (counts, for logs and tests)."""

    filed: int = 0
    duplicates: int = 0
    statuses: int = 0
    calls: int = 0
    notices: int = 0
    pending_media: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class SentMessage:
    """A message a business system sent through the send proxy, with Graph's answer."""

    phone_number_id: str
    wamid: str
    request: dict[str, Any]
    raw_request: bytes
    raw_response: bytes
    client: str
    accepted_status: str


class Ingest:
    """Turns deliveries into records."""

    def __init__(self, archive: Archive, config: Config) -> None:
        self._archive = archive
        self._filer = Filer(archive, component="whatsapp")
        self.amender = Amender(archive, component="whatsapp")
        self.reload(config)

    def reload(self, config: Config) -> None:
        """Take new `[[lines]]` (business phone number id → employee line)."""
        self._lines = {ln.whatsapp_phone_number_id: ln for ln in config.lines}

    def file_delivery(self, delivery: Delivery) -> IngestReport:
        """File every item of one delivery.

        Raises:
            StorageError: the archive refused a write; the delivery must be filed again later.
        """
        report = IngestReport()
        try:
            items = parse_body(delivery.body)
        except PayloadError as exc:
            self._keep_unparsed(delivery, reason=str(exc))
            self._alarm("whatsapp.invalid_payload", f"signed webhook body kept raw: {exc}")
            report.notices += 1
            return report
        notices = [i for i in items if isinstance(i, Notice)]
        if notices:
            self._keep_unparsed(delivery, reason="; ".join(n.reason for n in notices)[:500])
            self._alarm("whatsapp.unhandled_payload", "webhook content kept raw and flagged")
            report.notices += len(notices)
        body_kept = False
        for item in items:
            if isinstance(item, MessageItem):
                body_kept = self._message(item, delivery, report, keep_body=not body_kept)
            elif isinstance(item, StatusItem):
                self._status(item, delivery, report)
            elif isinstance(item, CallItem):
                self._call(item, delivery, report)
        return report

    # --- messages -------------------------------------------------------------------------------

    def _message(
        self, item: MessageItem, delivery: Delivery, report: IngestReport, *, keep_body: bool
    ) -> bool:
        existing = self.amender.find_message(item.wamid)
        if existing is not None:
            interaction_id, type_ = existing
            if type_ in PLACEHOLDER_TYPES and item.type not in PLACEHOLDER_TYPES:
                media = self._media_in(item)
                self.amender.complete_message(
                    interaction_id,
                    type_=item.type,
                    text=item.text,
                    media=media,
                    attachments=[_item_attachment(item, delivery)],
                    details={"whatsapp": _details(item, delivery)},
                )
                report.pending_media += len(media)
                report.filed += 1
                return not keep_body
            report.duplicates += 1
            return not keep_body
        line = self._line(item.phone_number_id)
        media = self._media_in(item)
        attachments = [
            AttachmentIn(kind="webhook_body", media_type="application/json", data=delivery.body)
            if keep_body
            else _item_attachment(item, delivery)
        ]
        outbound = item.direction == "outbound"
        new = NewInteraction(
            channel="whatsapp",
            kind="message",
            direction=item.direction,
            started_at=item.timestamp,
            source_path=SOURCE,
            line_number=line.number if line else None,
            counterparty=_counterparty(item.party),
            counterparty_name=item.party.name,
            counterparty_aliases=[*_aliases(item.party), *item.linked_identifiers],
            participants=_participants(line, item.display_phone_number, item.party),
            message=MessageIn(
                wamid=item.wamid,
                type=item.type,
                text=item.text,
                status="sent" if outbound else "received",
                status_at=item.timestamp,
                errors=list(item.errors),
            ),
            media=media,
            attachments=attachments,
            outcome="sent" if outbound else "received",
            tags=[] if line else ["unknown_line"],
            details={"whatsapp": _details(item, delivery)},
        )
        if self._file_once(new, item.wamid):
            report.filed += 1
            report.pending_media += len(media)
        else:
            report.duplicates += 1
        return True

    def _media_in(self, item: MessageItem) -> list[MediaIn]:
        if item.media is None:
            return []
        return [
            MediaIn(
                data=None,
                media_id=item.media.media_id,
                mime_type=item.media.mime_type,
                sha256=item.media.sha256,
                pending=True,
            )
        ]

    def _file_once(self, new: NewInteraction, wamid: str) -> bool:
        try:
            self._filer.file(new)
        except StorageError:
            # A concurrent filer (another node, another app's delivery) may have won the
            # unique wamid; anything else is a real failure and goes up.
            if self.amender.find_message(wamid) is not None:
                return False
            raise
        return True

    def file_sent(self, sent: SentMessage) -> None:
        """File a message sent through the send proxy (request and Graph's answer kept sealed).

        Raises:
            StorageError: the archive refused the write.
        """
        request = sent.request
        type_ = str(request.get("type") or "text")
        to = request.get("to")
        party = Party(
            wa_id=str(to).lstrip("+") if isinstance(to, str | int) else None,
            user_id=str(request["recipient"])
            if isinstance(request.get("recipient"), str)
            else None,
        )
        item = MessageItem(
            source_field="send_proxy",
            phone_number_id=sent.phone_number_id,
            display_phone_number=None,
            wamid=sent.wamid,
            type=type_,
            direction="outbound",
            timestamp=utcnow(),
            party=party,
            text=_sent_text(request, type_),
            raw=request,
        )
        attachments = [
            AttachmentIn(kind="send_request", media_type="application/json", data=sent.raw_request),
            AttachmentIn(
                kind="send_response", media_type="application/json", data=sent.raw_response
            ),
        ]
        details = {"whatsapp": {"field": "send_proxy", "client": sent.client, "item": request}}
        existing = self.amender.find_message(sent.wamid)
        if existing is not None:
            if existing[1] in PLACEHOLDER_TYPES:
                self.amender.complete_message(
                    existing[0],
                    type_=type_,
                    text=item.text,
                    media=[],
                    attachments=attachments,
                    details=details,
                )
            return
        line = self._line(sent.phone_number_id)
        self._file_once(
            NewInteraction(
                channel="whatsapp",
                kind="message",
                direction="outbound",
                started_at=item.timestamp,
                source_path=SOURCE,
                line_number=line.number if line else None,
                counterparty=_counterparty(party),
                counterparty_aliases=_aliases(party),
                participants=_participants(line, None, party),
                message=MessageIn(
                    wamid=sent.wamid,
                    type=type_,
                    text=item.text,
                    status=sent.accepted_status,
                    status_at=item.timestamp,
                ),
                attachments=attachments,
                outcome="sent",
                tags=[] if line else ["unknown_line"],
                details=details,
            ),
            sent.wamid,
        )

    # --- statuses -------------------------------------------------------------------------------

    def _status(self, item: StatusItem, delivery: Delivery, report: IngestReport) -> None:
        existing = self.amender.find_message(item.wamid)
        if existing is None:
            line = self._line(item.phone_number_id)
            party = Party(wa_id=item.recipient_id)
            self._file_once(
                NewInteraction(
                    channel="whatsapp",
                    kind="message",
                    direction="outbound",
                    started_at=item.timestamp,
                    source_path=SOURCE,
                    line_number=line.number if line else None,
                    counterparty=_counterparty(party),
                    participants=_participants(line, None, party),
                    message=MessageIn(wamid=item.wamid, type="unproxied", status=None),
                    outcome="sent",
                    tags=["unproxied_outbound"],
                    details={"received_at": delivery.received_at.isoformat()},
                ),
                item.wamid,
            )
            self._alarm(
                "whatsapp.unproxied_outbound",
                "status for a message not sent through Tapeline (content not captured)",
            )
            existing = self.amender.find_message(item.wamid)
            if existing is None:
                raise StorageError(f"status placeholder for {item.wamid} was not filed")
        details: dict[str, Any] = {}
        if item.pricing:
            details["pricing"] = item.pricing
        if item.conversation:
            details["conversation"] = item.conversation
        if item.callback_data:
            details["biz_opaque_callback_data"] = item.callback_data
        if item.recipient_participant_id:
            details["recipient_participant_id"] = item.recipient_participant_id
        outcome = self.amender.record_status(
            existing[0],
            StatusIn(
                status=item.status,
                at=item.timestamp,
                status_id=item.status_id,
                errors=list(item.errors),
                details=details,
            ),
        )
        if outcome == "duplicate":
            report.duplicates += 1
        else:
            report.statuses += 1

    # --- calls ----------------------------------------------------------------------------------

    def _call(self, item: CallItem, delivery: Delivery, report: IngestReport) -> None:
        interaction_id = self.amender.find_call(item.wacid)
        if interaction_id is None:
            line = self._line(item.phone_number_id)
            outbound = item.direction == "BUSINESS_INITIATED"
            self._filer.file(
                NewInteraction(
                    channel="whatsapp",
                    kind="whatsapp_call",
                    direction="outbound" if outbound else "inbound",
                    started_at=item.start_time or item.timestamp,
                    source_path=SOURCE,
                    line_number=line.number if line else None,
                    counterparty=_counterparty(item.party),
                    counterparty_name=item.party.name,
                    counterparty_aliases=_aliases(item.party),
                    participants=_participants(line, item.display_phone_number, item.party),
                    attachments=[
                        AttachmentIn(
                            kind="webhook_body", media_type="application/json", data=delivery.body
                        )
                    ],
                    outcome="connecting",
                    sip_call_id=item.wacid,
                    tags=[] if line else ["unknown_line"],
                    details={"received_at": delivery.received_at.isoformat()},
                )
            )
            interaction_id = self.amender.find_call(item.wacid)
            if interaction_id is None:
                raise StorageError(f"call {item.wacid} was not filed")
        event = {
            "event": item.event,
            "status": item.status,
            "timestamp": item.timestamp.isoformat(),
            "direction": item.direction,
            "duration_s": item.duration_s,
            "errors": list(item.errors),
        }
        ended_at = None
        duration_ms = None
        outcome = item.status.lower() if item.status else None
        if item.event == "terminate":
            if item.duration_s is not None:
                duration_ms = item.duration_s * 1000
            ended_at = item.end_time or (
                item.start_time + timedelta(seconds=item.duration_s)
                if item.start_time and item.duration_s is not None
                else item.timestamp
            )
        if self.amender.record_call_event(
            interaction_id, event=event, ended_at=ended_at, duration_ms=duration_ms, outcome=outcome
        ):
            report.calls += 1
        else:
            report.duplicates += 1

    # --- the rest -------------------------------------------------------------------------------

    def _keep_unparsed(self, delivery: Delivery, *, reason: str) -> None:
        """Keep a signed body we could not (fully) understand as a flagged record, sealed.

        A replay of the same bytes (Meta's retries, journal recovery) is kept once.
        """
        if self.amender.find_kept_body(hashlib.sha256(delivery.body).hexdigest()) is not None:
            return
        self._filer.file(
            NewInteraction(
                channel="whatsapp",
                kind="capture_failure",
                direction="inbound",
                started_at=delivery.received_at,
                source_path=SOURCE,
                attachments=[
                    AttachmentIn(
                        kind="webhook_body",
                        media_type=delivery.content_type or "application/octet-stream",
                        data=delivery.body,
                    )
                ],
                outcome="unparsed_webhook",
                tags=["review"],
                details={"reason": reason, "received_at": delivery.received_at.isoformat()},
            )
        )

    def _line(self, phone_number_id: str | None) -> Line | None:
        line = self._lines.get(phone_number_id) if phone_number_id else None
        if line is None:
            self._alarm(
                "whatsapp.unknown_line",
                f"webhook for business phone number id {phone_number_id} matches no [[lines]]",
            )
        return line

    def _alarm(self, code: str, message: str) -> None:
        log.warning("%s: %s", code, message)
        raise_alarm(self._archive, code=code, severity="warning", message=message)


def _counterparty(party: Party) -> str | None:
    if party.wa_id:
        return f"+{party.wa_id.lstrip('+')}"
    if party.user_id:
        return f"bsuid:{party.user_id}"
    return None


def _aliases(party: Party) -> list[str]:
    return [f"bsuid:{party.user_id}"] if party.wa_id and party.user_id else []


def _participants(line: Line | None, display: str | None, party: Party) -> list[PartyIn]:
    out = []
    employee = line.number if line else (f"+{display}" if display else None)
    if employee:
        out.append(PartyIn(role="employee", identifier=employee))
    other = _counterparty(party)
    if other:
        out.append(PartyIn(role="counterparty", identifier=other, display_name=party.name))
    return out


def _details(item: MessageItem, delivery: Delivery) -> dict[str, Any]:
    return {
        "field": item.source_field,
        "phone_number_id": item.phone_number_id,
        "related_wamid": item.related_wamid,
        "parent_user_id": item.party.parent_user_id,
        "username": item.party.username,
        "received_at": delivery.received_at.isoformat(),
        "item": item.raw,
    }


def _sent_text(request: dict[str, Any], type_: str) -> str | None:
    body = request.get(type_)
    if not isinstance(body, dict):
        return None
    for key in ("body", "caption", "name"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return None


def _item_attachment(item: MessageItem, delivery: Delivery) -> AttachmentIn:
    data = json.dumps(
        {"received_at": delivery.received_at.isoformat(), "item": item.raw},
        ensure_ascii=False,
    ).encode()
    return AttachmentIn(kind="webhook_item", media_type="application/json", data=data)
