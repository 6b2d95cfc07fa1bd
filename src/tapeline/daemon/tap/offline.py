"""`tapeline import-pcap`: file every call found in pcap/pcapng captures, as the live tap would.

The capture files are read in chunks through the sans-IO readers and fed, record by record, to
the same `CallTracker` the live tap uses; only the frame source differs. Several files are one
capture (in the order given), so a call split across rotated files stays one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Final

from tapeline.archive.core import Archive
from tapeline.config import Config
from tapeline.daemon.tap.filing import LineBook, file_call, file_orphan, record_of
from tapeline.daemon.tap.tracker import (
    CallEnded,
    CallTracker,
    Endpoint,
    OrphanEnded,
    TrackerCounters,
)
from tapeline.errors import CaptureError
from tapeline.media.srtp import SrtpKeyError, decode_sdes_key
from tapeline.proto.errors import ParseError
from tapeline.proto.net import (
    END_OF_CAPTURE,
    NEED_DATA,
    PacketRecord,
    PcapngReader,
    PcapReader,
    Sentinel,
)

CHUNK: Final = 1 << 20
_PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportSummary:
    """How many records were filed, and the tracker's counters."""

    filed: int
    counters: TrackerCounters


def read_records(path: Path) -> Iterator[PacketRecord]:
    """Every record of one pcap or pcapng file.

    Raises:
        CaptureError: the file cannot be read, or is neither pcap nor pcapng, or is corrupt.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            reader: PcapReader | PcapngReader = (
                PcapngReader() if head == _PCAPNG_MAGIC else PcapReader()
            )
            reader.receive_data(head)
            while True:
                chunk = handle.read(CHUNK)
                reader.receive_data(chunk)
                while True:
                    event = reader.next_event()
                    if isinstance(event, PacketRecord):
                        yield event
                    elif event is END_OF_CAPTURE:
                        return
                    else:
                        break
                if not chunk:
                    return
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc.strerror}") from exc
    except ParseError as exc:
        raise CaptureError(f"{path}: {exc}") from exc


def track(
    paths: Sequence[Path],
    tracker: CallTracker,
    on_end: Callable[[CallEnded], None],
    on_orphan: Callable[[OrphanEnded], None] = lambda _event: None,
) -> None:
    """Feed every record of `paths` to `tracker`.

    `on_end` gets each finished call, `on_orphan` each unsignalled RTP flow worth a record.
    """

    def drain() -> None:
        while not isinstance(event := tracker.next_event(), Sentinel):
            if isinstance(event, CallEnded):
                on_end(event)
            elif isinstance(event, OrphanEnded):
                on_orphan(event)

    for path in paths:
        for record in read_records(path):
            tracker.receive_record(record)
            drain()
    tracker.flush()
    drain()
    assert tracker.next_event() is NEED_DATA  # noqa: S101  # drained


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowHints:
    """What the operator knows about flows without SDP (`--rtp-codec`, `--srtp-key`)."""

    codecs: dict[Endpoint, tuple[str, int]] = field(default_factory=dict)
    keys: dict[Endpoint, tuple[str, bytes]] = field(default_factory=dict)


_DEFAULT_RATES: Final = {"OPUS": 48000, "AMR-WB": 16000, "G7221": 16000}


def _endpoint(text: str) -> Endpoint:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{text!r}: expected ADDRESS:PORT")
    return ip_address(host.strip("[]")), int(port)


def parse_hints(codecs: Sequence[str], keys: Sequence[str]) -> FlowHints:
    """`ADDR:PORT=NAME[/RATE]` codecs and `ADDR:PORT=BASE64` AES_CM_128_HMAC_SHA1_80 keys.

    Raises:
        ValueError: naming the malformed value.
    """
    hints = FlowHints()
    for item in codecs:
        where, sep, name = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--rtp-codec {item!r}: expected ADDR:PORT=NAME[/RATE]")
        codec, _, rate = name.partition("/")
        clock = int(rate) if rate.isdigit() else _DEFAULT_RATES.get(codec.upper(), 8000)
        hints.codecs[_endpoint(where)] = (codec, clock)
    for item in keys:
        where, sep, secret = item.partition("=")
        if not sep:
            raise ValueError(f"--srtp-key {item!r}: expected ADDR:PORT=BASE64")
        try:
            key = decode_sdes_key(secret)
        except (SrtpKeyError, ValueError) as exc:
            raise ValueError(f"--srtp-key {item!r}: {exc}") from exc
        hints.keys[_endpoint(where)] = ("AES_CM_128_HMAC_SHA1_80", key)
    return hints


def tracker_for(config: Config, book: LineBook, hints: FlowHints | None = None) -> CallTracker:
    """The tracker as `[tap]` configures it."""
    return CallTracker(
        sip_ports=frozenset(config.tap.sip_ports),
        is_line=book.is_line,
        media_timeout=config.tap.media_timeout_s,
        orphan_min_packets=config.tap.orphan_min_packets,
        orphan_codecs=hints.codecs if hints else None,
        orphan_keys=hints.keys if hints else None,
    )


def import_captures(
    archive: Archive,
    config: Config,
    paths: Sequence[Path],
    emit: Callable[[dict[str, Any]], None],
    hints: FlowHints | None = None,
) -> ImportSummary:
    """File every call in `paths`; `emit` gets each filed record (DESIGN §7 shape).

    Raises:
        CaptureError: a file is unreadable (records filed before it stay filed).
        StorageError: filing failed.
    """
    book = LineBook(config)
    tracker = tracker_for(config, book, hints)
    filed = 0

    def on_end(event: CallEnded) -> None:
        nonlocal filed
        interaction_id = file_call(archive, config, event.call, book=book)
        filed += 1
        emit(record_of(archive, interaction_id))

    def on_orphan(event: OrphanEnded) -> None:
        nonlocal filed
        interaction_id = file_orphan(archive, config, event.flow)
        filed += 1
        emit(record_of(archive, interaction_id))

    track(paths, tracker, on_end, on_orphan)
    return ImportSummary(filed=filed, counters=tracker.counters)
