"""SDP values: RFC 8866 §5 session and media descriptions, with typed views of the attributes.

Strategy: the dataclasses hold the wire fields and every `a=` line in order (known or not), so a
description survives a parse/serialize round trip. Typed views (rtpmap, fmtp, label, direction,
crypto, rtcp, ptime) are computed from those lines and skip malformed values instead of failing:
an SRS must record audio even when an SRC writes an odd attribute (siprec.md §4, tolerance list).
"""

import base64
import binascii
import re
from dataclasses import dataclass
from enum import StrEnum

# RFC 3551 §6 Table 4: static audio payload types an SRC may offer without `a=rtpmap`.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    13: ("CN", 8000, 1),
    15: ("G728", 8000, 1),
    18: ("G729", 8000, 1),
}

_PT_DIGITS = 3  # RTP payload types are 0..127 (RFC 3550 §5.1)
# RFC 3264 §8.4 legacy hold (RFC 2543 style); compared, never bound.
HOLD_ADDRESSES = frozenset({"0.0.0.0", "::"})  # noqa: S104  # an SDP value, not a bind address

_RTPMAP = re.compile(r"^(\d{1,3})\s+([^/\s]+)/(\d+)(?:/(\d+))?\s*$")
_CRYPTO = re.compile(r"^(\d{1,9})\s+(\S+)\s+(\S+)((?:\s+\S+)*)\s*$")
_RTCP = re.compile(r"^(\d{1,5})(?:\s+(\S+)\s+(\S+)\s+(\S+))?\s*$")


class Direction(StrEnum):
    """Media direction attributes, RFC 8866 §6.7 (RFC 3264 §5.1 offer/answer meaning)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """The `o=` line, RFC 8866 §5.2."""

    username: str
    session_id: str
    session_version: str
    net_type: str
    addr_type: str
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """A `c=` line, RFC 8866 §5.7; `address` keeps any TTL/count suffix as written."""

    net_type: str
    addr_type: str
    address: str

    @property
    def is_hold(self) -> bool:
        """True for the RFC 2543 hold address `0.0.0.0` (and `::`)."""
        return self.address in HOLD_ADDRESSES


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """Any other `<type>=<value>` line (i=, u=, e=, p=, b=, r=, z=, k=), kept verbatim."""

    type: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribute:
    """An `a=name[:value]` line, RFC 8866 §5.13; `value` is None for property attributes."""

    name: str
    value: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpMap:
    """An `a=rtpmap` value, RFC 8866 §6.6, or a static payload type of RFC 3551 §6."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @property
    def name(self) -> str:
        """The encoding name in upper case (SRCs write `pcmu/8000`)."""
        return self.encoding.upper()

    @property
    def audio_rate(self) -> int:
        """The sampling rate of the decoded audio.

        G.722 keeps the RTP clock 8000 "erroneously assigned in RFC 1890" (RFC 3551 §4.5.2) but
        carries 16 kHz audio; durations come from `clock_rate`, decoding uses this value.
        """
        return 16000 if self.name == "G722" else self.clock_rate


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyParams:
    """One `inline:` key parameter of an `a=crypto` line, RFC 4568 §6.1."""

    key_salt: bytes
    lifetime: str | None = None
    mki: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Crypto:
    """An `a=crypto` line: tag, crypto-suite, key parameters, session parameters (RFC 4568 §9.1)."""

    tag: int
    suite: str
    keys: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpAddress:
    """An `a=rtcp` value, RFC 3605 §2.1."""

    port: int
    connection: Connection | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDescription:
    """One `m=` section, RFC 8866 §5.14, with everything below it up to the next `m=`."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connections: tuple[Connection, ...] = ()
    fields: tuple[Field, ...] = ()
    attributes: tuple[Attribute, ...] = ()

    def values(self, name: str) -> tuple[str, ...]:
        """Return the values of every attribute called `name` (case-insensitive), in order."""
        lname = name.lower()
        return tuple(a.value or "" for a in self.attributes if a.name.lower() == lname)

    def has(self, name: str) -> bool:
        """Return True when an attribute called `name` (case-insensitive) is present."""
        lname = name.lower()
        return any(a.name.lower() == lname for a in self.attributes)

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written on this m-line, or None when absent."""
        return direction_of(self.attributes)

    @property
    def label(self) -> str | None:
        """The `a=label` token (RFC 4574), verbatim."""
        labels = self.values("label")
        return labels[0].strip() if labels else None

    @property
    def is_secure(self) -> bool:
        """True for SRTP profiles (RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP...)."""
        return "SAVP" in self.proto.upper()

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats that are RTP payload type numbers, in offer order."""
        return tuple(
            int(f) for f in self.formats if f.isascii() and f.isdigit() and len(f) <= _PT_DIGITS
        )

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """Payload type → RtpMap for every listed PT: `a=rtpmap` first, then RFC 3551 statics."""
        mapped: dict[int, RtpMap] = {}
        for value in self.values("rtpmap"):
            match = _RTPMAP.match(value)
            if match:
                pt, enc, rate, chans = match.groups()
                mapped.setdefault(
                    int(pt),
                    RtpMap(
                        payload_type=int(pt),
                        encoding=enc,
                        clock_rate=int(rate),
                        channels=int(chans) if chans else None,
                    ),
                )
        result: dict[int, RtpMap] = {}
        for pt in self.payload_types:
            if pt in mapped:
                result[pt] = mapped[pt]
            elif pt in STATIC_PAYLOAD_TYPES:
                enc, rate, chans = STATIC_PAYLOAD_TYPES[pt]
                result[pt] = RtpMap(payload_type=pt, encoding=enc, clock_rate=rate, channels=chans)
        return result

    def fmtp(self, payload_type: int) -> str | None:
        """Return the `a=fmtp` parameters of one payload type, or None."""
        prefix = str(payload_type)
        for value in self.values("fmtp"):
            head, _, params = value.partition(" ")
            if head == prefix:
                return params.strip()
        return None

    @property
    def crypto(self) -> tuple[Crypto, ...]:
        """The well-formed `a=crypto` lines (RFC 4568 §9.1), in offer order."""
        return tuple(c for c in (parse_crypto(v) for v in self.values("crypto")) if c is not None)

    @property
    def rtcp(self) -> RtcpAddress | None:
        """The `a=rtcp` port and optional address (RFC 3605)."""
        for value in self.values("rtcp"):
            match = _RTCP.match(value)
            if match:
                port, net, addr_type, addr = match.groups()
                conn = None
                if net is not None and addr_type is not None and addr is not None:
                    conn = Connection(net_type=net, addr_type=addr_type, address=addr)
                return RtcpAddress(port=int(port), connection=conn)
        return None

    @property
    def ptime(self) -> int | None:
        """`a=ptime` in milliseconds, else `a=maxptime` (Sonus sends only the latter)."""
        for name in ("ptime", "maxptime"):
            for value in self.values(name):
                if value.strip().isascii() and value.strip().isdigit():
                    return int(value.strip())
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """A whole SDP body, RFC 8866 §5; absent `v=`/`o=`/`s=`/`t=` stay None or empty (old SRCs)."""

    version: int | None = 0
    origin: Origin | None = None
    session_name: str | None = None
    connection: Connection | None = None
    timing: tuple[str, ...] = ()
    fields: tuple[Field, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, inherited by m-lines without their own."""
        return direction_of(self.attributes)

    def connection_for(self, index: int) -> Connection | None:
        """The connection that applies to m-line `index`: its own first `c=`, else the session's."""
        media = self.media[index]
        return media.connections[0] if media.connections else self.connection

    def direction_for(self, index: int) -> Direction:
        """The effective direction of m-line `index` (RFC 3264 §5.1: absent means sendrecv)."""
        return self.media[index].direction or self.direction or Direction.SENDRECV

    def is_paused(self, index: int) -> bool:
        """True when m-line `index` is paused or held (siprec.md §5.2).

        Pause is `a=inactive` (RFC 7866 §7.1.1.1) or the legacy hold address `c=0.0.0.0`
        (BroadWorks, Metaswitch), and a zero port removes the stream altogether.
        """
        conn = self.connection_for(index)
        return (
            self.direction_for(index) is Direction.INACTIVE
            or (conn is not None and conn.is_hold)
            or self.media[index].port == 0
        )


