"""rs-metadata XML → RecordingMetadata: RFC 7865 §5 to §7 in every dialect of siprec.md §10.

Strategy: no XSD validation (vendors break element order, ID types and namespaces, §9.1). Elements
are matched by local name in any of the three recording namespaces, or none; `datamode` matches
case-insensitively (`dataMode` from Avaya, BroadWorks, Intrado). The draft attributes `id`,
`session` and `group` stand in for `*_id`; inline `participant/send` (draft) and `send/id`
(BroadWorks) land on `Participant.send`; BroadWorks `<aor>` text becomes a NameId. Unknown
elements in any namespace are kept as raw XML in `extensions`; vendor fields that give direction
or the recorded party feed `CallHints` (§11.2). One ID used for two element types is an error
for that portion only: it is skipped and noted in `anomalies` (RFC 7865 §6.10).
"""

import xml.etree.ElementTree as ET  # only to serialise extension elements back to text
from collections.abc import Iterator

from tapeline.proto.errors import SiprecMetadataError
from tapeline.proto.siprec.model import (
    CallDirection,
    CallHints,
    DataMode,
    Dialect,
    Group,
    NameId,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    RecordingMetadata,
    ReportedTime,
    Session,
    SessionRecordingAssoc,
    SnapshotRequest,
    Stream,
    parse_time,
)
from tapeline.proto.siprec.safexml import parse_xml

