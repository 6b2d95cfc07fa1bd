"""SIP for the SRS: RFC 3261 parsing, framing, serialising, transactions and dialogs.

Feed a UDP datagram to `parse_datagram`, or stream bytes to `SipFramer`; hand requests to
`TransactionLayer.receive_request`, send the `SendBytes` it returns, answer `RequestReceived`
events with `build_response` and `TransactionLayer.send_response`, and track dialogs in
`DialogSet`. Drive timers with `get_timer()` and `handle_timer(now)`.
"""

from tapeline.proto.sip.dialog import Dialog, DialogId, DialogSet, DialogState, Reject
from tapeline.proto.sip.framing import CONNECTION_CLOSED, NEED_DATA, FramerEvent, SipFramer
from tapeline.proto.sip.headers import (
    ContentType,
    CSeq,
    Headers,
    NameAddr,
    Via,
    parse_content_type,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from tapeline.proto.sip.message import SipMessage, SipRequest, SipResponse
from tapeline.proto.sip.multipart import BodyPart, ContentDisposition, parse_multipart
from tapeline.proto.sip.parser import DEFAULT_MAX_MESSAGE_SIZE, parse_datagram
from tapeline.proto.sip.serializer import build_request, build_response, serialize
from tapeline.proto.sip.transaction import (
    Address,
    SendBytes,
    TimerConfig,
    TransactionKey,
    TransactionTimedOut,
)
from tapeline.proto.sip.transaction_layer import (
    AckReceived,
    InviteCancelled,
    LayerOutput,
    RequestReceived,
    TransactionLayer,
    random_tag,
)

__all__ = [
    "CONNECTION_CLOSED",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "NEED_DATA",
    "AckReceived",
    "Address",
    "BodyPart",
    "CSeq",
    "ContentDisposition",
    "ContentType",
    "Dialog",
    "DialogId",
    "DialogSet",
    "DialogState",
    "FramerEvent",
    "Headers",
    "InviteCancelled",
    "LayerOutput",
    "NameAddr",
    "Reject",
    "RequestReceived",
    "SendBytes",
    "SipFramer",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "TimerConfig",
    "TransactionKey",
    "TransactionLayer",
    "TransactionTimedOut",
    "Via",
    "build_request",
    "build_response",
    "parse_content_type",
    "parse_cseq",
    "parse_datagram",
    "parse_multipart",
    "parse_name_addr",
    "parse_via",
    "random_tag",
    "serialize",
]
