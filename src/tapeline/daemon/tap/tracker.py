"""The passive tap's call tracker: capture records in, calls with their media out (sans-IO).

Theory of operation: every record goes through `proto.net.PacketDecoder` (link layers, IP
defragmentation, TCP reassembly). UDP datagrams and TCP stream bytes that carry SIP (a configured
port, or a SIP start line on any port) become messages grouped by Call-ID; an INVITE opens a
`TapCall`. SDP in any message of a call tells which address the *sender* of that message
receives media on; an RTP datagram is routed by, in order:

* `sdp`: its destination is a side's SDP address, so the other side sent it;
* `symmetric`: its source is a side's SDP address (NAT in front of the receiver: the packet goes
  to the translated address, but it leaves from the address the sender advertised);
* `port`: its destination port is a side's SDP port on another address (a NAT or SBC rewrote
  the address but kept the port), only when exactly one open call owns that port;
* `timing`: several calls own that port, and exactly one of them still waits for its first
  packet in this direction (the flow that starts now belongs to the call that is starting).

A flow matched by port or timing is learned by its real destination, so its later packets route
exactly even when another call announces the same port afterwards.

The rule that routed each direction is kept on the call, so a reviewer sees how media was matched.
A call ends on BYE or CANCEL, on a final error to its INVITE, when nothing of it was seen for
`media_timeout` seconds, or at the end of the capture. Packets still arrive for a moment after a
BYE (the far end has not stopped sending yet), so a call ends at its BYE but is handed out only
`linger` seconds later, with those packets counted and decoded.

Forking (RFC 3261 §13.2.2.4, §16.7): a proxy may send the INVITE to several phones, each answering
with its own To tag. Every branch is kept in `TapCall.forks` with the responses it sent; the first
2xx picks the dialog that is recorded. A second 2xx from another branch is ACKed and BYEd by the
caller at once: that BYE ends the branch, not the call, and its SDP never steers media. A CANCEL
that crosses the 2xx (the caller hung up while the phone answered) is undone by the 2xx.

Encrypted signalling: a TCP stream that starts with a TLS record (SIP over TLS, port 5061) cannot
be read. Its two hosts are remembered, and RTP to or from them that no SDP announced becomes an
orphan record flagged `tls_signalling`, so the call is still kept from its media. Whether an
G.711 orphan's payload is encrypted (SRTP whose SDES keys travelled inside that TLS) is judged from
the byte entropy of its first payloads: ciphertext is not decoded to noise and filed as audio.
Only G.711: compressed codecs (G.729, G.723.1, G.722) measure as high as ciphertext (7.9 bits per
byte in the rtpproxy corpus captures, against 7.95 for its SRTP pair), so for them it is unknown.

Nothing here reads a clock or a socket: time is the capture timestamp of the records, and the live
adapter drives `handle_timer` with its own clock between packets.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Final, TypeAlias

from tapeline.daemon.siprec.core import receive_keys
from tapeline.media.formats import PayloadFormat
from tapeline.media.session import MediaSession, MediaStream
from tapeline.media.srtp import CryptoSuite, SrtpReceiver
from tapeline.proto.errors import ParseError
from tapeline.proto.net import (
    NEED_DATA,
    FlowKey,
    PacketDecoder,
    PacketRecord,
    Sentinel,
    StreamClosed,
    StreamData,
    UdpDatagram,
)
from tapeline.proto.net.ip import IPAddress
from tapeline.proto.sdp import parse_sdp
from tapeline.proto.sip import (
    CONNECTION_CLOSED,
    NameAddr,
    SipFramer,
    SipMessage,
    SipRequest,
    SipResponse,
    parse_datagram,
)
from tapeline.proto.sip import NEED_DATA as SIP_NEED_DATA

NS: Final = 1_000_000_000
DEFAULT_MEDIA_TIMEOUT: Final = 60.0
DEFAULT_LINGER: Final = 2.0
TIMER_C: Final = 180.0
DEFAULT_ORPHAN_MIN_PACKETS: Final = 50  # one second of 20 ms packets
DEFAULT_MAX_ORPHANS: Final = 1000
ENTROPY_SAMPLE: Final = 4096  # payload bytes judged: ~26 packets of 20 ms G.711
# 4 KiB of ciphertext measures 7.955 bits/byte (8 minus the small-sample bias 255/(2n ln 2)), give
# or take 0.005; the loudest real G.711 in the corpus (the classic call's relay leg) measures 7.74.
# 7.9 sits ten deviations below ciphertext and well above speech. A flow too short to fill the
# sample is not judged (and is decoded).
ENCRYPTED_ENTROPY: Final = 7.9
TLS_MEMORY: Final = 3600.0  # seconds a host that spoke TLS keeps flagging its media
_TLS_CONTENT_TYPES: Final = frozenset({20, 21, 22, 23})  # RFC 8446 §5.1 record types
_TLS_MAJOR: Final = 3
_TLS_HEADER: Final = 5
_G711: Final = frozenset({"PCMU", "PCMA"})
_G711_PTS: Final = frozenset({0, 8})  # RFC 3551 static payload types
_RTP_HEADER: Final = 12
_RTP_VERSION: Final = 2
SUCCESS_MIN: Final = 200
FAILURE_MIN: Final = 300
_SIP_PREFIXES: Final = (
    b"SIP/2.0 ",
    b"INVITE ",
    b"ACK ",
    b"BYE ",
    b"CANCEL ",
    b"UPDATE ",
    b"PRACK ",
    b"OPTIONS ",
    b"REGISTER ",
    b"INFO ",
    b"REFER ",
    b"NOTIFY ",
    b"SUBSCRIBE ",
    b"MESSAGE ",
)
Endpoint: TypeAlias = tuple[IPAddress, int]


class Side(enum.IntEnum):
    """The two ends of a dialog, by who sent the INVITE."""

    CALLER = 0
    CALLEE = 1

    @property
    def other(self) -> Side:
        """The opposite side."""
        return Side.CALLEE if self is Side.CALLER else Side.CALLER


@dataclass(slots=True, kw_only=True)
class TapCall:
    """One observed SIP dialog and its media.

    Attributes:
        call_id: the SIP Call-ID.
        started: capture time of the INVITE, in seconds.
        caller / callee: From and To of the INVITE.
        transport: "udp" or "tcp".
        employee: the side that is a recorded line (channel 0); the caller when neither is.
        direction: "inbound" (the callee is a line), "outbound" (the caller is) or "unknown".
        media: the media pipeline; one stream per sending side, created at its first packet.
        rtp_packets: RTP packets routed, per sending side (RTCP not included).
        rules: the routing rule that first matched each sending side.
        rtp_first / rtp_last: capture time of each side's first and last RTP packet.
        transfers: each REFER seen in the dialog (who asked, Refer-To, Referred-By), so the
            transferred call can be linked to this one.
        final_status: the final response to the INVITE, when one was seen.
        dialog_tag: the To tag of the branch whose 2xx was taken (the recorded dialog).
        forks: per callee-side tag, what that branch did: its response codes to the INVITE and,
            for a branch answered after another, how it ended ("bye").
        branch_endpoints: callee-side media endpoints announced before the answer, by branch.
        lost_endpoints: media endpoints of branches that were not taken; their packets are
            counted in `stray_packets` and kept out of the recording.
    """

    call_id: str
    started: float
    caller: NameAddr
    callee: NameAddr
    transport: str
    employee: Side
    direction: str
    media: MediaSession
    caller_tag: str | None
    invite_cseq: int = 0
    answered: float | None = None
    ended: float | None = None
    end_reason: str = ""
    final_status: int | None = None
    last_seen: float = 0.0
    sip_messages: int = 0
    endpoints: dict[Side, set[Endpoint]] = field(
        default_factory=lambda: {Side.CALLER: set(), Side.CALLEE: set()}
    )
    formats: dict[int, PayloadFormat] = field(default_factory=dict)
    keys: dict[Side, tuple[str, bytes]] = field(default_factory=dict)
    streams: dict[Side, MediaStream] = field(default_factory=dict)
    rtp_packets: dict[Side, int] = field(default_factory=lambda: {Side.CALLER: 0, Side.CALLEE: 0})
    rules: dict[Side, str] = field(default_factory=dict)
    transfers: list[dict[str, str | None]] = field(default_factory=list)
    rtp_first: dict[Side, float] = field(default_factory=dict)
    rtp_last: dict[Side, float] = field(default_factory=dict)
    dialog_tag: str | None = None
    forks: dict[str, dict[str, object]] = field(default_factory=dict)
    branch_endpoints: dict[Endpoint, str] = field(default_factory=dict)
    lost_endpoints: dict[Endpoint, str] = field(default_factory=dict)
    stray_packets: int = 0

    def channel_of(self, side: Side) -> int:
        """Recording channel of what `side` sends: 0 for the employee line, 1 for the other."""
        return 0 if side is self.employee else 1


@dataclass(slots=True, kw_only=True)
class OrphanFlow:
    """RTP on a 5-tuple no signalling announced (no SIP seen, or SIP the tap could not read).

    Attributes:
        src, sport, dst, dport: the flow.
        media: its media pipeline, one stream on channel 0.
        rtp_packets: RTP packets seen.
        keyed: an SRTP key was given for it (`--srtp-key`), so ciphertext is decrypted.
        g711: its codec is G.711 (static payload type 0 or 8, or named so by `--rtp-codec`).
        tls_signalling: one of its hosts also spoke TLS (SIP the tap could not read).
        entropy: bits per byte of the first payloads of a G.711 flow (None until enough were
            seen, and for other codecs); near 8 means ciphertext (SRTP without its keys), G.711
            speech stays well below.
        partner: the flow the other way between the same two endpoints, when there is one: the
            two are one conversation, recorded in one media session (this flow on channel 0,
            the later one on channel 1) and filed as one record once both went quiet.
    """

    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    started: float
    media: MediaSession
    stream: MediaStream
    last_seen: float
    rtp_packets: int = 0
    keyed: bool = False
    g711: bool = False
    tls_signalling: bool = False
    entropy: float | None = None
    sample: bytearray = field(default_factory=bytearray)
    partner: OrphanFlow | None = field(default=None, repr=False, compare=False)

    @property
    def flows(self) -> list[OrphanFlow]:
        """This flow and its partner, in channel order."""
        return [self] if self.partner is None else [self, self.partner]

    @property
    def encrypted(self) -> bool:
        """Whether the payload looks like ciphertext (and must not be decoded as audio)."""
        return self.entropy is not None and self.entropy >= ENCRYPTED_ENTROPY


@dataclass(frozen=True, slots=True, kw_only=True)
class OrphanEnded:
    """An orphan flow (with its partner) went quiet or the capture ended, worth a record."""

    flow: OrphanFlow


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted:
    """An INVITE opened a call."""

    call: TapCall


@dataclass(frozen=True, slots=True, kw_only=True)
class CallPacket:
    """A datagram (SIP message or media) that belongs to a call: journal it before anything else.

    SIP that came over TCP is given as the reassembled message with the connection's addresses,
    so a journal replays through the same tracker as UDP.
    """

    call: TapCall
    ts_ns: int
    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    payload: bytes
    frame: bytes | None = None
    """The captured frame when it carried the datagram whole; else the journal builds one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    """A call is over and its media complete: finish it and file it."""

    call: TapCall