RECORDING_NAMESPACE = "urn:ietf:params:xml:ns:recording:1"  # RFC 7865 §5.1.1
NAMESPACES: dict[str, Dialect] = {
    RECORDING_NAMESPACE: Dialect.RFC7865,
    "urn:ietf:params:xml:ns:recording": Dialect.DRAFT,
    "urn:ietf:params:xml:ns:siprec": Dialect.BROADWORKS,
    "": Dialect.NO_NAMESPACE,
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_CALLING_ROLES = frozenset({"calling", "caller", "originator", "true"})
_CALLED_ROLES = frozenset({"called", "callee", "false"})
_CORRELATION = frozenset({"gcid", "ucid", "avayaucid", "exttrackingid", "genesysuuid"})


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _ours(el: ET.Element) -> str | None:
    """Return the lower-case local name of a recording-namespace element, else None."""
    ns, local = _split(el.tag)
    return local.lower() if ns in NAMESPACES else None


def _text(el: ET.Element) -> str:
    return " ".join("".join(el.itertext()).split())


def _attr(el: ET.Element, *names: str) -> str | None:
    return next((el.attrib[n].strip() for n in names if n in el.attrib), None)


def _raw(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode").strip()


def _ids(el: ET.Element) -> tuple[str, ...]:
    """Read a `send`/`recv` value: text (RFC 7865) or `<id>` children (BroadWorks)."""
    inner = [_text(c) for c in el if _ours(c) == "id"]
    return tuple(inner) if inner else ((_text(el),) if _text(el) else ())


class _Reader:
    """Collects one document's elements; one instance per `parse_metadata` call."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.datamode = DataMode.COMPLETE
        self.recording_id: str | None = None
        self.groups: list[Group] = []
        self.sessions: list[Session] = []
        self.participants: list[Participant] = []
        self.streams: list[Stream] = []
        self.sras: list[SessionRecordingAssoc] = []
        self.psas: list[ParticipantSessionAssoc] = []
        self.pstas: list[ParticipantStreamAssoc] = []
        self.extensions: list[str] = []
        self.anomalies: list[str] = []
        self.hints: dict[str, str] = {}
        self.correlation: list[str] = []
        self.direction: CallDirection | None = None
        self._kinds: dict[str, str] = {}

    def claim(self, kind: str, element_id: str | None) -> str | None:
        if element_id is None:
            self.anomalies.append(f"{kind} without an id ignored")
            return None
        if element_id and self._kinds.setdefault(element_id, kind) != kind:
            self.anomalies.append(
                f"id {element_id!r} used for {self._kinds[element_id]} and {kind}"
            )
            return None
        return element_id

    def scan_hints(self, el: ET.Element) -> bool | None:
        """Lift vendor fields out of an extension subtree; return a participant calling flag."""
        calling: bool | None = None
        for node in el.iter():
            local = _split(node.tag)[1].lower()
            value = _text(node)
            if local in {"callingparty", "role"} and value.lower() in _CALLING_ROLES:
                calling = True
            elif local in {"callingparty", "role"} and value.lower() in _CALLED_ROLES:
                calling = False
            elif local == "calltype" and value.lower() in {"originating", "terminating"}:
                self.direction = CallDirection(value.lower())
            elif local == "origcall":
                self.direction = CallDirection.ORIGINATING
            elif local == "termcall":
                self.direction = CallDirection.TERMINATING
            elif local in _CORRELATION and value:
                self.correlation.append(value)
            elif value and local in {
                "recordedparty",
                "userid",
                "callingpartynumber",
                "calledpartynumber",
                "fromhdr",
                "tohdr",
                "callid",
            }:
                self.hints.setdefault(local, value)
        return calling

    def times(self, el: ET.Element) -> dict[str, ReportedTime]:
        found: dict[str, ReportedTime] = {}
        for child in el:
            local = _ours(child)
            if local in {"associate-time", "disassociate-time", "start-time", "stop-time"}:
                found[local] = parse_time(_text(child))
        return found

    def extension_children(self, el: ET.Element, known: frozenset[str]) -> list[str]:
        kept = []
        for child in el:
            if _ours(child) not in known:
                kept.append(_raw(child))
                self.scan_hints(child)
        return kept


_TIME_NAMES = frozenset({"associate-time", "disassociate-time", "start-time", "stop-time"})


def _read_group(r: _Reader, el: ET.Element) -> None:
    group_id = r.claim("group", _attr(el, "group_id", "id"))
    if group_id is None:
        return
    t = r.times(el)
    r.groups.append(
        Group(
            group_id=group_id,
            associate_time=t.get("associate-time"),
            disassociate_time=t.get("disassociate-time"),
            extensions=tuple(r.extension_children(el, _TIME_NAMES)),
        )
    )


def _read_session(r: _Reader, el: ET.Element) -> None:
    session_id = r.claim("session", _attr(el, "session_id", "id"))
    if session_id is None:
        return
    t = r.times(el)
    known = _TIME_NAMES | {"sipsessionid", "group-ref", "reason"}
    group_ref = next((_text(c) for c in el if _ours(c) == "group-ref"), _attr(el, "group"))
    r.sessions.append(
        Session(
            session_id=session_id,
            sip_session_ids=tuple(_text(c) for c in el if _ours(c) == "sipsessionid"),
            group_ref=group_ref or None,
            start_time=t.get("start-time"),
            stop_time=t.get("stop-time"),
            associate_time=t.get("associate-time"),
            reasons=tuple(_text(c) for c in el if _ours(c) == "reason"),
            extensions=tuple(r.extension_children(el, known)),
        )
    )


def _name_ids(el: ET.Element) -> Iterator[NameId]:
    for child in el:
        local = _ours(child)
        if local == "nameid":
            names = [_text(n) for n in child if _ours(n) == "name"]
            name = names[0] if names and names[0] else None
            yield NameId(aor=(child.attrib.get("aor") or "").strip(), name=name)
        elif local == "aor" and _text(child):
            yield NameId(aor=_text(child))


def _read_participant(r: _Reader, el: ET.Element) -> None:
    participant_id = r.claim("participant", _attr(el, "participant_id", "id"))
    if participant_id is None:
        return
    t = r.times(el)
    known = _TIME_NAMES | {"nameid", "aor", "send", "recv", "name"}
    calling = None
    extensions = []
    for child in el:
        if _ours(child) not in known:
            extensions.append(_raw(child))
            flag = r.scan_hints(child)
            calling = flag if flag is not None else calling
    r.participants.append(
        Participant(
            participant_id=participant_id,
            name_ids=tuple(_name_ids(el)),
            session_id=_attr(el, "session", "session_id"),
            send=tuple(i for c in el if _ours(c) == "send" for i in _ids(c)),
            recv=tuple(i for c in el if _ours(c) == "recv" for i in _ids(c)),
            calling=calling,
            associate_time=t.get("associate-time"),
            disassociate_time=t.get("disassociate-time"),
            extensions=tuple(extensions),
        )
    )


def _read_stream(r: _Reader, el: ET.Element) -> None:
    stream_id = r.claim("stream", _attr(el, "stream_id", "id"))
    if stream_id is None:
        return
    t = r.times(el)
    label = next((_text(c) for c in el if _ours(c) == "label"), None)
    mode = next((_text(c).lower() for c in el if _ours(c) == "mode"), None)
    r.streams.append(
        Stream(
            stream_id=stream_id,
            session_id=_attr(el, "session_id", "session"),
            label=label,
            mode=mode,
            associate_time=t.get("associate-time"),
            disassociate_time=t.get("disassociate-time"),
            extensions=tuple(r.extension_children(el, _TIME_NAMES | {"label", "mode"})),
        )
    )


def _read_association(r: _Reader, el: ET.Element, local: str) -> None:
    t = r.times(el)
    participant_id = _attr(el, "participant_id", "participant")
    session_id = _attr(el, "session_id", "session")
    assoc, dissoc = t.get("associate-time"), t.get("disassociate-time")
    if local == "sessionrecordingassoc" and session_id is not None:
        r.sras.append(
            SessionRecordingAssoc(
                session_id=session_id, associate_time=assoc, disassociate_time=dissoc
            )
        )
    elif local == "participantsessionassoc" and participant_id is not None and session_id:
        r.psas.append(
            ParticipantSessionAssoc(
                participant_id=participant_id,
                session_id=session_id,
                associate_time=assoc,
                disassociate_time=dissoc,
            )
        )
    elif local == "participantstreamassoc" and participant_id is not None:
        r.pstas.append(
            ParticipantStreamAssoc(
                participant_id=participant_id,
                send=tuple(i for c in el if _ours(c) == "send" for i in _ids(c)),
                recv=tuple(i for c in el if _ours(c) == "recv" for i in _ids(c)),
                associate_time=assoc,
                disassociate_time=dissoc,
            )
        )
    else:
        r.anomalies.append(f"{local} without its ids ignored")


def _read_child(r: _Reader, child: ET.Element) -> None:
    local = _ours(child)
    if local == "datamode":
        value = _text(child).lower()
        if value not in {DataMode.COMPLETE, DataMode.PARTIAL}:
            raise SiprecMetadataError(f"unknown datamode {value[:32]!r}")
        r.datamode = DataMode(value)
    elif local == "group":
        _read_group(r, child)
    elif local == "session":
        _read_session(r, child)
    elif local == "participant":
        _read_participant(r, child)
    elif local == "stream":
        _read_stream(r, child)
    elif local in {"sessionrecordingassoc", "participantsessionassoc", "participantstreamassoc"}:
        _read_association(r, child, local)
    elif local == "recording" and r.dialect is Dialect.BROADWORKS:
        r.recording_id = _attr(child, "id")
    else:
        r.extensions.append(_raw(child))
        r.scan_hints(child)


def parse_metadata(body: str | bytes) -> RecordingMetadata:
    """Parse one rs-metadata document (complete snapshot or partial update).

    Args:
        body: The metadata body part as received (`application/rs-metadata+xml` or
            `application/rs-metadata`), with or without a BOM or leading whitespace.

    Returns:
        The document in the normalised model; merge partial updates with `apply_update`.

    Raises:
        SiprecMetadataError: Not well-formed, a DOCTYPE, too large or deep, an unknown root or
            namespace, or an unknown `datamode` value.
    """
    root = parse_xml(body)
    ns, local = _split(root.tag)
    if ns not in NAMESPACES:
        raise SiprecMetadataError(f"unknown metadata namespace {ns[:64]!r}")
    dialect = NAMESPACES[ns]
    if local not in {"recording", "recording_metadata"}:
        raise SiprecMetadataError(f"unexpected root element {local[:32]!r}")
    if local == "recording_metadata":
        dialect = Dialect.BROADWORKS
    reader = _Reader(dialect)
    reader.recording_id = _attr(root, "id")
    for child in root:
        _read_child(reader, child)
    h = reader.hints
    return RecordingMetadata(
        dialect=dialect,
        datamode=reader.datamode,
        recording_id=reader.recording_id,
        groups=tuple(reader.groups),
        sessions=tuple(reader.sessions),
        participants=tuple(reader.participants),
        streams=tuple(reader.streams),
        session_recording_assocs=tuple(reader.sras),
        participant_session_assocs=tuple(reader.psas),
        participant_stream_assocs=tuple(reader.pstas),
        hints=CallHints(
            direction=reader.direction,
            recorded_party=h.get("recordedparty"),
            user_id=h.get("userid"),
            calling_number=h.get("callingpartynumber"),
            called_number=h.get("calledpartynumber"),
            from_header=h.get("fromhdr"),
            to_header=h.get("tohdr"),
            call_id=h.get("callid"),
            correlation_ids=tuple(reader.correlation),
        ),
        extensions=tuple(reader.extensions),
        anomalies=tuple(reader.anomalies),
    )


def parse_snapshot_request(body: str | bytes) -> SnapshotRequest:
    """Parse a `requestsnapshot` document (RFC 7865 §7).

    Args:
        body: The XML body.

    Returns:
        The request with its optional reason.

    Raises:
        SiprecMetadataError: Not well-formed, or the root is not `requestsnapshot`.
    """
    root = parse_xml(body)
    if _ours(root) != "requestsnapshot":
        raise SiprecMetadataError("root element is not requestsnapshot")
    reason = next((c for c in root if _ours(c) == "requestreason"), None)
    if reason is None:
        return SnapshotRequest()
    return SnapshotRequest(reason=_text(reason) or None, lang=reason.attrib.get(_XML_LANG))


def serialize_snapshot_request(request: SnapshotRequest) -> str:
    """Write a `requestsnapshot` body to send as `application/rs-metadata+xml` (RFC 7866 §9.2).

    Args:
        request: The request.

    Returns:
        The XML document text.
    """
    root = ET.Element("requestsnapshot", {"xmlns": RECORDING_NAMESPACE})
    if request.reason is not None:
        reason = ET.SubElement(root, "requestreason")
        reason.text = request.reason
        if request.lang is not None:
            reason.set("xml:lang", request.lang)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
