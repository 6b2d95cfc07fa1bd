"""multipart/mixed body splitting (RFC 2046 §5.1.1; RFC 5621 for SIP bodies).

SIPREC INVITEs carry an SDP part and an ``application/rs-metadata+xml`` part (RFC 7866 §8.1).

Strategy: be liberal in what we accept (siprec.md §15, §16). A delimiter is ``--boundary`` at
the start of a line, optionally followed by ``--`` (the close delimiter) and transport padding.
The line break before a delimiter belongs to it. Preamble and epilogue are dropped. A body with
no close delimiter ends at the end of the body (RFC 8068 examples, Cisco) with trailing line
breaks removed. Lines may end with CRLF or bare LF. Each part's headers are parsed with the SIP
header parser, so compact forms and folding work there too.
"""

import re
from dataclasses import dataclass
from typing import Final

from tapeline.proto.errors import SipParseError
from tapeline.proto.sip.grammar import HEAD_END, LINE_BREAK
from tapeline.proto.sip.headers import (
    ContentType,
    Headers,
    Params,
    parse_content_type,
    parse_header_lines,
    parse_params,
)

# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace
MAX_BOUNDARY_LENGTH: Final = 70


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentDisposition:
    """A Content-Disposition value (RFC 3261 §20.11), e.g. ``recording-session``.

    Attributes:
        disposition: the disposition type, lower-cased.
        params: parameters (``handling=optional``) in order, names lower-cased.
    """

    disposition: str
    params: Params


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyPart:
    """One part of a multipart body.

    Attributes:
        headers: the part's own headers (may be empty).
        body: the part content, without the line break that precedes the next delimiter.
    """

    headers: Headers
    body: bytes

    @property
    def content_type(self) -> ContentType | None:
        """The part's Content-Type; None when absent (RFC 2046 then implies text/plain)."""
        value = self.headers.get("Content-Type")
        return None if value is None else parse_content_type(value)

    @property
    def content_disposition(self) -> ContentDisposition | None:
        """The part's Content-Disposition, None when absent."""
        value = self.headers.get("Content-Disposition")
        if value is None:
            return None
        kind, _, params = value.partition(";")
        return ContentDisposition(disposition=kind.strip().lower(), params=parse_params(params))

    @property
    def content_id(self) -> str | None:
        """The part's Content-ID (RFC 2045 §7), angle brackets kept; None when absent."""
        return self.headers.get("Content-ID")


def parse_multipart(body: bytes, boundary: str) -> tuple[BodyPart, ...]:
    """Split a multipart body into its parts.

    Args:
        body: the message body.
        boundary: the ``boundary`` parameter of the Content-Type, unquoted.

    Returns:
        The parts in order.

    Raises:
        SipParseError: empty or over-long boundary, no delimiter in the body, or a part whose
            headers do not parse (400).
    """
    if not boundary or len(boundary) > MAX_BOUNDARY_LENGTH:
        raise SipParseError("Invalid multipart boundary")
    # The line break ending a delimiter line is matched by lookahead, so that an empty part's
    # single line break can also open the next delimiter.
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--"
        + re.escape(boundary.encode("utf-8"))
        + rb"(?P<close>--)?[ \t]*(?=\r?\n|\Z)"
    )
    matches = list(delimiter.finditer(body))
    if not matches:
        raise SipParseError("Multipart body has no boundary delimiter")
    parts: list[BodyPart] = []
    for current, following in zip(matches, [*matches[1:], None], strict=True):
        if current["close"]:
            break
        if following is None:
            content = body[current.end() :]
            if not content.strip(b"\r\n"):
                break  # a body cut right after a delimiter has no further part
            parts.append(_parse_part(_after_line_break(content).rstrip(b"\r\n")))
        else:
            parts.append(_parse_part(_after_line_break(body[current.end() : following.start()])))
    return tuple(parts)


def _after_line_break(data: bytes) -> bytes:
    if data.startswith(b"\r\n"):
        return data[2:]
    return data[1:] if data.startswith(b"\n") else data


def _parse_part(data: bytes) -> BodyPart:
    if data.startswith((b"\r\n", b"\n")) or not data:
        # No headers: the part opens with its empty line (RFC 2046 §5.1.1).
        return BodyPart(headers=Headers(), body=data[2:] if data.startswith(b"\r\n") else data[1:])
    end = HEAD_END.search(data)
    head, content = (data, b"") if end is None else (data[: end.start()], data[end.end() :])
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("Multipart part headers are not valid UTF-8") from exc
    return BodyPart(headers=parse_header_lines(LINE_BREAK.split(text)), body=content)