def direction_of(attributes: tuple[Attribute, ...]) -> Direction | None:
    """Return the direction written in `attributes` (case-insensitive; SEMS `direction:both`)."""
    for attr in attributes:
        name = attr.name.lower()
        if attr.value is None and name in Direction.__members__.values():
            return Direction(name)
        if name == "direction" and (attr.value or "").strip().lower() == "both":
            return Direction.SENDRECV
    return None


def parse_crypto(value: str) -> Crypto | None:
    """Parse an `a=crypto` value (RFC 4568 §9.1); return None when it is malformed.

    Args:
        value: The text after `a=crypto:`.

    Returns:
        The parsed line, or None if the tag, suite or any inline key is unusable.
    """
    match = _CRYPTO.match(value)
    if not match:
        return None
    tag, suite, key_field, rest = match.groups()
    keys: list[KeyParams] = []
    for item in key_field.split(";"):
        method, sep, info = item.partition(":")
        if not sep or method.lower() != "inline":
            return None
        key_b64, *extras = info.split("|")
        try:
            key_salt = base64.b64decode(key_b64, validate=True)
        except (binascii.Error, ValueError):
            return None
        lifetime = next((e for e in extras if ":" not in e), None)
        mki = next((e for e in extras if ":" in e), None)
        keys.append(KeyParams(key_salt=key_salt, lifetime=lifetime, mki=mki))
    return Crypto(tag=int(tag), suite=suite, keys=tuple(keys), session_params=tuple(rest.split()))


def format_crypto(crypto: Crypto) -> str:
    """Format a Crypto as an `a=crypto` value (RFC 4568 §9.1)."""
    keys = []
    for key in crypto.keys:
        text = "inline:" + base64.b64encode(key.key_salt).decode("ascii")
        if key.lifetime is not None:
            text += "|" + key.lifetime
        if key.mki is not None:
            text += "|" + key.mki
        keys.append(text)
    return " ".join([str(crypto.tag), crypto.suite, ";".join(keys), *crypto.session_params])
