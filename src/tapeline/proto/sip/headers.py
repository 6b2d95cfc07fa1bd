"""SIP header fields: an ordered multi-map plus typed views.

RFC 3261 §7.3 (header syntax, folding, comma-combined values), §7.3.3 and §20 (compact forms),
§20.42 Via, §20.16 CSeq, §20.20/§20.39/§20.10 name-addr headers (From, To, Contact), RFC 3325
P-Asserted-Identity, RFC 5806 Diversion, §20.15 Content-Type.

Strategy: the multi-map keeps every field exactly as received (name spelling, order, repeats) so
the message can be journalled and re-serialised faithfully; lookups go through a canonical key
(lower-case long name) so that ``f:``, ``FROM:`` and ``From:`` are the same field. Typed views are
parsed on demand from the raw value and raise `SipParseError` with a 400 hint.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from tapeline.proto.errors import SipParseError
from tapeline.proto.sip.grammar import HEADER_LINE, TOKEN

# RFC 3261 §7.3.3 and the IANA "Header Fields" registry compact forms.
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "Call-ID",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "t": "To",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL: Final[dict[str, str]] = {k: v.lower() for k, v in COMPACT_FORMS.items()}


def canonical_name(name: str) -> str:
    """Return the lookup key of a header name: lower-case, compact form expanded."""
    lowered = name.lower()
    return _CANONICAL.get(lowered, lowered)


@dataclass(frozen=True, slots=True, kw_only=True)
class Headers:
    """Ordered, case-insensitive header multi-map keeping repeats and original spelling.

    Attributes:
        fields: ``(name, value)`` pairs in wire order, names as received, values unfolded.
    """

    fields: tuple[tuple[str, str], ...] = ()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get_all(self, name: str) -> tuple[str, ...]:
        """Return the value of every field called `name` (any spelling), in order."""
        key = canonical_name(name)
        return tuple(v for n, v in self.fields if canonical_name(n) == key)

    def get(self, name: str) -> str | None:
        """Return the first value of `name`, or None when absent."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_list(self, name: str) -> tuple[str, ...]:
        """Return the comma-separated elements of every `name` field (RFC 3261 §7.3.1).

        Use it only for list-valued headers (Via, Contact, Route, Record-Route, Supported, ...).
        """
        return tuple(
            item
            for value in self.get_all(name)
            for item in split_unquoted(value, ",")
            if item.strip()
        )


def parse_header_lines(lines: list[str]) -> Headers:
    """Parse the header lines of a message head, unfolding continuation lines.

    Args:
        lines: the lines after the start line, without line terminators.

    Returns:
        The header multi-map.

    Raises:
        SipParseError: a line is not ``name: value`` or the first line is a continuation (400).
    """
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in {" ", "\t"}:
            # §7.3.1: a line starting with whitespace continues the previous field (LWS folding).
            if not fields:
                raise SipParseError("Header continuation line without a header")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        match = HEADER_LINE.fullmatch(line)
        if match is None:
            raise SipParseError("Malformed header line")
        fields.append((match["name"], match["value"].rstrip(" \t")))
    return Headers(fields=tuple(fields))


