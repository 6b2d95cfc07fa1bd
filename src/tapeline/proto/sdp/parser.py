"""SDP text ⇄ SessionDescription: RFC 8866 §5 (grammar §9), tolerant of real SIPREC SRCs.

Strategy: read line by line (CRLF or bare LF), `<type>=<value>` only. Lines before the first
`m=` belong to the session, later ones to the last media section. Only the structure is strict
(line shape, `o=`, `c=` and `m=` fields, numbers); attribute values are kept as text and read
through the typed views of `tapeline.proto.sdp.model`. Tolerated (siprec.md §4): missing `v=`,
`o=`, `s=`, `t=` or `c=` (old OpenSIPS), `c=` only per m-line (Sonus), repeated `c=` (Cisco),
unknown attributes, trailing whitespace and blank lines.
"""

from tapeline.proto.errors import SdpParseError
from tapeline.proto.sdp.model import (
    Attribute,
    Connection,
    Field,
    MediaDescription,
    Origin,
    SessionDescription,
)

MAX_SDP_SIZE = 65_536  # a SIP datagram cannot carry more (RFC 3261 §18.1.1)
_ORIGIN_FIELDS = 6
_CONNECTION_FIELDS = 3
_MIN_MEDIA_FIELDS = 3
_MAX_PORT = 65_535


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != _ORIGIN_FIELDS:
        raise SdpParseError("o= line must have 6 fields")
    username, session_id, version, net, addr_type, address = parts
    return Origin(
        username=username,
        session_id=session_id,
        session_version=version,
        net_type=net,
        addr_type=addr_type,
        address=address,
    )


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != _CONNECTION_FIELDS:
        raise SdpParseError("c= line must have 3 fields")
    return Connection(net_type=parts[0], addr_type=parts[1], address=parts[2])


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < _MIN_MEDIA_FIELDS:
        raise SdpParseError("m= line must have media, port and proto")
    media, port_text, proto, *formats = parts
    port_text, slash, count_text = port_text.partition("/")
    if not _is_number(port_text) or int(port_text) > _MAX_PORT:
        raise SdpParseError("m= line has an invalid port")
    if slash and not _is_number(count_text):
        raise SdpParseError("m= line has an invalid port count")
    return MediaDescription(
        media=media,
        port=int(port_text),
        port_count=int(count_text) if slash else None,
        proto=proto,
        formats=tuple(formats),
    )


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if not name or any(c.isspace() for c in name):
        raise SdpParseError("a= line has an invalid attribute name")
    return Attribute(name=name, value=rest if sep else None)


def _split_lines(body: str | bytes) -> list[str]:
    if len(body) > MAX_SDP_SIZE:
        raise SdpParseError("SDP body exceeds 65536 bytes")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpParseError("SDP body is not UTF-8") from exc
    return [line.rstrip() for line in body.replace("\r\n", "\n").split("\n")]


def parse_sdp(body: str | bytes) -> SessionDescription:  # noqa: C901, PLR0912, PLR0915  # one branch per line type
    """Parse an SDP body.

    Args:
        body: The SDP text (a SIP body part), CRLF or LF line endings.

    Returns:
        The session description with every line kept.

    Raises:
        SdpParseError: The body is too large, not UTF-8, or has a malformed line.
    """
    version: int | None = None
    origin: Origin | None = None
    name: str | None = None
    connection: Connection | None = None
    timing: list[str] = []
    fields: list[Field] = []
    attributes: list[Attribute] = []
    media: list[MediaDescription] = []
    m_conns: list[Connection] = []
    m_fields: list[Field] = []
    m_attrs: list[Attribute] = []

    def close_media() -> None:
        if media:
            media[-1] = MediaDescription(
                media=media[-1].media,
                port=media[-1].port,
                port_count=media[-1].port_count,
                proto=media[-1].proto,
                formats=media[-1].formats,
                connections=tuple(m_conns),
                fields=tuple(m_fields),
                attributes=tuple(m_attrs),
            )
        m_conns.clear()
        m_fields.clear()
        m_attrs.clear()

    for line in _split_lines(body):
        if not line:
            continue
        kind, sep, value = line.partition("=")
        if not sep or len(kind) != 1 or not kind.isalpha():
            raise SdpParseError("SDP line is not <type>=<value>")
        if kind == "m":
            close_media()
            media.append(_parse_media_line(value))
        elif kind == "a":
            (m_attrs if media else attributes).append(_parse_attribute(value))
        elif kind == "c":
            conn = _parse_connection(value)
            if media:
                m_conns.append(conn)
            elif connection is None:
                connection = conn
            else:
                raise SdpParseError("repeated session-level c= line")
        elif media:
            m_fields.append(Field(type=kind, value=value))
        elif kind == "v":
            if version is not None or not _is_number(value.strip()):
                raise SdpParseError("invalid or repeated v= line")
            version = int(value)
        elif kind == "o":
            if origin is not None:
                raise SdpParseError("repeated o= line")
            origin = _parse_origin(value)
        elif kind == "s" and name is None:
            name = value
        elif kind == "t":
            timing.append(value)
        else:
            fields.append(Field(type=kind, value=value))
    close_media()
    return SessionDescription(
        version=version,
        origin=origin,
        session_name=name,
        connection=connection,
        timing=tuple(timing),
        fields=tuple(fields),
        attributes=tuple(attributes),
        media=tuple(media),
    )


def _attribute_line(attr: Attribute) -> str:
    return f"a={attr.name}" if attr.value is None else f"a={attr.name}:{attr.value}"


def serialize_sdp(sdp: SessionDescription) -> str:
    """Write a SessionDescription as SDP text with CRLF line endings (RFC 8866 §5 order).

    Args:
        sdp: The description, parsed or built by `build_answer`.

    Returns:
        The SDP body; `parse_sdp(serialize_sdp(x)) == x` for any parsed `x`.
    """
    lines: list[str] = []
    if sdp.version is not None:
        lines.append(f"v={sdp.version}")
    if sdp.origin is not None:
        o = sdp.origin
        origin = f"{o.username} {o.session_id} {o.session_version}"
        lines.append(f"o={origin} {o.net_type} {o.addr_type} {o.address}")
    if sdp.session_name is not None:
        lines.append(f"s={sdp.session_name}")
    lines.extend(f"{f.type}={f.value}" for f in sdp.fields)
    if sdp.connection is not None:
        c = sdp.connection
        lines.append(f"c={c.net_type} {c.addr_type} {c.address}")
    lines.extend(f"t={t}" for t in sdp.timing)
    lines.extend(_attribute_line(a) for a in sdp.attributes)
    for m in sdp.media:
        port = f"{m.port}/{m.port_count}" if m.port_count is not None else str(m.port)
        lines.append(" ".join([f"m={m.media}", port, m.proto, *m.formats]))
        lines.extend(f"c={c.net_type} {c.addr_type} {c.address}" for c in m.connections)
        lines.extend(f"{f.type}={f.value}" for f in m.fields)
        lines.extend(_attribute_line(a) for a in m.attributes)
    return "".join(line + "\r\n" for line in lines)
