"""Building and serialising the SIP messages we originate.

RFC 3261 §8.2.6 (UAS responses: copy Via, From, Call-ID, CSeq, To with our tag), §12.1.1 (copy
Record-Route into dialog-creating responses), §8.1.1 (request headers), §20.14 (Content-Length,
always written, so every message we send also frames on streams).

Strategy: messages are dataclass in, bytes out. `build_response` and `build_request` return a
complete `SipRequest`/`SipResponse` whose `raw` is `serialize()` of itself, so what we log is
what we send and `parse(serialize(m)) == m` holds.
"""

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Final, TypeVar

from tapeline.proto.sip.headers import Headers, parse_name_addr, parse_via
from tapeline.proto.sip.message import SipMessage, SipRequest, SipResponse

# RFC 3261 §21 reason phrases for the codes an SRS sends.
REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
    603: "Decline",
}

_STATUS_TRYING: Final = 100
_STATUS_MULTIPLE_CHOICES: Final = 300
_DEFAULT_MAX_FORWARDS: Final = 70

HeaderList = Sequence[tuple[str, str]]
_M = TypeVar("_M", SipRequest, SipResponse)


def serialize(message: SipMessage) -> bytes:
    """Render a message's start line, headers and body to bytes (its `raw` is ignored).

    Raises:
        ValueError: a header name or value contains CR or LF (header injection).
    """
    if isinstance(message, SipRequest):
        start = f"{message.method} {message.uri} {message.version}"
    else:
        start = f"{message.version} {message.status_code} {message.reason}"
    lines = [start]
    for name, value in message.headers:
        if any(c in name or c in value for c in "\r\n"):
            raise ValueError("header contains CR or LF")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + message.body


_RPORT_FLAG: Final = re.compile(r";[ \t]*rport[ \t]*(?=;|,|$)", re.IGNORECASE)


def stamp_via(value: str, source: tuple[str, int]) -> str:
    """Add ``received`` and fill a valueless ``rport`` in the top Via field value.

    Only the first entry of a comma-combined field is touched. ``received`` is added when the
    source host differs from sent-by, or when rport was asked for (RFC 3581 §4).

    Raises:
        SipParseError: the first Via entry does not parse (400).
    """
    first, comma, rest = value.partition(",")
    via = parse_via(first)
    host, port = source
    if via.received is None and (via.wants_rport or via.host.strip("[]") != host):
        first = f"{first.rstrip()};received={host}"
    if via.wants_rport and via.rport is None:
        first = _RPORT_FLAG.sub(f";rport={port}", first, count=1)
    return first + comma + rest


def _with_body(fields: list[tuple[str, str]], body: bytes, content_type: str | None) -> Headers:
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    fields.append(("Content-Length", str(len(body))))
    return Headers(fields=tuple(fields))


def build_response(  # noqa: PLR0913  # every keyword is an independent part of the response
    request: SipRequest,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    contact: str | None = None,
    headers: HeaderList = (),
    body: bytes = b"",
    content_type: str | None = None,
    source: tuple[str, int] | None = None,
) -> SipResponse:
    """Build a response to `request` (RFC 3261 §8.2.6).

    Args:
        request: the request being answered.
        status_code: the status code.
        reason: the reason phrase; defaults to the RFC phrase for the code.
        to_tag: our tag, added to To unless To already carries one or the status is 100.
        contact: the Contact value to add, e.g. ``<sip:srs@10.0.0.1>;+sip.srs``.
        headers: extra ``(name, value)`` headers, added after the copied ones.
        body: the body.
        content_type: the body's Content-Type.
        source: the request's transport source; when given, the top Via gets ``received``
            and a valueless ``rport`` gets the port (§18.2.1, RFC 3581 §4).

    Returns:
        The response with `raw` set to its serialised bytes.
    """
    fields = [("Via", value) for value in request.headers.get_all("Via")]
    if source is not None and fields:
        fields[0] = ("Via", stamp_via(fields[0][1], source))
    fields.append(("From", request.headers.get("From") or ""))
    to_value = request.headers.get("To") or ""
    if (
        to_tag is not None
        and status_code != _STATUS_TRYING
        and parse_name_addr(to_value).tag is None
    ):
        to_value = f"{to_value};tag={to_tag}"
    fields.append(("To", to_value))
    fields.append(("Call-ID", request.headers.get("Call-ID") or ""))
    fields.append(("CSeq", request.headers.get("CSeq") or ""))
    if _STATUS_TRYING < status_code < _STATUS_MULTIPLE_CHOICES:
        fields.extend(("Record-Route", v) for v in request.headers.get_all("Record-Route"))
    if contact is not None:
        fields.append(("Contact", contact))
    fields.extend(headers)
    response = SipResponse(
        status_code=status_code,
        reason=REASON_PHRASES.get(status_code, "Unknown") if reason is None else reason,
        headers=_with_body(fields, body, content_type),
        body=body,
    )
    return _with_raw(response)


def build_request(  # noqa: PLR0913  # mirrors the mandatory headers of RFC 3261 §8.1.1
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    max_forwards: int = _DEFAULT_MAX_FORWARDS,
    contact: str | None = None,
    headers: HeaderList = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """Build a request (RFC 3261 §8.1.1), e.g. an in-dialog BYE.

    Args:
        method: the method.
        uri: the Request-URI.
        via: our Via value, with a fresh ``branch=z9hG4bK...``.
        from_: the From value with our tag.
        to: the To value (with the peer's tag in a dialog).
        call_id: the Call-ID.
        cseq: the CSeq number; the method is `method`.
        max_forwards: the Max-Forwards value.
        contact: the Contact value, if any.
        headers: extra headers (Route, Require, ...), after the mandatory ones.
        body: the body.
        content_type: the body's Content-Type.

    Returns:
        The request with `raw` set to its serialised bytes.
    """
    fields = [
        ("Via", via),
        ("Max-Forwards", str(max_forwards)),
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        fields.append(("Contact", contact))
    fields.extend(headers)
    request = SipRequest(
        method=method, uri=uri, headers=_with_body(fields, body, content_type), body=body
    )
    return _with_raw(request)


def _with_raw(message: _M) -> _M:
    return replace(message, raw=serialize(message))
