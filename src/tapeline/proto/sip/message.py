"""SIP messages as frozen values (RFC 3261 §7: requests §7.1, responses §7.2).

A parsed message keeps `raw`, the exact bytes received, beside the parsed start line, headers and
body, so the journal stores what the peer sent while the code reads typed views. Messages we
originate are built by `tapeline.proto.sip.serializer`, whose `raw` is the bytes we send.
"""

from dataclasses import dataclass
from typing import TypeAlias

from tapeline.proto.errors import SipParseError
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


class _MessageViews:
    """Typed views shared by requests and responses; every one reads `headers`."""

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str:
        """The Call-ID value (§20.8)."""
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq (§20.16)."""
        return parse_cseq(self._required("CSeq"))

    @property
    def vias(self) -> tuple[Via, ...]:
        """Every Via entry, top first (§20.42)."""
        return tuple(parse_via(v) for v in self.headers.get_list("Via"))

    @property
    def top_via(self) -> Via:
        """The topmost Via entry."""
        return parse_via(self.headers.get_list("Via")[0])

    @property
    def from_addr(self) -> NameAddr:
        """The parsed From header (§20.20)."""
        return parse_name_addr(self._required("From"))

    @property
    def to_addr(self) -> NameAddr:
        """The parsed To header (§20.39)."""
        return parse_name_addr(self._required("To"))

    @property
    def content_type(self) -> ContentType | None:
        """The parsed Content-Type, None when absent."""
        value = self.headers.get("Content-Type")
        return None if value is None else parse_content_type(value)

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"Missing mandatory header: {name}")
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class SipRequest(_MessageViews):
    """A SIP request.

    Attributes:
        method: the method token, case kept (methods are case-sensitive, §7.1).
        uri: the Request-URI as written.
        version: the SIP-Version of the start line.
        headers: the header multi-map.
        body: the message body, cut to Content-Length.
        raw: the exact bytes of the message as received or sent.
    """

    method: str
    uri: str
    version: str = "SIP/2.0"
    headers: Headers
    body: bytes = b""
    raw: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class SipResponse(_MessageViews):
    """A SIP response.

    Attributes:
        status_code: the three-digit status code.
        reason: the Reason-Phrase.
        version: the SIP-Version of the start line.
        headers: the header multi-map.
        body: the message body, cut to Content-Length.
        raw: the exact bytes of the message as received or sent.
    """

    status_code: int
    reason: str
    version: str = "SIP/2.0"
    headers: Headers
    body: bytes = b""
    raw: bytes = b""


SipMessage: TypeAlias = SipRequest | SipResponse
