"""The SIPREC recording server's session core (RFC 7866), without sockets or clocks.

Theory of operation: datagrams (or framed stream messages) and `now` go in; actions come out:
`Send` (bytes for a peer), `Opened` (a recording session was accepted: open its RTP ports) and
`Updated` (a re-INVITE or UPDATE changed the session: journal it, open added streams) and
`Closed` (BYE, CANCEL, timeout or shutdown: finish and file it). SIP transactions and dialogs are
`tapeline.proto.sip`'s; SDP and rs-metadata are `tapeline.proto.sdp` and `tapeline.proto.siprec`'s.
The core decides only what a recording server must: who may record here (trunks, 403 before a
port is taken), what to answer (recvonly SDP with labels echoed, `+sip.srs`), and which stream is
the recorded employee line (channel 0) and which the other party (channel 1).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tapeline.config import Trunk
from tapeline.daemon.siprec.fork import ForkMapping, map_fork, map_nbr
from tapeline.daemon.siprec.ports import PortPool, PortPoolExhausted
from tapeline.proto.errors import ParseError, SipParseError
from tapeline.proto.sdp import SessionDescription, build_answer, parse_sdp, serialize_sdp
from tapeline.proto.sip import (
    AckReceived,
    Address,
    Dialog,
    DialogSet,
    InviteCancelled,
    LayerOutput,
    RequestReceived,
    SendBytes,
    SipRequest,
    TransactionKey,
    TransactionLayer,
    TransactionTimedOut,
    build_response,
    parse_datagram,
    parse_multipart,
)
from tapeline.proto.siprec import RecordingMetadata, apply_update, map_channels, parse_metadata
from tapeline.proto.siprec.channels import ChannelMap

SDP = "application/sdp"
# `tapeline selftest` marks its calls; accepted from loopback only, filed hidden and short-lived.
SELFTEST_HEADER = "X-Tapeline-Selftest"
SDES_KEY_BYTES = 30  # AES_CM_128 master key (16) and salt (14), RFC 4568 §6.2
SDES_SUITES = frozenset({"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"})
RS_METADATA = "application/rs-metadata+xml"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"
# Option tags we honour in Require (RFC 3261 §8.2.2.3). Cisco CUBE requires 100rel and Sonus
# uses timer; a 100 then a 200 without a reliable 18x is compliant with both (siprec.md §2).
SUPPORTED_OPTIONS = frozenset({"siprec", "100rel", "timer"})
# Headers copied into a 400 for a request too broken to parse (RFC 3261 §8.2.6.2 needs them).
_ECHO = re.compile(
    rb"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[^\r\n]*", re.IGNORECASE | re.MULTILINE
)
_NEEDED = ({b"via", b"v"}, {b"from", b"f"}, {b"to", b"t"}, {b"call-id", b"i"}, {b"cseq"})
_REQUEST_LINE = re.compile(rb"^[A-Z]+ \S+ SIP/2\.0\r?\n")
ACCEPT = f"{SDP}, {RS_METADATA}, multipart/mixed"


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to send to a peer."""

    data: bytes
    addr: Address


@dataclass(frozen=True, slots=True)
class Pause:
    """A span in which one stream was paused or held (siprec.md §5.2); silence fills it."""

    index: int
    label: str | None
    start: float
    end: float


