"""SDP for the SRS: RFC 8866 parsing and serialising, RFC 7866 §7.2 answers, RFC 4568 crypto."""

from tapeline.proto.sdp.answer import (
    SRTP_KEY_LENGTHS,
    SUPPORTED_CODECS,
    build_answer,
    choose_payload_types,
)
from tapeline.proto.sdp.model import (
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Connection,
    Crypto,
    Direction,
    Field,
    KeyParams,
    MediaDescription,
    Origin,
    RtcpAddress,
    RtpMap,
    SessionDescription,
    format_crypto,
    parse_crypto,
)
from tapeline.proto.sdp.parser import MAX_SDP_SIZE, parse_sdp, serialize_sdp

__all__ = [
    "MAX_SDP_SIZE",
    "SRTP_KEY_LENGTHS",
    "STATIC_PAYLOAD_TYPES",
    "SUPPORTED_CODECS",
    "Attribute",
    "Connection",
    "Crypto",
    "Direction",
    "Field",
    "KeyParams",
    "MediaDescription",
    "Origin",
    "RtcpAddress",
    "RtpMap",
    "SessionDescription",
    "build_answer",
    "choose_payload_types",
    "format_crypto",
    "parse_crypto",
    "parse_sdp",
    "serialize_sdp",
]