TrackerEvent: TypeAlias = CallStarted | CallPacket | CallEnded | OrphanEnded


@dataclass(slots=True)
class TrackerCounters:
    """What the tracker saw (for /metrics, stats and the import summary)."""

    sip_messages: int = 0
    sip_malformed: int = 0
    rtp_routed: int = 0
    unmatched_udp: int = 0
    calls_started: int = 0
    calls_ended: int = 0
    dropped_frames: int = 0
    orphan_flows: int = 0
    orphans_ignored: int = 0
    orphans_over_limit: int = 0
    tls_streams: int = 0


def _looks_like_sip(payload: bytes) -> bool:
    return payload.startswith(_SIP_PREFIXES)


class CallTracker:
    """Follows SIP dialogs and routes their RTP from decoded capture records.

    Args:
        sip_ports: UDP/TCP ports whose traffic is SIP; other ports are SIP only when a datagram
            or a TCP stream starts with a SIP start line.
        is_line: whether a From/To URI is a recorded employee line (from `[[lines]]`).
        media_timeout: seconds without signalling or media after which a call is ended.
        linger: seconds a call keeps collecting media after its BYE or CANCEL.
        orphan_min_packets: RTP packets an unsignalled flow needs to become an `orphan_stream`
            record (fewer are counted and forgotten: a mirror port carries stray UDP).
        max_orphans: unsignalled flows followed at once (memory bound); more are counted.
        orphan_codecs: per destination (address, port), the codec of a flow without SDP.
        orphan_keys: per destination (address, port), the SDES suite and key of such a flow.
    """

    def __init__(  # noqa: PLR0913  # every knob is keyword-only and defaulted
        self,
        *,
        sip_ports: frozenset[int] = frozenset({5060}),
        is_line: Callable[[str], bool] = lambda _uri: False,
        media_timeout: float = DEFAULT_MEDIA_TIMEOUT,
        linger: float = DEFAULT_LINGER,
        orphan_min_packets: int = DEFAULT_ORPHAN_MIN_PACKETS,
        max_orphans: int = DEFAULT_MAX_ORPHANS,
        orphan_codecs: Mapping[Endpoint, tuple[str, int]] | None = None,
        orphan_keys: Mapping[Endpoint, tuple[str, bytes]] | None = None,
    ) -> None:
        self._sip_ports = sip_ports
        self.is_line = is_line
        """Replaceable (SIGHUP reload): used for calls that start afterwards."""
        self._timeout = media_timeout
        self._linger = linger
        self._decoder = PacketDecoder()
        self._events: deque[TrackerEvent] = deque()
        self._calls: dict[str, TapCall] = {}
        self._by_endpoint: dict[Endpoint, tuple[TapCall, Side]] = {}
        self._by_port: dict[int, list[tuple[TapCall, Side]]] = {}
        self._framers: dict[FlowKey, SipFramer | None] = {}
        self._orphans: dict[tuple[Endpoint, Endpoint], OrphanFlow] = {}
        self._orphan_min = orphan_min_packets
        self._max_orphans = max_orphans
        self._orphan_codecs = dict(orphan_codecs or {})
        self._orphan_keys = dict(orphan_keys or {})
        self._tls_hosts: dict[IPAddress, float] = {}
        self._tls_flows: set[FlowKey] = set()
        self.counters = TrackerCounters()

    @property
    def open_calls(self) -> int:
        """Calls not yet handed out with `CallEnded`."""
        return len(self._calls)

    def next_event(self) -> TrackerEvent | Sentinel:
        """The next event, or `NEED_DATA`."""
        return self._events.popleft() if self._events else NEED_DATA

    def receive_record(self, record: PacketRecord) -> None:
        """Decode one capture record and act on what it carried."""
        self._decoder.receive_record(record)
        self._drain_decoder()

    def handle_timer(self, now: float) -> None:
        """End calls that timed out or finished lingering by `now` (capture seconds)."""
        self._decoder.handle_timer(now)
        self._drain_decoder()
        for call in list(self._calls.values()):
            if call.ended is not None and now >= call.ended + self._linger:
                self._release(call)
            elif call.ended is None and now - call.last_seen >= self._quiet_limit(call):
                self._end(call, call.last_seen, "media_timeout")
                self._release(call)
        for key, flow in list(self._orphans.items()):
            if self._orphans.get(key) is flow and self._orphan_quiet(flow, now):
                self._release_orphan(key, flow)
        for host, seen in list(self._tls_hosts.items()):
            if now - seen >= TLS_MEMORY:
                del self._tls_hosts[host]

    def _quiet_limit(self, call: TapCall) -> float:
        # A phone may ring for minutes without a packet (one 180, no retransmission over TCP);
        # an unanswered INVITE is only given up after Timer C (RFC 3261 §16.6: > 3 minutes).
        return self._timeout if call.answered is not None else max(self._timeout, TIMER_C)

    def flush(self) -> None:
        """End of capture: every open call ends at its last packet."""
        self._decoder.flush()
        self._drain_decoder()
        for call in list(self._calls.values()):
            if call.ended is None:
                self._end(call, call.last_seen, "capture_ended")
            self._release(call)
        for key, flow in list(self._orphans.items()):
            self._release_orphan(key, flow)

    def _drain_decoder(self) -> None:
        while not isinstance(event := self._decoder.next_event(), Sentinel):
            if isinstance(event, UdpDatagram):
                self._datagram(event)
            elif isinstance(event, StreamData):
                self._stream_data(event)
            elif isinstance(event, StreamClosed):
                self._framers.pop(event.flow, None)
                self._tls_flows.discard(event.flow)
            else:
                self.counters.dropped_frames += 1

    def _datagram(self, dgram: UdpDatagram) -> None:
        sip_port = dgram.sport in self._sip_ports or dgram.dport in self._sip_ports
        if sip_port or _looks_like_sip(dgram.payload):
            try:
                message = parse_datagram(dgram.payload)
            except ParseError:
                self.counters.sip_malformed += 1
                return
            self._sip(
                message, dgram.ts_ns, (dgram.src, dgram.sport), (dgram.dst, dgram.dport), "udp",
                frame=dgram.frame,
            )  # fmt: skip
            return
        self._media(dgram)

    def _stream_data(self, event: StreamData) -> None:
        flow = event.flow
        if flow not in self._framers:
            if _looks_like_tls(event.data):
                self._framers[flow] = None
                self._tls_flows.add(flow)
                self.counters.tls_streams += 1
            else:
                known = flow.sport in self._sip_ports or flow.dport in self._sip_ports
                self._framers[flow] = SipFramer() if known or _looks_like_sip(event.data) else None
        framer = self._framers[flow]
        if framer is None:
            if flow in self._tls_flows:
                self._tls_hosts[flow.src] = self._tls_hosts[flow.dst] = event.time
            return
        framer.receive_data(event.data)
        ts_ns = round(event.time * NS)
        while True:
            try:
                message = framer.next_event()
            except ParseError:
                # A stream that lost its framing cannot resynchronise (RFC 3261 §18.3).
                self.counters.sip_malformed += 1
                self._framers[flow] = None
                return
            if message is SIP_NEED_DATA or message is CONNECTION_CLOSED:
                return
            assert not isinstance(message, enum.Enum)  # noqa: S101  # the two sentinels above
            self._sip(message, ts_ns, (flow.src, flow.sport), (flow.dst, flow.dport), "tcp")

    def _sip(  # noqa: PLR0913  # one message, where it came from, and its frame
        self, message: SipMessage, ts_ns: int, src: Endpoint, dst: Endpoint, transport: str,
        *, frame: bytes | None = None,
    ) -> None:  # fmt: skip
        self.counters.sip_messages += 1
        now = ts_ns / NS
        try:
            call_id = message.call_id
            cseq = message.cseq
        except ParseError:
            self.counters.sip_malformed += 1
            return
        call = self._calls.get(call_id)
        if call is None:
            if not (isinstance(message, SipRequest) and message.method == "INVITE"):
                return  # REGISTER, OPTIONS, or the tail of a call that ended already
            call = self._open(message, now, transport)
        call.sip_messages += 1
        call.last_seen = max(call.last_seen, now)
        self._events.append(
            CallPacket(
                call=call, ts_ns=ts_ns, src=src[0], sport=src[1], dst=dst[0], dport=dst[1],
                payload=message.raw, frame=frame,
            )
        )  # fmt: skip
        sender = self._sender(call, message)
        branch = self._branch_tag(call, message)
        self._learn_sdp(call, message, sender, branch)
        if isinstance(message, SipRequest):
            self._request(call, message, sender, now)
        elif cseq.method == "INVITE":
            self._invite_response(call, message, now)

    def _request(self, call: TapCall, request: SipRequest, sender: Side, now: float) -> None:
        if request.method == "REFER":
            call.transfers.append(
                {
                    "by": sender.name.lower(),
                    "refer_to": request.headers.get("Refer-To"),
                    "referred_by": request.headers.get("Referred-By"),
                }
            )
        if request.method == "INVITE" and call.answered is None:
            self._retried_invite(call, request, sender)
        if request.method == "BYE":
            branch = self._branch_tag(call, request)
            if call.dialog_tag is not None and branch not in (None, call.dialog_tag):
                call.forks.setdefault(branch, {"responses": []})["ended"] = "bye"
                return  # the caller hangs up on a second answer; the call goes on
            if call.ended is None:
                self._end(call, now, "bye")
        elif request.method == "CANCEL" and call.ended is None and call.answered is None:
            self._end(call, now, "cancel")

    @staticmethod
    def _retried_invite(call: TapCall, request: SipRequest, sender: Side) -> None:
        # A trunk that challenges (401/407) gets the INVITE again with credentials and a higher
        # CSeq, in the same Call-ID: the same call, whose first attempt's rejection and branches
        # no longer count (RFC 3261 §22.2).
        try:
            initial = request.to_addr.tag is None
            cseq = request.cseq.number
        except ParseError:
            return
        if sender is not Side.CALLER or not initial or cseq <= call.invite_cseq:
            return
        call.invite_cseq, call.final_status, call.forks = cseq, None, {}
        if call.ended is not None and call.end_reason.startswith("rejected_"):
            call.ended, call.end_reason = None, ""  # still lingering: it goes on

    def _invite_response(self, call: TapCall, message: SipResponse, now: float) -> None:
        code = message.status_code
        branch = self._branch_tag(call, message)
        if self._answers_initial_invite(call, message) and branch is not None:
            fork = call.forks.setdefault(branch, {"responses": []})
            responses = fork["responses"]
            assert isinstance(responses, list)  # noqa: S101  # set just above
            if code not in responses:
                responses.append(code)
        if SUCCESS_MIN <= code < FAILURE_MIN and call.answered is None:
            call.answered = now
            call.final_status = code
            call.dialog_tag = branch
            self._answered_branch(call, branch)
            if call.end_reason == "cancel":  # the CANCEL crossed this 2xx: the call goes on
                call.ended, call.end_reason = None, ""
        elif (
            code >= FAILURE_MIN
            and call.answered is None
            and call.final_status is None
            and self._answers_initial_invite(call, message)
        ):
            call.final_status = code
            if call.ended is None:
                self._end(call, now, f"rejected_{code}")

    def _open(self, invite: SipRequest, now: float, transport: str) -> TapCall:
        caller, callee = invite.from_addr, invite.to_addr
        caller_line, callee_line = self.is_line(caller.uri), self.is_line(callee.uri)
        if callee_line and not caller_line:
            employee, direction = Side.CALLEE, "inbound"
        elif caller_line:
            employee, direction = Side.CALLER, "outbound"
        else:
            employee, direction = Side.CALLER, "unknown"
        call = TapCall(
            call_id=invite.call_id,
            started=now,
            caller=caller,
            callee=callee,
            transport=transport,
            employee=employee,
            direction=direction,
            media=MediaSession(start=now),
            caller_tag=caller.tag,
            invite_cseq=invite.cseq.number,
            last_seen=now,
        )
        self._calls[call.call_id] = call
        self.counters.calls_started += 1
        self._events.append(CallStarted(call=call))
        return call

    @staticmethod
    def _answers_initial_invite(call: TapCall, message: SipResponse) -> bool:
        # The caller's INVITE, not a re-INVITE either side sent later with its own CSeq space.
        try:
            from_tag = message.from_addr.tag
        except ParseError:
            return False
        return from_tag == call.caller_tag and message.cseq.number == call.invite_cseq

    @staticmethod
    def _branch_tag(call: TapCall, message: SipMessage) -> str | None:
        """The callee side's tag of `message`'s dialog: which fork it belongs to."""
        try:
            from_tag, to_tag = message.from_addr.tag, message.to_addr.tag
        except ParseError:
            return None
        return to_tag if from_tag == call.caller_tag else from_tag

    @staticmethod
    def _sender(call: TapCall, message: SipMessage) -> Side:
        # From always names who sent the request, in requests and in their responses alike.
        try:
            from_tag = message.from_addr.tag
        except ParseError:
            from_tag = call.caller_tag
        request_side = Side.CALLER if from_tag == call.caller_tag else Side.CALLEE
        return request_side if isinstance(message, SipRequest) else request_side.other

    def _learn_sdp(
        self, call: TapCall, message: SipMessage, sender: Side, branch: str | None
    ) -> None:
        content_type = message.content_type
        if not message.body or content_type is None or content_type.media_type != "application/sdp":
            return
        try:
            sdp = parse_sdp(message.body)
        except ParseError:
            return
        keys = receive_keys(sdp)
        for index, media in enumerate(sdp.media):
            connection = sdp.connection_for(index)
            if media.media != "audio" or not media.port or connection is None or connection.is_hold:
                continue
            for pt, rtpmap in media.rtpmaps.items():
                call.formats.setdefault(
                    pt,
                    PayloadFormat(
                        payload_type=pt, encoding_name=rtpmap.encoding, clock_rate=rtpmap.clock_rate
                    ),
                )
            if keys[index] is not None and sender not in call.keys:
                call.keys[sender] = keys[index]  # type: ignore[assignment]
            address = connection.address.split("/")[0]
            if (
                sender is Side.CALLEE
                and branch is not None
                and call.dialog_tag not in (None, branch)
            ):
                self._lose(call, branch, address, media.port)  # a fork that lost the race
            else:
                self._index(call, sender, address, media.port, branch)

    def _lose(self, call: TapCall, branch: str, address: str, port: int) -> None:
        # Media of a branch that was not taken: never routed into the recording (the phone may
        # send a few packets before the caller's BYE reaches it), only counted on the call.
        try:
            addr = ip_address(address)
        except ValueError:
            return
        for p in (port, port + 1):
            call.lost_endpoints[(addr, p)] = branch

    def _answered_branch(self, call: TapCall, branch: str | None) -> None:
        # Early media of other branches (183 with SDP) stops steering once one branch answers.
        for endpoint, owner in list(call.branch_endpoints.items()):
            if owner == branch:
                continue
            del call.branch_endpoints[endpoint]
            call.endpoints[Side.CALLEE].discard(endpoint)
            if self._by_endpoint.get(endpoint, (None, None))[0] is call:
                del self._by_endpoint[endpoint]
            owners = self._by_port.get(endpoint[1], [])
            owners[:] = [o for o in owners if o != (call, Side.CALLEE)]
            if not owners:
                self._by_port.pop(endpoint[1], None)
            call.lost_endpoints[endpoint] = owner

    def _index(
        self, call: TapCall, side: Side, address: str, port: int, branch: str | None = None
    ) -> None:
        try:
            addr = ip_address(address)
        except ValueError:
            return
        for p in (port, port + 1):  # RTP and its RTCP (RFC 3550 §11)
            endpoint = (addr, p)
            call.lost_endpoints.pop(endpoint, None)
            if side is Side.CALLEE and branch is not None and call.dialog_tag is None:
                call.branch_endpoints[endpoint] = branch
            call.endpoints[side].add(endpoint)
            self._by_endpoint[endpoint] = (call, side)
            owners = self._by_port.setdefault(p, [])
            if (call, side) not in owners:
                owners.append((call, side))

    def _route(self, dgram: UdpDatagram) -> tuple[TapCall, Side, str] | None:
        """(call, sending side, rule) for a media datagram, or None."""
        hit = self._by_endpoint.get((dgram.dst, dgram.dport))
        if hit is not None:
            return hit[0], hit[1].other, "sdp"
        hit = self._by_endpoint.get((dgram.src, dgram.sport))
        if hit is not None:
            return hit[0], hit[1], "symmetric"
        owners = self._by_port.get(dgram.dport, [])
        if len(owners) == 1:
            (call, side), rule = owners[0], "port"
        else:
            # Several calls announced this port on other addresses: the one still waiting for
            # media in this direction is the call this new flow belongs to. Never a guess
            # between two that both wait: such a flow stays an orphan.
            waiting = [(c, s) for c, s in owners if s.other not in c.streams]
            if len(waiting) != 1:
                return None
            (call, side), rule = waiting[0], "timing"
        # Learn the flow's real destination, so its later packets route exactly even when
        # another call announces the same port.
        endpoint = (dgram.dst, dgram.dport)
        call.endpoints[side].add(endpoint)
        self._by_endpoint[endpoint] = (call, side)
        return call, side.other, rule

    def _media(self, dgram: UdpDatagram) -> None:
        routed = self._route(dgram)
        if routed is None:
            self._orphan(dgram)
            return
        call, sender, rule = routed
        now = dgram.ts_ns / NS
        call.last_seen = max(call.last_seen, now)
        self._events.append(
            CallPacket(
                call=call, ts_ns=dgram.ts_ns, src=dgram.src, sport=dgram.sport, dst=dgram.dst,
                dport=dgram.dport, payload=dgram.payload, frame=dgram.frame,
            )
        )  # fmt: skip
        if call.lost_endpoints and (
            (dgram.src, dgram.sport) in call.lost_endpoints
            or (dgram.dst, dgram.dport) in call.lost_endpoints
        ):
            call.stray_packets += 1  # from or to a fork that was not taken
            return
        stream = call.streams.get(sender)
        if stream is None:
            key = call.keys.get(sender)
            srtp = SrtpReceiver(suite=CryptoSuite(key[0]), key=key[1]) if key else None
            stream = call.media.add_stream(
                channel=call.channel_of(sender), formats=call.formats, srtp=srtp
            )
            call.streams[sender] = stream
            call.rules[sender] = rule
        if not _is_rtcp(dgram.payload):
            call.rtp_first.setdefault(sender, now)
            call.rtp_last[sender] = now
            call.rtp_packets[sender] += 1
            self.counters.rtp_routed += 1
        stream.receive_datagram(dgram.payload, now)

    def _orphan(self, dgram: UdpDatagram) -> None:
        payload = dgram.payload
        if len(payload) < _RTP_HEADER or payload[0] >> 6 != _RTP_VERSION or _is_rtcp(payload):
            self.counters.unmatched_udp += 1
            return
        key = ((dgram.src, dgram.sport), (dgram.dst, dgram.dport))
        now = dgram.ts_ns / NS
        flow = self._orphans.get(key)
        if flow is None:
            if len(self._orphans) >= self._max_orphans:
                self.counters.orphans_over_limit += 1
                return
            flow = self._new_orphan(key, payload[1] & 0x7F, now)
        flow.last_seen = now
        flow.rtp_packets += 1
        if flow.entropy is None and flow.g711:
            _sample(flow, payload)
        flow.stream.receive_datagram(payload, now)

    def _new_orphan(self, key: tuple[Endpoint, Endpoint], pt: int, now: float) -> OrphanFlow:
        (src, sport), (dst, dport) = key
        formats: dict[int, PayloadFormat] = {}
        if codec := self._orphan_codecs.get((dst, dport)):
            formats[pt] = PayloadFormat(
                payload_type=pt, encoding_name=codec[0], clock_rate=codec[1]
            )
        secret = self._orphan_keys.get((dst, dport))
        srtp = SrtpReceiver(suite=CryptoSuite(secret[0]), key=secret[1]) if secret else None
        reverse = self._orphans.get((key[1], key[0]))
        if reverse is not None and reverse.partner is None:
            media, channel = reverse.media, 1  # the answer to a flow we follow: one conversation
        else:
            reverse, media, channel = None, MediaSession(start=now), 0
        stream = media.add_stream(channel=channel, formats=formats, srtp=srtp)
        flow = OrphanFlow(
            src=src, sport=sport, dst=dst, dport=dport, started=now, media=media, stream=stream,
            last_seen=now, keyed=srtp is not None,
            g711=codec[0].upper() in _G711 if codec else pt in _G711_PTS,
        )  # fmt: skip
        if reverse is not None:
            reverse.partner = flow
        self._orphans[key] = flow
        self.counters.orphan_flows += 1
        return flow

    def _release_orphan(self, key: tuple[Endpoint, Endpoint], flow: OrphanFlow) -> None:
        if self._orphans.get(key) is not flow:
            return  # released already, with its partner
        first = self._first_of(flow)
        for member in first.flows:
            del self._orphans[(member.src, member.sport), (member.dst, member.dport)]
            member.tls_signalling = member.src in self._tls_hosts or member.dst in self._tls_hosts
        if sum(member.rtp_packets for member in first.flows) >= self._orphan_min:
            self._events.append(OrphanEnded(flow=first))
        else:
            self.counters.orphans_ignored += 1

    def _first_of(self, flow: OrphanFlow) -> OrphanFlow:
        reverse = self._orphans.get(((flow.dst, flow.dport), (flow.src, flow.sport)))
        return reverse if reverse is not None and reverse.partner is flow else flow

    def _orphan_quiet(self, flow: OrphanFlow, now: float) -> bool:
        # A pair is one conversation: it ends when both directions went quiet.
        return all(now - member.last_seen >= self._timeout for member in self._first_of(flow).flows)

    def _end(self, call: TapCall, now: float, reason: str) -> None:
        call.ended = now
        call.end_reason = reason

    def _release(self, call: TapCall) -> None:
        self._calls.pop(call.call_id, None)
        for side in Side:
            for endpoint in call.endpoints[side]:
                if self._by_endpoint.get(endpoint, (None, None))[0] is call:
                    del self._by_endpoint[endpoint]
                owners = self._by_port.get(endpoint[1], [])
                owners[:] = [o for o in owners if o[0] is not call]
                if not owners:
                    self._by_port.pop(endpoint[1], None)
        self.counters.calls_ended += 1
        self._events.append(CallEnded(call=call))