@dataclass(slots=True, kw_only=True)
class CallSession:
    """One recording session (one SIPREC dialog)."""

    call_id: str
    peer: Address
    trunk: str
    started_wall: datetime
    started: float
    offer: SessionDescription
    metadata: RecordingMetadata | None
    raw_metadata: list[bytes]
    channel_map: ChannelMap | None
    port_base: int
    port_count: int
    labels: tuple[str | None, ...]
    codecs: tuple[dict[int, tuple[str, int]], ...]
    answer: bytes
    invite: bytes = b""
    srtp: tuple[tuple[str, bytes] | None, ...] = ()
    selftest: bool = False
    dialog: Dialog | None = None
    ended: float | None = None
    end_reason: str = ""
    version: int = 1
    notes: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # our RTP port per m-line (0: refused)
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (base, count) for re-offers
    answer_keys: dict[int, bytes] = field(default_factory=dict)  # our SDES key per m-line
    sdp_id: int = 0
    paused: dict[int, float] = field(default_factory=dict)  # m-line -> when its pause began
    pauses: list[Pause] = field(default_factory=list)
    fork: ForkMapping | None = None  # a plain fork INVITE: parties from its headers
    region: str | None = None  # the trunk's region for national numbers, if it has one

    def channel_of(self, index: int) -> int:
        """Channel of m-line `index`: by metadata labels, then a fork's direction, then order."""
        label = self.labels[index]
        if self.channel_map is not None and label is not None:
            if label == self.channel_map.employee_label:
                return 0
            if label == self.channel_map.other_label:
                return 1
        if self.metadata is None and self.fork is not None and self.fork.swap and index < 2:  # noqa: PLR2004  # the two directions of a fork
            return 1 - index
        return min(index, 1)

    def port_of(self, index: int) -> int:
        """Our RTP port for m-line `index`."""
        if index < len(self.ports):
            return self.ports[index]
        return self.port_base + 2 * index

    def track_pauses(
        self, offer: SessionDescription, answer: SessionDescription, now: float
    ) -> None:
        """Open or close pause spans from a new offer (inactive, c=0.0.0.0, port 0)."""
        for index in range(len(offer.media)):
            accepted = index < len(answer.media) and answer.media[index].port != 0
            paused = accepted and offer.is_paused(index)
            if paused and index not in self.paused:
                self.paused[index] = now
            elif not paused and index in self.paused:
                self._end_pause(index, now)

    def close_pauses(self, now: float) -> None:
        """End every open pause (the call ended while paused)."""
        for index in list(self.paused):
            self._end_pause(index, now)

    def _end_pause(self, index: int, now: float) -> None:
        start = self.paused.pop(index)
        label = self.labels[index] if index < len(self.labels) else None
        self.pauses.append(Pause(index=index, label=label, start=start, end=now))


@dataclass(frozen=True, slots=True)
class Opened:
    """A session was answered 200: open its media ports."""

    session: CallSession


@dataclass(frozen=True, slots=True)
class Closed:
    """A session ended: finish its media and file it."""

    session: CallSession


@dataclass(frozen=True, slots=True)
class Updated:
    """A re-INVITE or UPDATE was applied: journal it and our answer, open any added m-lines."""

    session: CallSession
    added: tuple[int, ...]
    request: bytes
    answer: bytes


Action = Send | Opened | Updated | Closed


@dataclass(frozen=True, slots=True)
class Description:
    """What the offer and the metadata say about the streams: labels, codecs, channel map."""

    labels: tuple[str | None, ...]
    codecs: tuple[dict[int, tuple[str, int]], ...]
    channel_map: ChannelMap | None


def describe(
    offer: SessionDescription,
    answer: SessionDescription,
    metadata: RecordingMetadata | None,
    *,
    lines: Collection[str],
    normalise: Callable[[str], str | None],
) -> Description:
    """Labels and codecs per m-line (empty codecs for refused lines) and the channel map."""
    labels = tuple(m.label for m in offer.media)
    channel_map = None
    if metadata is not None:
        channel_map = map_channels(
            metadata,
            provisioned_lines=lines,
            sdp_labels=[lbl or "" for lbl in labels],
            normalise=normalise,
        )
    codecs = tuple(
        {pt: (rm.encoding, rm.clock_rate) for pt, rm in m.rtpmaps.items()} if a.port else {}
        for m, a in zip(offer.media, answer.media, strict=True)
    )
    return Description(labels=labels, codecs=codecs, channel_map=channel_map)


def _loopback(addr: Address) -> bool:
    try:
        return ipaddress.ip_address(addr[0]).is_loopback
    except ValueError:
        return False


