"""The SIPREC listener in the recorder: thin asyncio adapters around `SrsCore`.

Each accepted session gets its RTP/RTCP ports bound, a journal in the spool and a media session.
Every received media datagram is journaled (as a pcapng packet, sealed and fsynced every second)
before it is decoded. At the end the session is rendered, encoded and filed off the event loop;
its journal is removed only once filing succeeded. A session still open at shutdown is filed
marked incomplete.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tapeline.archive.core import Archive
from tapeline.archive.journal import JournalWriter, sync_all
from tapeline.archive.nodes import clear_alarm, raise_alarm
from tapeline.archive.parties import normalise_number
from tapeline.config import Config
from tapeline.daemon.recorder import Runtime
from tapeline.daemon.siprec.core import (
    Action,
    CallSession,
    Closed,
    Opened,
    Send,
    SrsCore,
    Updated,
    bad_request,
)
from tapeline.daemon.siprec.filing import file_session
from tapeline.daemon.siprec.noaudio import NoAudioWatch
from tapeline.daemon.siprec.ports import PortPool
from tapeline.daemon.siprec.recovery import recover_spool
from tapeline.errors import StorageError, TapelineError
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit
from tapeline.media.formats import PayloadFormat
from tapeline.media.session import MediaResult, MediaSession, MediaStream
from tapeline.media.srtp import CryptoSuite, SrtpReceiver
from tapeline.proto.errors import RtpParseError, SipParseError
from tapeline.proto.net import PcapngWriter, build_udp_frame
from tapeline.proto.rtp import is_rtcp
from tapeline.proto.sip import CONNECTION_CLOSED, NEED_DATA, SipFramer, SipRequest

log = logging.getLogger(__name__)
LINKTYPE_ETHERNET = 1
FLUSH_INTERVAL_S = 1.0
WILDCARDS = frozenset({"0.0.0.0", "::"})  # noqa: S104  # compared with, never bound


@dataclass(slots=True)
class _Live:
    session: CallSession
    journal: JournalWriter
    media: MediaSession
    # Loop time of the last RTP packet (RTCP alone is not audio), or of the session's start.
    last_audio: float
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)
    sockets: list[tuple[socket.socket, MediaStream, int]] = field(default_factory=list)
    binding: list[asyncio.Future[tuple[asyncio.DatagramTransport, _RtpProtocol]]] = field(
        default_factory=list
    )


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, service: SiprecService, live: _Live, stream: MediaStream, port: int) -> None:
        self._service = service
        self._live = live
        self._stream = stream
        self._port = port

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._service.media_received(self._live, self._stream, self._port, data, addr)


class _SipUdp(asyncio.DatagramProtocol):
    def __init__(self, service: SiprecService) -> None:
        self._service = service
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        self._service.sip_datagram(self, data, peer)


class SiprecService:
    """The recorder service for `siprec.listen`."""

    name = "siprec"

    def __init__(self, config: Config) -> None:
        self._config = config
        self._archive: Archive | None = None
        self._active: dict[str, int] = {}
        self._core: SrsCore | None = None
        self._udp: list[_SipUdp] = []
        self._servers: list[asyncio.Server] = []
        self._live: dict[str, _Live] = {}
        self._streams: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._pcap = PcapngWriter()
        self._filing: set[asyncio.Future[Any]] = set()
        self._syncing: asyncio.Future[list[Path]] | None = None
        # None: not known yet, so the first accepted call also clears an alarm a past run left.
        self._storage_full: bool | None = None
        self.no_audio = NoAudioWatch(limit_s=config.alarms.no_audio_seconds)
        host = config.siprec.media_address or self._first_host()
        self._media_address = host
        self._sip_port = (
            int(config.siprec.listen[0].rpartition(":")[2]) if config.siprec.listen else 0
        )

    def _first_host(self) -> str:
        for entry in self._config.siprec.listen:
            host = entry.split(":", 1)[1].rpartition(":")[0].strip("[]")
            if host not in WILDCARDS:
                return host
        return "127.0.0.1"

    # --- service protocol ----------------------------------------------------------------

    async def start(self, runtime: Runtime) -> None:
        """Bind every SIP listener (before READY=1)."""
        self._archive = runtime.archive
        self._active = runtime.active_calls
        self._active.setdefault("siprec", 0)
        runtime.health_checks["no_audio"] = self.no_audio.health
        runtime.gauges["calls_without_audio"] = lambda: self.no_audio.silent
        config = self._config
        region = config.node.default_region
        low, high = config.siprec.rtp_port_range
        first = config.siprec.listen[0].split(":", 1)[1]
        self._core = SrsCore(
            trunks=config.trunks,
            lines={line.number for line in config.lines},
            normalise=lambda aor: normalise_number(aor, region),
            ports=PortPool(low, high),
            media_address=self._media_address,
            contact=f"<sip:srs@{self._media_address}:{first.rpartition(':')[2]}>;+sip.srs",
            refuse_new=self._refusal,
            party_headers=config.siprec.party_headers,
            normalise_in=normalise_number,
        )
        recovered = await asyncio.to_thread(recover_spool, runtime.archive, config)
        if recovered:
            log.warning("filed %d call(s) left open by a crash, marked incomplete", recovered)
        loop = asyncio.get_running_loop()
        for entry in config.siprec.listen:
            scheme, _, rest = entry.partition(":")
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            if scheme == "udp":
                transport, proto = await loop.create_datagram_endpoint(
                    lambda: _SipUdp(self), local_addr=(host, int(port))
                )
                proto.transport = transport
                self._udp.append(proto)
            elif scheme == "tcp":
                self._servers.append(await asyncio.start_server(self._tcp_client, host, int(port)))
            else:
                self._servers.append(
                    await asyncio.start_server(
                        self._tcp_client, host, int(port), ssl=self._tls_context()
                    )
                )
        log.info("siprec listening", extra={"listen": config.siprec.listen})

    async def run(self) -> None:
        """Drive SIP timers and seal journals every second."""
        loop = asyncio.get_running_loop()
        last_flush = loop.time()
        while True:
            core = self._core
            assert core is not None  # noqa: S101  # started before run
            deadline = core.get_timer()
            now = loop.time()
            delay = FLUSH_INTERVAL_S if deadline is None else max(0.0, deadline - now)
            await asyncio.sleep(min(delay, FLUSH_INTERVAL_S))
            now = loop.time()
            due = core.get_timer()
            if due is not None and due <= now:
                self._apply(core.handle_timer(now, datetime.now(UTC)), None)
            if now - last_flush >= FLUSH_INTERVAL_S:
                last_flush = now
                self._flush_journals()
                await self._check_audio(now)

    async def _check_audio(self, now: float) -> None:
        """Raise or clear `capture.no_audio` when the silent sessions come or go."""
        # A paused session is silent on purpose (the SRC paused it, siprec.md §5.2): not an alarm.
        heard = (now if live.session.paused else live.last_audio for live in self._live.values())
        flip = self.no_audio.evaluate(heard, now)
        if flip is None or self._archive is None:
            return
        try:
            await asyncio.to_thread(self.no_audio.apply, self._archive, active=flip)
        except StorageError:
            # The latch keeps its old state, so the next second tries again; recording goes on.
            log.exception("no-audio alarm could not be written")

    async def stop(self) -> None:
        """Stop accepting, file every open session as incomplete, wait for filing."""
        if self._core is not None:
            self._core.draining = True
        for proto in self._udp:
            if proto.transport is not None:
                proto.transport.close()
        for server in self._servers:
            server.close()
        if self._core is not None:
            loop = asyncio.get_running_loop()
            self._apply(self._core.end_all(loop.time(), "shutdown"), None)
        if self._filing:
            await asyncio.gather(*self._filing, return_exceptions=True)
        await self._check_audio(asyncio.get_running_loop().time())  # every call has ended
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)  # let the transports' close callbacks run before the loop ends

    def _tls_context(self) -> ssl.SSLContext:
        """Server TLS (1.2+); with a client CA, a verified client certificate is required."""
        siprec = self._config.siprec
        cert, key = siprec.tls_cert_file, siprec.tls_key_file
        if cert is None or key is None:  # the config refuses a tls: listener without them
            raise TapelineError("a tls: listener needs siprec.tls_cert_file and tls_key_file")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        if siprec.tls_client_ca_file is not None:
            context.load_verify_locations(cafile=siprec.tls_client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _flush_journals(self) -> None:
        """Seal every open journal here (appends happen on this thread), fsync them in a worker.

        The fsyncs cost milliseconds each on a busy disk; done on the loop they would delay
        media. A second flush while the last sync still runs only seals; its records are
        made durable by the next sync.
        """
        journals = []
        for live in self._live.values():
            try:
                live.journal.flush(sync=False)
            except StorageError:
                self._journal_failed(live)
                continue
            journals.append(live.journal)
        if journals and (self._syncing is None or self._syncing.done()):
            self._syncing = asyncio.ensure_future(asyncio.to_thread(sync_all, journals))
            self._syncing.add_done_callback(self._synced)

    def _synced(self, task: asyncio.Future[list[Path]]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        for path in task.result():
            live = next((v for v in self._live.values() if v.journal.path == path), None)
            if live is not None:
                self._journal_failed(live)

    def _journal_failed(self, live: _Live) -> None:
        note = "the spool journal could not be written: the crash-safe copy may be short"
        if note not in live.session.notes:
            live.session.notes.append(note)
            log.error("journal write failed", extra={"call_id": live.session.call_id})
            if self._archive is not None:
                self._spawn(
                    asyncio.to_thread(
                        raise_alarm,
                        self._archive,
                        code="siprec.journal_failed",
                        severity="major",
                        message="a call's spool journal could not be written (disk full?)",
                    )
                )

    def reload(self, config: Config) -> None:
        """New lines and trunks for new sessions."""
        self._config = config
        if self._core is not None:
            self._core.trunks = list(config.trunks)
            self._core.lines = {line.number for line in config.lines}
            self._core.party_headers = list(config.siprec.party_headers)

    # --- adapters ------------------------------------------------------------------------

    def _refusal(self) -> str | None:
        """Refuse new calls while the spool or archive is below `storage.min_free_bytes`.

        Raises `storage.full` once and clears it at the first call accepted after space came
        back; nothing is ever deleted to make room.
        """
        storage = self._config.storage
        for path in (storage.spool, storage.path):
            probe = path
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            if shutil.disk_usage(probe).free < storage.min_free_bytes:
                if self._archive is not None and self._storage_full is not True:
                    self._storage_full = (
                        raise_alarm(
                            self._archive,
                            code="storage.full",
                            severity="critical",
                            message=f"{path} is below storage.min_free_bytes: new calls refused",
                        )
                        or True
                    )
                return "Storage full"
        if self._storage_full is not False and self._archive is not None:
            clear_alarm(self._archive, code="storage.full")
            self._storage_full = False
        return None

    def sip_datagram(self, proto: _SipUdp, data: bytes, peer: tuple[str, int]) -> None:
        """A datagram on a SIP UDP listener."""
        assert self._core is not None  # noqa: S101  # started
        loop = asyncio.get_running_loop()
        self._apply(self._core.receive_datagram(data, peer, loop.time(), datetime.now(UTC)), proto)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = (str(peername[0]), int(peername[1]))
        self._streams[peer] = writer
        if self._core is not None:
            self._core.set_peer_names(peer, _certificate_names(writer.get_extra_info("peercert")))
        framer = SipFramer()
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await reader.read(65536)
                framer.receive_data(chunk)
                try:
                    while (event := framer.next_event()) not in (NEED_DATA, CONNECTION_CLOSED):
                        if isinstance(event, SipRequest) and self._core is not None:
                            actions = self._core.receive_request(
                                event, peer, loop.time(), datetime.now(UTC), reliable=True
                            )
                            self._apply(actions, None)
                except SipParseError as exc:
                    # A stream cannot resynchronise after a bad message: answer it when it can
                    # be matched (RFC 3261 §8.2.6.2), then close (§18.3).
                    log.warning("bad SIP over TCP from %s: %s", peer, exc)
                    for reply in bad_request(framer.trailing_data, peer, exc):
                        if isinstance(reply, Send):
                            writer.write(reply.data)
                    break
                if not chunk:
                    break
        finally:
            self._streams.pop(peer, None)
            if self._core is not None:
                self._core.set_peer_names(peer, None)
            writer.close()

    def _send(self, action: Send, proto: _SipUdp | None) -> None:
        stream = self._streams.get(action.addr)
        if stream is not None:
            stream.write(action.data)
            return
        udp = proto or (self._udp[0] if self._udp else None)
        if udp is not None and udp.transport is not None:
            udp.transport.sendto(action.data, action.addr)

    def _apply(self, actions: list[Action], proto: _SipUdp | None) -> None:
        # Media sockets are bound before the 200 leaves: an SRC may send RTP right after it.
        for action in actions:
            if isinstance(action, Opened):
                self._open(action.session)
        for action in actions:
            if isinstance(action, Send):
                self._send(action, proto)
            elif isinstance(action, Updated):
                self._updated(action)
            elif isinstance(action, Closed):
                self._close(action.session)

    def _open(self, session: CallSession) -> None:
        archive = self._archive
        assert archive is not None  # noqa: S101  # started
        journal = JournalWriter(
            self._config.storage.spool / f"siprec-{uuid.uuid4()}.tpj", archive.vault.archive_key
        )
        journal.append(self._pcap.header(LINKTYPE_ETHERNET))
        # The INVITE and our answer first: recovery after a crash rebuilds the session from them.
        peer_ip, peer_port = session.peer
        local = self._local_for(peer_ip)
        now_ns = time.time_ns()
        journal.append(
            self._pcap.packet(
                now_ns, build_udp_frame(peer_ip, local, peer_port, self._sip_port, session.invite)
            )
        )
        journal.append(
            self._pcap.packet(
                now_ns, build_udp_frame(local, peer_ip, self._sip_port, peer_port, session.answer)
            )
        )
        journal.flush()
        media = MediaSession(start=session.started)
        loop = asyncio.get_running_loop()
        live = _Live(session=session, journal=journal, media=media, last_audio=loop.time())
        for index in range(len(session.codecs)):
            self._add_stream(live, index)
        self._live[session.call_id] = live
        self._active["siprec"] = len(self._live)
        self._spawn(self._emit_started(session))

    def _add_stream(self, live: _Live, index: int) -> None:
        """Open m-line `index`: its media stream and its RTP and RTCP sockets."""
        session = live.session
        codecs = session.codecs[index]
        if not codecs:
            return
        formats = {
            pt: PayloadFormat(payload_type=pt, encoding_name=enc, clock_rate=rate)
            for pt, (enc, rate) in codecs.items()
        }
        keys = session.srtp[index] if index < len(session.srtp) else None
        srtp = SrtpReceiver(suite=CryptoSuite(keys[0]), key=keys[1]) if keys else None
        stream = live.media.add_stream(
            channel=session.channel_of(index), formats=formats, srtp=srtp
        )
        loop = asyncio.get_running_loop()
        base = session.port_of(index)
        for port in (base, base + 1):
            try:
                sock = self._bind_udp(port)
            except OSError as exc:
                session.notes.append(f"RTP port {port} could not be bound: {exc.strerror}")
                continue
            live.sockets.append((sock, stream, port))
            future = asyncio.ensure_future(
                loop.create_datagram_endpoint(self._rtp_factory(live, stream, port), sock=sock)
            )
            future.add_done_callback(self._bound_callback(live))
            live.binding.append(future)

    def _updated(self, update: Updated) -> None:
        """Journal a re-INVITE/UPDATE and our answer (recovery replays them); open new streams."""
        live = self._live.get(update.session.call_id)
        if live is None:
            return
        peer_ip, peer_port = update.session.peer
        local = self._local_for(peer_ip)
        now_ns = time.time_ns()
        for src, dst, sport, dport, data in (
            (peer_ip, local, peer_port, self._sip_port, update.request),
            (local, peer_ip, self._sip_port, peer_port, update.answer),
        ):
            live.journal.append(
                self._pcap.packet(now_ns, build_udp_frame(src, dst, sport, dport, data))
            )
        for index in update.added:
            self._add_stream(live, index)

    def _local_for(self, peer_ip: str) -> str:
        return self._media_address if (":" in peer_ip) == (":" in self._media_address) else peer_ip

    def _rtp_factory(
        self, live: _Live, stream: MediaStream, port: int
    ) -> Callable[[], _RtpProtocol]:
        return lambda: _RtpProtocol(self, live, stream, port)

    def _bound_callback(
        self, live: _Live
    ) -> Callable[[asyncio.Future[tuple[asyncio.DatagramTransport, _RtpProtocol]]], None]:
        return lambda future: self._bound(future, live)

    def _bind_udp(self, port: int) -> socket.socket:
        """A bound UDP socket, synchronously, so the kernel queues media from this moment."""
        family = socket.AF_INET6 if ":" in self._media_address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)  # noqa: FBT003  # the socket API's own positional flag
            sock.bind((self._media_address, port))
        except OSError:
            sock.close()
            raise
        return sock

    @staticmethod
    def _bound(
        future: asyncio.Future[tuple[asyncio.DatagramTransport, _RtpProtocol]], live: _Live
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            live.session.notes.append("an RTP port could not be bound")
            return
        live.transports.append(future.result()[0])

    def media_received(
        self,
        live: _Live,
        stream: MediaStream,
        port: int,
        data: bytes,
        addr: tuple[str | object, int],
    ) -> None:
        """One media datagram: journal first, then decode."""
        frame = build_udp_frame(str(addr[0]), self._media_address, int(addr[1]), port, data)
        live.journal.append(self._pcap.packet(time.time_ns(), frame))
        now = asyncio.get_running_loop().time()
        try:
            if not is_rtcp(data):
                live.last_audio = now
        except RtpParseError:
            pass  # not media at all: the stream counts it as malformed
        stream.receive_datagram(data, now)

    def _close(self, session: CallSession) -> None:
        live = self._live.pop(session.call_id, None)
        self._active["siprec"] = len(self._live)
        if live is None:
            return
        # Whatever the kernel still queues (sent just before the BYE) belongs to the call.
        for sock, stream, port in live.sockets:
            while True:
                try:
                    data, addr = sock.recvfrom(65536)
                except OSError:
                    break
                self.media_received(live, stream, port, data, addr)
        for future in live.binding:
            future.cancel()
        for transport in live.transports:
            transport.close()
        for sock, _, _ in live.sockets:
            sock.close()
        assert session.ended is not None  # noqa: S101  # closed sessions have an end
        result = live.media.finish(end=session.ended)
        self._spawn(self._file(live, result, incomplete=session.end_reason == "shutdown"))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._filing.add(task)
        task.add_done_callback(self._filing.discard)

    async def _emit_started(self, session: CallSession) -> None:
        archive = self._archive
        assert archive is not None  # noqa: S101  # started

        def write() -> None:
            with archive.index.write() as db:
                emit(
                    db,
                    node_id=archive.node_id,
                    type_=EventType.CALL_STARTED,
                    data={"call_ref": session.call_id, "source": "siprec", "trunk": session.trunk},
                )

        await asyncio.to_thread(write)

    async def _file(self, live: _Live, result: MediaResult, *, incomplete: bool) -> None:
        archive = self._archive
        assert archive is not None  # noqa: S101  # started
        session = live.session
        config = self._config

        def file() -> str:
            live.journal.close()
            return file_session(archive, config, session, result, incomplete=incomplete)

        try:
            interaction_id = await asyncio.to_thread(file)
        except TapelineError:
            log.exception("filing failed; journal kept at %s", live.journal.path)
            await asyncio.to_thread(
                raise_alarm,
                archive,
                code="siprec.filing_failed",
                severity="major",
                message="a call could not be filed; journal kept",
            )
            return
        await asyncio.to_thread(Path(live.journal.path).unlink, missing_ok=True)
        log.info("call filed", extra={"call_id": session.call_id, "interaction": interaction_id})


def _certificate_names(peercert: object) -> frozenset[str] | None:
    """Subject CNs and DNS SANs of a verified client certificate (None without one)."""
    if not isinstance(peercert, dict) or not peercert:
        return None
    names: set[str] = set()
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(str(value))
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "DNS":
            names.add(str(value))
    return frozenset(names)
