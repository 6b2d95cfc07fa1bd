"""The error root of the sans-IO cores.

`proto/` imports nothing from the rest of Tapeline, so it has its own root. A parse error already
knows which answer the peer deserves (`status_hint` on SIP errors).
"""


class ProtoError(Exception):
    """Base of every error raised by `tapeline.proto`."""


class ParseError(ProtoError, ValueError):
    """Bytes that do not parse as the protocol says."""


class SipParseError(ParseError):
    """A SIP message that cannot be accepted; `status_hint` is the SIP status to answer with."""

    def __init__(self, message: str, *, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class SdpParseError(ParseError):
    """An SDP body that does not follow RFC 8866."""


class RtpParseError(ParseError):
    """An RTP or RTCP packet that does not follow RFC 3550."""


class PcapFormatError(ParseError):
    """A pcap or pcapng stream that is damaged or of an unsupported kind."""


class SiprecMetadataError(ParseError):
    """An rs-metadata body (RFC 7865) that cannot be normalised."""


class ProtocolViolation(ProtoError):  # noqa: N818  # the RFC term, as h11 names it
    """An input that the state machine's table does not allow in its current state."""