def receive_keys(offer: SessionDescription) -> tuple[tuple[str, bytes] | None, ...]:
    """Per m-line, the SRC's own SDES suite and key (what its media is protected with)."""
    keys: list[tuple[str, bytes] | None] = []
    for media in offer.media:
        chosen = None
        if media.is_secure:
            for crypto in media.crypto:
                usable = crypto.keys and len(crypto.keys[0].key_salt) == SDES_KEY_BYTES
                if crypto.suite in SDES_SUITES and usable:
                    chosen = (crypto.suite, crypto.keys[0].key_salt)
                    break
        keys.append(chosen)
    return tuple(keys)


def split_body(req: SipRequest) -> tuple[bytes, list[bytes]]:
    """The SDP and the rs-metadata parts of an INVITE body.

    Raises:
        SipParseError: with the status to answer (415 for an unusable body).
    """
    content_type = req.content_type
    if content_type is None:
        raise SipParseError("INVITE without a body", status_hint=415)
    if content_type.media_type == SDP:
        return req.body, []
    if content_type.media_type != "multipart/mixed" or not content_type.boundary:
        raise SipParseError(f"unsupported body {content_type.media_type}", status_hint=415)
    sdp, metadata = None, []
    for part in parse_multipart(req.body, content_type.boundary):
        part_type = part.content_type.media_type if part.content_type else ""
        if part_type == SDP and sdp is None:
            sdp = part.body
        elif part_type == RS_METADATA:
            metadata.append(part.body)
    if sdp is None:
        raise SipParseError("multipart INVITE without SDP", status_hint=415)
    return sdp, metadata


