"""SIP message parsing: the message head and the datagram entry point.

RFC 3261 §7 (message format), §7.5 (leading CRLFs), §8.1.1 and §8.2.2 (mandatory headers),
§18.3 (Content-Length, optional over UDP: the body runs to the end of the datagram and is cut to
Content-Length when one is given), §21.5.14 (513 Message Too Large), §21.5.16 (505).

Strategy: `parse_head` turns the bytes before the empty line into a start line and headers;
`build_message` adds the body. The datagram parser and the stream framer share both, so a
message parses the same whatever transport carried it. Every failure is a `SipParseError`
whose `status_hint` is the answer the peer deserves.
"""

from typing import Final

from tapeline.proto.errors import SipParseError
from tapeline.proto.sip.grammar import (
    DIGITS,
    HEAD_END,
    LINE_BREAK,
    REQUEST_LINE,
    STATUS_LINE,
    SUPPORTED_VERSION,
    VERSION_RE,
)
from tapeline.proto.sip.headers import (
    Headers,
    parse_cseq,
    parse_header_lines,
    parse_name_addr,
    parse_via,
)
from tapeline.proto.sip.message import SipMessage, SipRequest, SipResponse

# The largest UDP payload; datagrams above it cannot exist, so this is the default bound.
DEFAULT_MAX_MESSAGE_SIZE: Final = 65535

# §8.1.1: every request carries these; responses copy them (§8.2.6.2).
MANDATORY_HEADERS: Final = ("Via", "From", "To", "Call-ID", "CSeq")

STATUS_BAD_REQUEST: Final = 400
_MAX_LENGTH_DIGITS: Final = 10
_HUGE_LENGTH: Final = 10**_MAX_LENGTH_DIGITS
STATUS_TOO_LARGE: Final = 513
STATUS_VERSION_NOT_SUPPORTED: Final = 505


def parse_head(head: bytes) -> tuple[SipRequest | SipResponse, int | None]:
    """Parse a message head (start line and headers, without the empty line).

    Args:
        head: the bytes before the first empty line, leading CRLFs already stripped.

    Returns:
        A message with an empty body and empty raw, and the Content-Length (None when absent).

    Raises:
        SipParseError: with a 400 or 505 hint.
    """
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("Message head is not valid UTF-8") from exc
    start, *lines = LINE_BREAK.split(text)
    headers = parse_header_lines(lines)
    message: SipRequest | SipResponse
    status = STATUS_LINE.fullmatch(start)
    if status is not None:
        _check_version(status["version"])
        message = SipResponse(
            status_code=int(status["code"]),
            reason=status["reason"],
            version=status["version"],
            headers=headers,
        )
    else:
        request = REQUEST_LINE.fullmatch(start)
        if request is None:
            raise SipParseError("Malformed start line")
        _check_version(request["version"])
        message = SipRequest(
            method=request["method"],
            uri=request["uri"],
            version=request["version"],
            headers=headers,
        )
    _check_mandatory(message)
    return message, _content_length(headers)


def _check_version(version: str) -> None:
    if VERSION_RE.fullmatch(version) is None:
        raise SipParseError("Malformed start line")
    if version.upper() != SUPPORTED_VERSION:
        raise SipParseError("Unsupported SIP version", status_hint=STATUS_VERSION_NOT_SUPPORTED)


def _check_mandatory(message: SipMessage) -> None:
    for name in MANDATORY_HEADERS:
        if message.headers.get(name) is None:
            raise SipParseError(f"Missing mandatory header: {name}")
    cseq = parse_cseq(message.headers.get("CSeq") or "")
    parse_name_addr(message.headers.get("From") or "")
    parse_name_addr(message.headers.get("To") or "")
    if not (message.headers.get("Call-ID") or "").strip():
        raise SipParseError("Empty Call-ID header")
    for value in message.headers.get_list("Via"):
        parse_via(value)
    if not message.headers.get_list("Via"):
        raise SipParseError("Missing mandatory header: Via")
    if isinstance(message, SipRequest) and cseq.method != message.method:
        raise SipParseError("CSeq method does not match request method")


def _content_length(headers: Headers) -> int | None:
    values = {v.strip() for v in headers.get_all("Content-Length")}
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError("Conflicting Content-Length headers")
    value = values.pop()
    if DIGITS.fullmatch(value) is None:
        raise SipParseError("Invalid Content-Length")
    digits = value.lstrip("0")
    # Longer than any bound we accept; capping also keeps int() below its digit limit.
    return _HUGE_LENGTH if len(digits) > _MAX_LENGTH_DIGITS else int(value)


def build_message(message: SipMessage, *, body: bytes, raw: bytes) -> SipMessage:
    """Return `message` (from `parse_head`) with its body and raw bytes filled in."""
    if isinstance(message, SipRequest):
        return SipRequest(
            method=message.method,
            uri=message.uri,
            version=message.version,
            headers=message.headers,
            body=body,
            raw=raw,
        )
    return SipResponse(
        status_code=message.status_code,
        reason=message.reason,
        version=message.version,
        headers=message.headers,
        body=body,
        raw=raw,
    )


def parse_datagram(data: bytes, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> SipMessage:
    """Parse one SIP message carried in one UDP datagram (RFC 3261 §18.3).

    Args:
        data: the datagram payload.
        max_message_size: the largest message accepted, in bytes.

    Returns:
        The parsed request or response. `raw` is the message without leading CRLFs and without
        bytes beyond Content-Length.

    Raises:
        SipParseError: malformed (400), unsupported version (505) or too large (513).
    """
    if len(data) > max_message_size:
        raise SipParseError("Message exceeds max_message_size", status_hint=STATUS_TOO_LARGE)
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("Empty message")
    end = HEAD_END.search(data)
    if end is None:
        raise SipParseError("Message head is not terminated by an empty line")
    message, length = parse_head(data[: end.start()])
    body = data[end.end() :]
    if length is not None:
        if length > len(body):
            raise SipParseError("Body shorter than Content-Length")
        body = body[:length]
    return build_message(message, body=body, raw=data[: end.end() + len(body)])
