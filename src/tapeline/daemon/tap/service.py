"""The live tap: AF_PACKET capture on `tap.interfaces` → call tracker → journal → filing.

Each call gets an encrypted journal in the spool (`tap-*.tpj`) when its INVITE is seen; every
packet the tracker attributes to it (SIP messages, RTP, RTCP) is appended as a pcapng packet, and
journals are sealed and fsynced every second, so a `kill -9` loses at most the last second. At the
call's end the journal is closed, the call filed through the one filing path, and only then the
journal removed. On start, journals left by a crash are replayed through a fresh tracker (the same
code path as `import-pcap`) and filed marked incomplete.

The socket is read on the event loop in batches: the tracker is cheap per packet, and the filing
(encode, encrypt, index) runs in a worker thread so capture never waits for the disk or database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tapeline.archive.core import Archive
from tapeline.archive.journal import JournalWriter, read_journal, sync_all
from tapeline.config import Config
from tapeline.daemon.recorder import Runtime
from tapeline.daemon.tap.bpf import compile_filter
from tapeline.daemon.tap.capture import PacketSocket
from tapeline.daemon.tap.filing import LineBook, file_call, file_orphan
from tapeline.daemon.tap.offline import tracker_for
from tapeline.daemon.tap.tracker import (
    CallEnded,
    CallPacket,
    CallStarted,
    CallTracker,
    OrphanEnded,
    OrphanFlow,
    TapCall,
)
from tapeline.errors import StorageError, TapelineError
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit
from tapeline.proto.net import (
    END_OF_CAPTURE,
    NEED_DATA,
    PacketRecord,
    PcapngReader,
    PcapngWriter,
    Sentinel,
    build_udp_frame,
)
from tapeline.proto.net.frames import LINKTYPE_ETHERNET

log = logging.getLogger(__name__)
FLUSH_INTERVAL_S: Final = 1.0
BATCH: Final = 512
JOURNAL_GLOB: Final = "tap-*.tpj"
NS: Final = 1_000_000_000


@dataclass(slots=True)
class TapCounters:
    """Figures for /metrics and the stats topic."""

    calls_filed: int = 0
    orphans_filed: int = 0
    journal_failures: int = 0
    filing_failures: int = 0
    recovered: int = 0


def _journal_records(data: list[bytes]) -> list[PacketRecord]:
    reader = PcapngReader()
    reader.receive_data(b"".join(data))
    reader.receive_data(b"")
    records: list[PacketRecord] = []
    while not isinstance(event := reader.next_event(), Sentinel):
        records.append(event)
    assert event in (NEED_DATA, END_OF_CAPTURE)  # noqa: S101  # the reader's two sentinels
    return records


def recover_tap_spool(archive: Archive, config: Config) -> int:
    """File every call journal a crash left in the spool, marked incomplete (blocking)."""
    book = LineBook(config)
    filed = 0
    for path in sorted(Path(config.storage.spool).glob(JOURNAL_GLOB)):
        try:
            contents = read_journal(path, archive.vault.archive_key)
            tracker = tracker_for(config, book)
            for record in _journal_records(contents.records):
                tracker.receive_record(record)
            tracker.flush()
            calls = []
            while not isinstance(event := tracker.next_event(), Sentinel):
                if isinstance(event, CallEnded):
                    calls.append(event.call)
            for call in calls:
                if call.end_reason == "capture_ended":  # the journal stopped, not the call
                    call.end_reason = "recovered after a crash"
                file_call(archive, config, call, book=book, incomplete=True)
        except TapelineError:
            log.exception("could not recover tap journal %s; kept", path)
            continue
        if not calls:
            log.error("tap journal %s holds no call; kept for inspection", path)
            continue
        path.unlink()
        filed += len(calls)
    return filed


class TapService:
    """The `tap` capture path of the recorder."""

    name = "tap"

    def __init__(self, config: Config) -> None:
        self._config = config
        self._book = LineBook(config)
        self._tracker: CallTracker = tracker_for(config, self._book)
        self._sockets: list[PacketSocket] = []
        self._journals: dict[str, JournalWriter] = {}
        self._drops_at_start: dict[str, int] = {}
        self._pcap = PcapngWriter()
        self._filing: set[asyncio.Task[None]] = set()
        self._archive: Archive | None = None
        self._syncing: asyncio.Future[list[Path]] | None = None
        self._failed_journals: dict[str, Path] = {}
        self._active: dict[str, int] = {}
        self.counters = TapCounters()

    @property
    def tracker(self) -> CallTracker:
        """The call tracker (its counters feed /metrics)."""
        return self._tracker

    @property
    def sockets(self) -> list[PacketSocket]:
        """The open capture sockets."""
        return self._sockets

    async def start(self, runtime: Runtime) -> None:
        """Finish journals left by a crash, then open every capture socket (before READY=1)."""
        self._archive = runtime.archive
        self._active = runtime.active_calls
        self._active.setdefault("tap", 0)
        runtime.metrics["tap"] = self.figures
        recovered = await asyncio.to_thread(recover_tap_spool, runtime.archive, self._config)
        self.counters.recovered += recovered
        if recovered:
            log.warning("filed %d tapped calls left open by a crash", recovered)
        loop = asyncio.get_running_loop()
        buffer_bytes = self._config.tap.buffer_mb * 1024 * 1024
        bpf = compile_filter(self._config.tap.filter)  # validated with the config already
        for interface in self._config.tap.interfaces:
            sock = PacketSocket(interface, buffer_bytes=buffer_bytes, bpf=bpf)
            self._sockets.append(sock)
            loop.add_reader(sock.fileno(), self._readable, sock)
        log.info("tap capturing", extra={"interfaces": self._config.tap.interfaces})

    async def run(self) -> None:
        """Seal journals, read kernel drop counters and run the tracker's timers every second.

        Journals are sealed here, on the capture loop, and fsynced in a worker thread: an fsync
        per open call each second on the loop would stall capture behind the disk, and the
        kernel would drop frames while it waits.
        """
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._tracker.handle_timer(time.time())
            self._drain()
            self._seal_journals()
            for sock in self._sockets:
                sock.read_statistics()

    def _seal_journals(self) -> None:
        sealed = []
        for call_id, journal in list(self._journals.items()):
            try:
                journal.flush(sync=False)
            except StorageError:
                self._journal_failed(call_id)
                continue
            sealed.append(journal)
        if sealed and (self._syncing is None or self._syncing.done()):
            self._syncing = asyncio.ensure_future(asyncio.to_thread(sync_all, sealed))
            self._syncing.add_done_callback(self._synced)

    def _synced(self, task: asyncio.Future[list[Path]]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        failed = set(task.result())
        for call_id, journal in list(self._journals.items()):
            if journal.path in failed:
                self._journal_failed(call_id)

    def _journal_failed(self, call_id: str) -> None:
        # The call is still followed and filed at its end from memory; only its crash-safe copy
        # is short. Stop writing a journal that failed (a full disk would fail every second).
        journal = self._journals.pop(call_id, None)
        self.counters.journal_failures += 1
        log.error("tap journal write failed; the call is recorded without crash safety",
                  extra={"call_id": call_id})  # fmt: skip
        if journal is not None:
            self._failed_journals[call_id] = Path(journal.path)
            with contextlib.suppress(StorageError):
                journal.close()

    async def stop(self) -> None:
        """Stop capturing; every open call ends now and is filed."""
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.read_statistics()
            sock.close()
        self._tracker.flush()
        self._drain(reason="shutdown")
        if self._filing:
            await asyncio.gather(*self._filing, return_exceptions=True)

    def figures(self) -> dict[str, int]:
        """Counters for /metrics (`tapeline_tap_*`) and the stats topic."""
        tracker = self._tracker.counters
        return {
            "packets_seen": sum(s.counters.packets for s in self._sockets),
            "kernel_packets": sum(s.counters.kernel_packets for s in self._sockets),
            "kernel_drops": sum(s.counters.kernel_drops for s in self._sockets),
            "sip_messages": tracker.sip_messages,
            "sip_malformed": tracker.sip_malformed,
            "tls_streams": tracker.tls_streams,
            "rtp_routed": tracker.rtp_routed,
            "calls_active": self._tracker.open_calls,
            "calls_filed": self.counters.calls_filed,
            "orphans_filed": self.counters.orphans_filed,
            "filing_failures": self.counters.filing_failures,
            "calls_recovered": self.counters.recovered,
            "journal_failures": self.counters.journal_failures,
        }

    def reload(self, config: Config) -> None:
        """New lines for calls that start from now on."""
        self._config = config
        self._book = LineBook(config)
        self._tracker.is_line = self._book.is_line

    def _readable(self, sock: PacketSocket) -> None:
        for record in sock.read_batch(BATCH):
            self._tracker.receive_record(record)
            self._drain()

    def _drain(self, reason: str | None = None) -> None:
        while not isinstance(event := self._tracker.next_event(), Sentinel):
            if isinstance(event, CallStarted):
                self._open(event.call)
            elif isinstance(event, CallPacket):
                self._journal(event)
            elif isinstance(event, CallEnded):
                if reason is not None and event.call.end_reason == "capture_ended":
                    event.call.end_reason = reason
                self._end(event.call)
            elif isinstance(event, OrphanEnded):
                task = asyncio.get_running_loop().create_task(self._file_orphan(event.flow))
                self._filing.add(task)
                task.add_done_callback(self._filing.discard)

    def _open(self, call: TapCall) -> None:
        path = Path(self._config.storage.spool) / f"tap-{uuid.uuid4()}.tpj"
        assert self._archive is not None  # noqa: S101  # started
        try:
            journal = JournalWriter(path, self._archive.vault.archive_key)
        except StorageError:
            # The call is still followed and filed at its end; only crash safety is lost, so
            # say so loudly rather than drop the call.
            self.counters.journal_failures += 1
            log.exception("no journal for a tapped call; it is recorded without crash safety")
        else:
            journal.append(self._pcap.header(LINKTYPE_ETHERNET))
            self._journals[call.call_id] = journal
        self._drops_at_start[call.call_id] = self._kernel_drops()
        task = asyncio.get_running_loop().create_task(self._emit_started(call))
        self._filing.add(task)
        task.add_done_callback(self._filing.discard)
        self._active["tap"] = self._active.get("tap", 0) + 1

    def _journal(self, event: CallPacket) -> None:
        journal = self._journals.get(event.call.call_id)
        if journal is None:
            return
        frame = event.frame  # the captured frame itself, when it carried the datagram whole
        if frame is None:
            try:
                frame = build_udp_frame(
                    event.src, event.dst, event.sport, event.dport, event.payload
                )
            except ValueError:
                return  # larger than one UDP datagram: a TCP SIP message over 64 KiB
        try:
            journal.append(self._pcap.packet(event.ts_ns, frame))
        except StorageError:  # a large chunk is sealed at once and its write failed
            self._journal_failed(event.call.call_id)

    def _kernel_drops(self) -> int:
        return sum(sock.counters.kernel_drops for sock in self._sockets)

    def _end(self, call: TapCall) -> None:
        journal = self._journals.pop(call.call_id, None)
        self._active["tap"] = max(self._active.get("tap", 0) - 1, 0)
        for sock in self._sockets:
            if sock.fileno() >= 0:
                sock.read_statistics()
        drops = self._kernel_drops() - self._drops_at_start.pop(call.call_id, 0)
        task = asyncio.get_running_loop().create_task(self._file(call, journal, drops))
        self._filing.add(task)
        task.add_done_callback(self._filing.discard)

    async def _emit_started(self, call: TapCall) -> None:
        archive = self._archive
        assert archive is not None  # noqa: S101  # started
        data = {"call_ref": call.call_id, "source": "tap", "direction": call.direction}

        def write() -> None:
            with archive.index.write() as db:
                emit(db, node_id=archive.node_id, type_=EventType.CALL_STARTED, data=data)

        try:
            await asyncio.to_thread(write)
        except TapelineError:
            log.exception("call.started not recorded (the call is still being captured)")

    async def _file_orphan(self, flow: OrphanFlow) -> None:
        # Not journaled: a flow is known to be an orphan only once it has gone quiet.
        archive = self._archive
        assert archive is not None  # noqa: S101  # started
        try:
            await asyncio.to_thread(file_orphan, archive, self._config, flow)
        except TapelineError:
            self.counters.filing_failures += 1
            log.exception("orphan RTP flow could not be filed")
            return
        self.counters.orphans_filed += 1

    async def _file(self, call: TapCall, journal: JournalWriter | None, drops: int) -> None:
        archive = self._archive
        assert archive is not None  # noqa: S101  # started
        config, book = self._config, self._book
        # A journal that failed mid-call was closed then; its short file still has to go once
        # the call is filed, or a restart would file that part a second time.
        path = Path(journal.path) if journal else self._failed_journals.pop(call.call_id, None)

        def file() -> str:
            if journal is not None:
                try:
                    journal.close()
                except StorageError:  # the call is in memory: file it all the same
                    self.counters.journal_failures += 1
                    log.exception("tap journal could not be closed; filing from memory")
            return file_call(archive, config, call, book=book, kernel_drops=drops)

        try:
            interaction_id = await asyncio.to_thread(file)
        except TapelineError:
            self.counters.filing_failures += 1
            log.exception("tapped call could not be filed; journal kept")
            return
        self.counters.calls_filed += 1
        if path is not None:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        log.info(
            "tapped call filed", extra={"call_id": call.call_id, "interaction": interaction_id}
        )