def bad_request(data: bytes, addr: Address, exc: SipParseError) -> list[Action]:
    """A 400 (or the error's status) for a request too broken to parse, when it can be answered.

    Only requests get one (a response to a response would loop), and only when the headers a
    UAC needs to match it (Via, From, To, Call-ID, CSeq) can be found; otherwise it is dropped.
    """
    if not _REQUEST_LINE.match(data) or data.startswith(b"ACK "):  # never answer an ACK
        return []
    head_part = data.split(b"\r\n\r\n")[0]
    lines = [m.group(0) for m in _ECHO.finditer(head_part)]
    names = {m.group(1).lower() for m in _ECHO.finditer(head_part)}
    if not all(names & group for group in _NEEDED):
        return []
    status = exc.status_hint if 400 <= exc.status_hint < 700 else 400  # noqa: PLR2004  # 4xx-6xx
    reason = str(exc).encode("ascii", "replace")[:80].replace(b"\r", b" ").replace(b"\n", b" ")
    head = b"SIP/2.0 %d %s\r\n" % (status, reason or b"Bad Request")
    return [Send(head + b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n", addr)]


def marks_recording_session(req: SipRequest, *, has_metadata: bool) -> tuple[bool, bool]:
    """(RFC 7866 §6.2 marks both present, any mark present) for an INVITE (siprec.md §2).

    Any mark: `Require: siprec`, `+sip.src` or the draft `;src` in Contact (also inside the URI
    brackets, as Avaya SBCE and Webex put them), or a metadata part (BroadWorks sends no tag).
    """
    contact = ";".join(req.headers.get_all("Contact")).lower().replace(" ", "")
    src_tag = "+sip.src" in contact
    draft_tag = any(p == "src" or p.startswith("src>") for p in contact.split(";")[1:])
    required = "siprec" in {t.lower() for t in req.headers.get_list("Require")}
    return src_tag and required, src_tag or draft_tag or required or has_metadata


def unknown_required_part(req: SipRequest) -> bool:
    """A body part of an unknown type marked `handling=required` (RFC 3261 §20.11)."""
    content_type = req.content_type
    if content_type is None or content_type.media_type != "multipart/mixed":
        return False
    if not content_type.boundary:
        return False
    try:
        parts = parse_multipart(req.body, content_type.boundary)
    except SipParseError:
        return False
    for part in parts:
        media_type = part.content_type.media_type if part.content_type else ""
        disposition = (part.headers.get("Content-Disposition") or "").lower().replace(" ", "")
        if media_type not in {SDP, RS_METADATA, "application/rs-metadata"} and (
            "handling=required" in disposition
        ):
            return True
    return False


def split_update(req: SipRequest) -> tuple[bytes | None, list[bytes]]:
    """The SDP (None when absent) and rs-metadata parts of an in-dialog INVITE or UPDATE.

    Unlike the initial INVITE, these may carry metadata alone (a participant joined) or nothing.
    """
    content_type = req.content_type
    if content_type is None or not req.body:
        return None, []
    if content_type.media_type == RS_METADATA:
        return None, [req.body]
    try:
        sdp, metadata = split_body(req)
    except SipParseError:
        if content_type.media_type != "multipart/mixed" or not content_type.boundary:
            return None, []
        parts = parse_multipart(req.body, content_type.boundary)
        bodies = [
            p.body for p in parts if p.content_type and p.content_type.media_type == RS_METADATA
        ]
        return None, bodies
    return sdp, metadata


class SrsCore:
    """Accepts, answers and ends SIPREC sessions; one instance per listener set."""

    def __init__(  # noqa: PLR0913  # everything the core needs, given, never looked up
        self,
        *,
        trunks: Sequence[Trunk],
        lines: Collection[str],
        normalise: Callable[[str], str | None],
        ports: PortPool,
        media_address: str,
        contact: str,
        refuse_new: Callable[[], str | None] = lambda: None,
        new_key: Callable[[], bytes] = lambda: os.urandom(SDES_KEY_BYTES),
        party_headers: Sequence[str] = (),
        normalise_in: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.layer = TransactionLayer()
        self.dialogs = DialogSet()
        self.sessions: dict[str, CallSession] = {}
        self.trunks = list(trunks)
        self.lines = set(lines)
        self._normalise = normalise
        # A trunk's own region for national numbers (a London SBC sends 020..., a New York one
        # 212...): `normalise_in(aor, region)`; without it every trunk uses `normalise`.
        self._normalise_in = normalise_in
        self._ports = ports
        self._media_address = media_address
        self._contact = contact
        self._refuse_new = refuse_new
        self._new_key = new_key
        self._ids = itertools.count(1)
        self.malformed = 0
        self.draining = False  # set at shutdown: OPTIONS and new INVITEs get 503
        self.party_headers = list(party_headers)
        self._invite_keys: dict[TransactionKey, str] = {}
        # Names from verified TLS client certificates, per connection (`cert:NAME` trunks).
        self._peer_names: dict[Address, frozenset[str]] = {}

    def set_peer_names(self, addr: Address, names: frozenset[str] | None) -> None:
        """Remember (or forget, with None) the certificate names of a TLS connection."""
        if names is None:
            self._peer_names.pop(addr, None)
        else:
            self._peer_names[addr] = names

    # --- input --------------------------------------------------------------------------

    def receive_datagram(
        self, data: bytes, addr: Address, now: float, wall: datetime
    ) -> list[Action]:
        """One UDP datagram from `addr`."""
        try:
            message = parse_datagram(data)
        except SipParseError as exc:
            self.malformed += 1
            return bad_request(data, addr, exc)
        if not isinstance(message, SipRequest):
            return []  # responses to requests we never send
        return self.receive_request(message, addr, now, wall, reliable=False)

    def receive_request(
        self, request: SipRequest, addr: Address, now: float, wall: datetime, *, reliable: bool
    ) -> list[Action]:
        """One parsed request (from a datagram or a stream framer)."""
        outputs = self.layer.receive_request(request, addr=addr, reliable=reliable, now=now)
        return self._dispatch(outputs, addr, now, wall)

    def get_timer(self) -> float | None:
        """When `handle_timer` must next be called."""
        return self.layer.get_timer()

    def handle_timer(self, now: float, wall: datetime) -> list[Action]:
        """Fire due SIP timers."""
        return self._dispatch(self.layer.handle_timer(now), None, now, wall)

    def end_all(self, now: float, reason: str) -> list[Action]:
        """Close every open session (shutdown): they are filed, marked incomplete."""
        actions: list[Action] = []
        for call_id in list(self.sessions):
            actions.extend(self._close(call_id, now, reason))
        return actions

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch(
        self, outputs: list[LayerOutput], addr: Address | None, now: float, wall: datetime
    ) -> list[Action]:
        actions: list[Action] = []
        for output in outputs:
            if isinstance(output, SendBytes):
                actions.append(Send(output.data, output.addr))
            elif isinstance(output, RequestReceived):
                answered = self._answer(output, output.addr, now, wall)
                actions.extend(answered)
            elif isinstance(output, AckReceived):
                dialog = self.dialogs.match(output.request)
                if dialog is not None:
                    dialog.receive_request(output.request)
            elif isinstance(output, InviteCancelled):
                actions.extend(self._close(output.cancel.call_id, now, "cancelled"))
            elif isinstance(output, TransactionTimedOut):
                call_id = self._invite_keys.pop(output.key, None)
                if call_id is not None:
                    actions.extend(self._close(call_id, now, "no ACK"))
        del addr
        self.dialogs.remove_terminated()
        return actions

    def _respond(
        self, event: RequestReceived, status: int, now: float, **kwargs: object
    ) -> list[Action]:
        response = build_response(event.request, status, **kwargs)  # type: ignore[arg-type]  # keyword pass-through
        return [
            Send(o.data, o.addr)
            for o in self.layer.send_response(event.key, response, now=now)
            if isinstance(o, SendBytes)
        ]

    def _answer(  # noqa: PLR0911  # one answer per request kind
        self, event: RequestReceived, addr: Address, now: float, wall: datetime
    ) -> list[Action]:
        req = event.request
        if req.method == "OPTIONS" and self.draining:  # tell the SBC to fail over (siprec.md §15)
            return self._respond(event, 503, now, reason="Shutting down")
        if req.method == "OPTIONS":
            return self._respond(
                event,
                200,
                now,
                headers=[("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", "siprec")],
            )
        unsupported = [
            tag for tag in req.headers.get_list("Require") if tag.lower() not in SUPPORTED_OPTIONS
        ]
        if unsupported and req.method not in {"ACK", "CANCEL"}:
            return self._respond(event, 420, now, headers=[("Unsupported", ", ".join(unsupported))])
        if req.to_addr.tag is None:
            if req.method != "INVITE":
                return self._respond(event, 481, now)
            return self._new_session(event, addr, now, wall)
        dialog = self.dialogs.match(req)
        if dialog is None:
            return self._respond(event, 481, now)
        reject = dialog.receive_request(req)
        if reject is not None:
            return self._respond(event, reject.status_code, now, reason=reject.reason)
        session = self.sessions.get(req.call_id)
        if req.method == "BYE":
            actions = self._respond(event, 200, now)
            return actions + self._close(req.call_id, now, "bye")
        if req.method in {"INVITE", "UPDATE"} and session is not None:
            return self._reoffer(event, session, now)
        return self._respond(event, 200, now)

    def _trunk(self, addr: Address) -> Trunk | None:
        """The trunk a request comes from: by its verified certificate name, else its network."""
        names = self._peer_names.get(addr, frozenset())
        for trunk in self.trunks:
            for match in trunk.match:
                if match.startswith("cert:") and match[5:] in names:
                    return trunk
        try:
            ip = ipaddress.ip_address(addr[0])
        except ValueError:
            return None
        for trunk in self.trunks:
            for match in trunk.match:
                if not match.startswith("cert:") and ip in ipaddress.ip_network(
                    match, strict=False
                ):
                    return trunk
        return None

    def _new_session(
        self, event: RequestReceived, addr: Address, now: float, wall: datetime
    ) -> list[Action]:
        req = event.request
        selftest = req.headers.get(SELFTEST_HEADER) is not None and _loopback(addr)
        trunk, status, reason = self._admit(req, addr, selftest=selftest)
        if trunk is None:
            return self._respond(event, status, now, reason=reason)
        try:
            sdp_bytes, raw_metadata = split_body(req)
            offer = parse_sdp(sdp_bytes)
            metadata = parse_metadata(raw_metadata[0]) if raw_metadata else None
        except SipParseError as exc:
            return self._respond(event, exc.status_hint, now)
        except ParseError:
            return self._respond(event, 400, now, reason="Bad SDP or recording metadata")
        count = len(offer.media)
        try:
            base = self._ports.allocate(count)
        except PortPoolExhausted:
            return self._respond(event, 503, now, reason="No media ports free")
        srtp = receive_keys(offer)
        answer_keys = {i: self._new_key() for i, keys in enumerate(srtp) if keys is not None}
        sdp_id = next(self._ids)
        answer = build_answer(
            offer,
            srtp_keys=answer_keys,
            address=self._media_address,
            ports=[base + 2 * i for i in range(count)],
            session_id=sdp_id,
            session_version=1,
        )
        if all(m.port == 0 for m in answer.media):
            self._ports.release(base, count)
            return self._respond(event, 488, now)
        normalise = self._normaliser(trunk.region)
        described = describe(offer, answer, metadata, lines=self.lines, normalise=normalise)
        body = serialize_sdp(answer).encode()
        tag = f"srs{next(self._ids)}"
        response = build_response(
            req, 200, to_tag=tag, contact=self._contact, body=body, content_type=SDP
        )
        dialog = Dialog.from_invite(req, local_tag=tag)
        dialog.response_sent(response)
        self.dialogs.add(dialog)
        session = CallSession(
            call_id=req.call_id,
            peer=addr,
            trunk=trunk.name,
            started_wall=wall,
            started=now,
            offer=offer,
            metadata=metadata,
            raw_metadata=raw_metadata,
            channel_map=described.channel_map,
            port_base=base,
            port_count=count,
            labels=described.labels,
            codecs=described.codecs,
            answer=body,
            dialog=dialog,
            invite=req.raw,
            srtp=srtp,
            selftest=selftest,
            ports=[base + 2 * i for i in range(count)],
            answer_keys=answer_keys,
            sdp_id=sdp_id,
            fork=None if metadata is not None else self._fork(req, trunk),
            region=trunk.region,
        )
        # An RS may start paused (Cisco opens it inactive until the call is answered).
        session.track_pauses(offer, answer, now)
        self.sessions[req.call_id] = session
        self._invite_keys[event.key] = req.call_id
        sends = [
            Send(o.data, o.addr)
            for o in self.layer.send_response(event.key, response, now=now)
            if isinstance(o, SendBytes)
        ]
        return [*sends, Opened(session)]

    def _admit(
        self, req: SipRequest, addr: Address, *, selftest: bool
    ) -> tuple[Trunk | None, int, str]:
        """The trunk a new INVITE records on, or (None, status, reason) to refuse it.

        Checked before any port is taken: the source (403), storage (503), and on a `strict`
        trunk the RFC 7866 §6.2 marks (403) and unknown required body parts (415).
        """
        trunk = self._trunk(addr)
        if trunk is None and selftest:
            trunk = Trunk(
                name="selftest", match=[f"{addr[0]}/32" if ":" not in addr[0] else "::1/128"]
            )
        if trunk is None:
            return None, 403, "Not a configured recording source"
        if self.draining:
            return None, 503, "Shutting down"
        refusal = self._refuse_new()
        if refusal is not None:
            return None, 503, refusal
        if trunk.mode == "strict" and not selftest:
            has_metadata = RS_METADATA.encode() in req.body.lower()
            both, _ = marks_recording_session(req, has_metadata=has_metadata)
            if not both:
                return None, 403, "Not a recording session"
            if unknown_required_part(req):
                return None, 415, "Unknown required body part"
        return trunk, 200, ""

    def _fork(self, req: SipRequest, trunk: Trunk) -> ForkMapping:
        """Parties of an INVITE without metadata: NBR headers on an `nbr` trunk, else a fork."""
        if trunk.mode == "nbr":
            nbr = map_nbr(req, lines=self.lines, normalise=self._normaliser(trunk.region))
            if nbr is not None:
                return nbr
        return map_fork(
            req,
            lines=self.lines,
            normalise=self._normaliser(trunk.region),
            extra_headers=self.party_headers,
        )

    def _normaliser(self, region: str | None) -> Callable[[str], str | None]:
        normalise_in = self._normalise_in
        if region is None or normalise_in is None:
            return self._normalise
        return lambda aor: normalise_in(aor, region)

    def _reoffer(self, event: RequestReceived, session: CallSession, now: float) -> list[Action]:
        """Apply an in-dialog INVITE/UPDATE: new metadata, new or paused streams, a new answer."""
        req = event.request
        sdp_bytes, raw = split_update(req)
        metadata_changed = self._apply_metadata(session, raw)
        added: tuple[int, ...] = ()
        if sdp_bytes is not None:
            try:
                offer = parse_sdp(sdp_bytes)
            except ParseError:
                return self._respond(event, 488, now, reason="Bad SDP")
            count, known = len(offer.media), len(session.ports)
            if count < known:  # RFC 3264 §8: m-lines are never removed, only set to port 0
                return self._respond(event, 488, now, reason="m-lines cannot be removed")
            if count > known:
                try:
                    base = self._ports.allocate(count - known)
                except PortPoolExhausted:
                    return self._respond(event, 503, now, reason="No media ports free")
                session.blocks.append((base, count - known))
                session.ports.extend(base + 2 * i for i in range(count - known))
                added = tuple(range(known, count))
            srtp = receive_keys(offer)
            for index, keys in enumerate(srtp):
                if keys is not None and index not in session.answer_keys:
                    session.answer_keys[index] = self._new_key()
            answer = self._build(session, offer, session.version)
            body = serialize_sdp(answer).encode()
            if body != session.answer:  # RFC 3264 §8: a changed answer gets a new o= version
                answer = self._build(session, offer, session.version + 1)
                body = serialize_sdp(answer).encode()
                session.version += 1
            session.track_pauses(offer, answer, now)
            session.offer = offer
            session.answer = body
            session.srtp = srtp
            metadata_changed = True
        if metadata_changed:
            described = describe(
                session.offer,
                parse_sdp(session.answer),
                session.metadata,
                lines=self.lines,
                normalise=self._normaliser(session.region),
            )
            session.labels = described.labels
            session.codecs = described.codecs
            session.channel_map = described.channel_map or session.channel_map
        actions = self._respond(
            event, 200, now, contact=self._contact, body=session.answer, content_type=SDP
        )
        return [*actions, Updated(session, added, req.raw, session.answer)]

    def _build(
        self, session: CallSession, offer: SessionDescription, version: int
    ) -> SessionDescription:
        return build_answer(
            offer,
            srtp_keys=session.answer_keys,
            address=self._media_address,
            ports=session.ports,
            session_id=session.sdp_id,
            session_version=version,
        )

    @staticmethod
    def _apply_metadata(session: CallSession, raw: list[bytes]) -> bool:
        """Merge metadata updates (RFC 7865 partial updates) into the session; True if any."""
        for body in raw:
            session.raw_metadata.append(body)
            try:
                update = parse_metadata(body)
            except ParseError:
                session.notes.append("unparsable metadata update kept raw")
                continue
            session.metadata = (
                update if session.metadata is None else apply_update(session.metadata, update)
            )
        return bool(raw)

    def _close(self, call_id: str, now: float, reason: str) -> list[Action]:
        session = self.sessions.pop(call_id, None)
        if session is None:
            return []
        session.ended = now
        session.end_reason = reason
        session.close_pauses(now)
        self._invite_keys = {k: v for k, v in self._invite_keys.items() if v != call_id}
        self._ports.release(session.port_base, session.port_count)
        for base, count in session.blocks:
            self._ports.release(base, count)
        return [Closed(session)]