_RTCP_TYPES: Final = range(192, 224)  # RFC 5761 §4: RTCP packet types on a shared port
_MIN_RTP: Final = 2


def _is_rtcp(payload: bytes) -> bool:
    return len(payload) >= _MIN_RTP and payload[1] in _RTCP_TYPES


def _looks_like_tls(data: bytes) -> bool:
    # A TLS record header: content type, then legacy version 3.x (RFC 8446 §5.1).
    return len(data) >= _TLS_HEADER and data[0] in _TLS_CONTENT_TYPES and data[1] == _TLS_MAJOR


def _sample(flow: OrphanFlow, payload: bytes) -> None:
    """Collect payload bytes (after the fixed header and CSRCs) until the entropy can be judged."""
    start = _RTP_HEADER + 4 * (payload[0] & 0x0F)
    flow.sample += payload[start : start + ENTROPY_SAMPLE - len(flow.sample)]
    if len(flow.sample) >= ENTROPY_SAMPLE:
        flow.entropy = _entropy(flow.sample)
        flow.sample = bytearray()


def _entropy(data: bytes | bytearray) -> float:
    """Shannon entropy of `data` in bits per byte."""
    counts = Counter(data)
    total = len(data)
    return -sum(c / total * math.log2(c / total) for c in counts.values())