def split_unquoted(text: str, separator: str) -> list[str]:
    """Split `text` on `separator` outside double quotes and angle brackets, stripping items."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    depth = 0
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth = max(depth - 1, 0)
        elif not quoted and depth == 0 and char == separator:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return items


Params = tuple[tuple[str, str | None], ...]


def parse_params(text: str) -> Params:
    """Parse ``;name=value;flag`` generic-params (§25.1); values are unquoted, names lower-cased.

    Raises:
        SipParseError: an empty parameter name (400).
    """
    params: list[tuple[str, str | None]] = []
    for item in split_unquoted(text, ";"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not name:
            raise SipParseError("Empty header parameter name")
        params.append((name, _unquote(value.strip()) if sep else None))
    return tuple(params)


def param(params: Params, name: str) -> str | None:
    """Return the value of parameter `name` ('' for a flag without value), or None if absent."""
    for key, value in params:
        if key == name:
            return "" if value is None else value
    return None


def _unquote(value: str) -> str:
    min_quoted = 2
    if len(value) >= min_quoted and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out: list[str] = []
        escaped = False
        for char in inner:
            if char == "\\" and not escaped:
                escaped = True
                continue
            escaped = False
            out.append(char)
        return "".join(out)
    return value


# --- Typed views ---------------------------------------------------------------------------------

_VIA_RE: Final = re.compile(
    rf"(?P<protocol>{TOKEN})[ \t]*/[ \t]*(?P<version>{TOKEN})[ \t]*/[ \t]*(?P<transport>{TOKEN})"
    r"[ \t]+(?P<host>\[[0-9A-Fa-f:.]+\]|[^ \t:;\[\]]+)(?:[ \t]*:[ \t]*(?P<port>[0-9]{1,5}))?"
    r"[ \t]*(?P<params>;.*)?"
)
_MAX_PORT: Final = 65535


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via entry (RFC 3261 §20.42; received §18.2.1; rport RFC 3581).

    Attributes:
        transport: upper-cased transport token (UDP, TCP, TLS, ...).
        host: sent-by host as written (IPv6 keeps its brackets).
        port: sent-by port, None when absent.
        params: via-params in order, names lower-cased.
    """

    transport: str
    host: str
    port: int | None
    params: Params

    @property
    def branch(self) -> str | None:
        """The branch parameter, None when absent."""
        return param(self.params, "branch")

    @property
    def received(self) -> str | None:
        """The received parameter, None when absent."""
        return param(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The rport value; None when absent or present without a value (a request for one)."""
        value = param(self.params, "rport")
        return int(value) if value else None

    @property
    def wants_rport(self) -> bool:
        """True when the rport parameter is present (RFC 3581 §4)."""
        return param(self.params, "rport") is not None

    @property
    def sent_by(self) -> str:
        """The sent-by as ``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse_via(value: str) -> Via:
    """Parse one Via entry (one element of a possibly comma-combined Via field).

    Raises:
        SipParseError: not a Via value or the port is out of range (400).
    """
    match = _VIA_RE.fullmatch(value.strip())
    if match is None:
        raise SipParseError("Malformed Via header")
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > _MAX_PORT:
        raise SipParseError("Malformed Via header")
    params = parse_params(match["params"] or "")
    rport = param(params, "rport")
    if rport and not (rport.isdigit() and int(rport) <= _MAX_PORT):
        raise SipParseError("Malformed Via header")
    return Via(transport=match["transport"].upper(), host=match["host"], port=port, params=params)


@dataclass(frozen=True, slots=True, kw_only=True)
class CSeq:
    """A CSeq value (RFC 3261 §20.16): sequence number and method."""

    number: int
    method: str


_CSEQ_RE: Final = re.compile(rf"(?P<number>[0-9]{{1,10}})[ \t]+(?P<method>{TOKEN})")
_MAX_CSEQ: Final = 2**31 - 1


def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value; the number must be below 2**31 (§8.1.1.5).

    Raises:
        SipParseError: malformed or out of range (400).
    """
    match = _CSEQ_RE.fullmatch(value.strip())
    if match is None or int(match["number"]) > _MAX_CSEQ:
        raise SipParseError("Malformed CSeq header")
    return CSeq(number=int(match["number"]), method=match["method"])


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters (From, To, Contact, PAI, Diversion).

    Attributes:
        display_name: the display name, unquoted; None when absent.
        uri: the URI without angle brackets (its own ``;params`` included when bracketed).
        params: header parameters after the address, names lower-cased.
    """

    display_name: str | None
    uri: str
    params: Params

    @property
    def tag(self) -> str | None:
        """The tag parameter, None when absent."""
        return param(self.params, "tag")


_NAME_ADDR_RE: Final = re.compile(
    r'[ \t]*(?P<display>"(?:[^"\\]|\\.)*"|[^<"]*?)[ \t]*<(?P<uri>[^<>]*)>[ \t]*(?P<params>;.*)?'
)
_ADDR_SPEC_RE: Final = re.compile(r"[ \t]*(?P<uri>[^ \t;<>\"]+)[ \t]*(?P<params>;.*)?")


def parse_name_addr(value: str) -> NameAddr:
    """Parse a From/To/Contact-style value.

    Without angle brackets, everything after the first ``;`` is a header parameter (§20.10).

    Raises:
        SipParseError: neither a name-addr nor an addr-spec (400).
    """
    match = _NAME_ADDR_RE.fullmatch(value) or _ADDR_SPEC_RE.fullmatch(value)
    if match is None or not match["uri"].strip():
        raise SipParseError("Malformed name-addr")
    display = match.groupdict().get("display")
    display_name = _unquote(display.strip()) if display and display.strip() else None
    return NameAddr(
        display_name=display_name,
        uri=match["uri"].strip(),
        params=parse_params(match["params"] or ""),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentType:
    """A media type with parameters (RFC 3261 §20.15, RFC 2045 §5.1).

    Attributes:
        type: top-level type, lower-cased.
        subtype: subtype, lower-cased.
        params: parameters in order, names lower-cased, values unquoted (case kept).
    """

    type: str
    subtype: str
    params: Params

    @property
    def media_type(self) -> str:
        """``type/subtype`` in lower case, e.g. ``multipart/mixed``."""
        return f"{self.type}/{self.subtype}"

    @property
    def boundary(self) -> str | None:
        """The multipart boundary parameter, None when absent."""
        return param(self.params, "boundary")


_CONTENT_TYPE_RE: Final = re.compile(
    rf"[ \t]*(?P<type>{TOKEN})[ \t]*/[ \t]*(?P<subtype>{TOKEN})[ \t]*(?P<params>;.*)?"
)


def parse_content_type(value: str) -> ContentType:
    """Parse a Content-Type value; ``; boundary=x`` and quoted boundaries are accepted.

    Raises:
        SipParseError: not ``type/subtype[;params]`` (400).
    """
    match = _CONTENT_TYPE_RE.fullmatch(value.rstrip(" \t"))
    if match is None:
        raise SipParseError("Malformed Content-Type header")
    return ContentType(
        type=match["type"].lower(),
        subtype=match["subtype"].lower(),
        params=parse_params(match["params"] or ""),
    )
