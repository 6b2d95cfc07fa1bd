"""Stream framing of SIP messages for TCP and TLS (RFC 3261 §18.3; RFC 5626 §3.5.1 keepalives).

Strategy: bytes accumulate in one bounded buffer. A message head ends at the first empty line;
Content-Length, mandatory on streams, then says how many body bytes follow. CRLFs between
messages are keepalives (the RFC 5626 double-CRLF ping and single-CRLF pong) and are skipped.
The search for the empty line resumes where the previous one stopped, so feeding one byte at a
time stays linear. Any error is terminal: a stream that lost its framing cannot resynchronise.

Usage::

    framer.receive_data(chunk)                      # b"" = EOF
    while (event := framer.next_event()) is not NEED_DATA:
        ...                                         # a SipMessage, or CONNECTION_CLOSED
"""

import enum
from typing import Final

from tapeline.proto.errors import ProtocolViolation, SipParseError
from tapeline.proto.sip.grammar import HEAD_END
from tapeline.proto.sip.message import SipMessage
from tapeline.proto.sip.parser import (
    DEFAULT_MAX_MESSAGE_SIZE,
    STATUS_TOO_LARGE,
    build_message,
    parse_head,
)

# A head terminator spans at most four bytes; a resumed search backs up by three.
_TERMINATOR_OVERLAP: Final = 3


class FramerEvent(enum.Enum):
    """Sentinels returned by `SipFramer.next_event` besides messages."""

    NEED_DATA = enum.auto()
    """More bytes are needed before the next message is complete."""
    CONNECTION_CLOSED = enum.auto()
    """The peer closed the stream cleanly between messages."""


NEED_DATA: Final = FramerEvent.NEED_DATA
CONNECTION_CLOSED: Final = FramerEvent.CONNECTION_CLOSED


class SipFramer:
    """Split a byte stream into SIP messages.

    Args:
        max_message_size: the largest message (head plus body) accepted, in bytes.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._max = max_message_size
        self._buffer = bytearray()
        self._scan_from = 0
        self._eof = False
        self._failed = False
        self._head: tuple[SipMessage, int, int] | None = None

    @property
    def trailing_data(self) -> bytes:
        """Bytes received but not yet consumed by a message."""
        return bytes(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the stream; `b""` signals EOF.

        Raises:
            ProtocolViolation: data after EOF.
        """
        if self._eof:
            raise ProtocolViolation("receive_data called after EOF")
        if not data:
            self._eof = True
            return
        self._buffer += data

    def next_event(self) -> SipMessage | FramerEvent:
        """Return the next complete message, `NEED_DATA` or `CONNECTION_CLOSED`.

        Raises:
            SipParseError: malformed message (400), missing Content-Length (400), message larger
                than max_message_size (513), or EOF inside a message (400).
            ProtocolViolation: called again after an error.
        """
        if self._failed:
            raise ProtocolViolation("framer is unusable after an error")
        try:
            return self._next_event()
        except SipParseError:
            self._failed = True
            raise

    def _next_event(self) -> SipMessage | FramerEvent:
        if self._head is None:
            self._skip_keepalives()
            end = HEAD_END.search(self._buffer, self._scan_from)
            if end is None:
                self._scan_from = max(len(self._buffer) - _TERMINATOR_OVERLAP, 0)
                if len(self._buffer) > self._max:
                    raise SipParseError(
                        "Message head exceeds max_message_size", status_hint=STATUS_TOO_LARGE
                    )
                return self._starved()
            message, length = parse_head(bytes(self._buffer[: end.start()]))
            if length is None:
                raise SipParseError("Content-Length is mandatory on stream transports")
            if end.end() + length > self._max:
                raise SipParseError(
                    "Content-Length exceeds max_message_size", status_hint=STATUS_TOO_LARGE
                )
            # Keep the parsed head while the body arrives, so it is parsed once.
            self._head = (message, end.end(), length)
        message, body_start, length = self._head
        total = body_start + length
        if len(self._buffer) < total:
            return self._starved()
        raw = bytes(self._buffer[:total])
        del self._buffer[:total]
        self._scan_from = 0
        self._head = None
        return build_message(message, body=raw[body_start:], raw=raw)

    def _skip_keepalives(self) -> None:
        if not self._buffer.startswith((b"\r", b"\n")):
            return
        stripped = self._buffer.lstrip(b"\r\n")
        self._scan_from = max(self._scan_from - (len(self._buffer) - len(stripped)), 0)
        self._buffer = stripped

    def _starved(self) -> FramerEvent:
        if not self._eof:
            return NEED_DATA
        if self._buffer:
            raise SipParseError("Connection closed inside a message")
        return CONNECTION_CLOSED
