"""Place one channel's decoded audio on the session timeline (DESIGN §4 step 4, siprec.md §12.3).

Theory of operation: the session timeline starts at `session_start` (seconds, the caller's clock)
and its length is the call's length. Each segment of a stream (see `tapeline.media.jitter`) is
anchored when its first packet is released: the packet's *arrival* time fixes where its RTP
timestamp lies on the timeline, and later packets of the segment are placed by RTP timestamp
from that anchor (RFC 3550 §5.1), so network jitter does not move audio. If a packet's
timestamp-derived place disagrees with its arrival by more than `resync_tolerance` seconds (a
sender that froze or jumped its timestamps across hold, or clock drift past the tolerance), the
segment is re-anchored on that packet's arrival. Nothing between packets is ever closed up:
whatever no packet covers (loss, hold, pause, DTX, comfort noise) stays silence, so rendered
audio is exactly `(end - session_start) * rate` samples long. Where placements overlap, the later
packet wins.

RFC 4733 telephone-events are taken out as `DtmfEvent` values (deduplicated on SSRC, event
timestamp and event code, siprec.md §12.2) and never become audio; comfort noise (RFC 3389)
renders as silence. The digit lives only in the returned events: nothing here logs.

Resampling (narrowband segments in a wideband recording) is linear interpolation with numpy over
each contiguous run of audio: cheap, no new dependency, and adequate for speech review, but it is
not band-limited, so 8 kHz material upsampled to 16 kHz carries faint imaging above 4 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from tapeline.media.codecs import DecodeError, UnsupportedCodecError, create_decoder
from tapeline.media.formats import COMFORT_NOISE, TELEPHONE_EVENT
from tapeline.proto.errors import RtpParseError
from tapeline.proto.rtp import PAYLOAD_TYPE_COMFORT_NOISE, parse_telephone_event

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tapeline.media.codecs import Decoder, Samples
    from tapeline.media.formats import PayloadFormat
    from tapeline.media.jitter import OrderedPacket

TIMESTAMP_MODULUS: Final = 1 << 32
RENDER_NARROWBAND: Final = 8000
RENDER_WIDEBAND: Final = 16000
RESYNC_TOLERANCE: Final = 1.0  # seconds
_SNAP_SAMPLES: Final = 2  # rounding slack when joining consecutive frames into one run


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfEvent:
    """One RFC 4733 event on the session timeline.

    Attributes:
        symbol: "0"-"9", "*", "#", "A"-"D", or "event-N" for non-DTMF events. Sensitive (PINs):
            keep out of logs.
        start: seconds from the session start.
        duration: seconds, the longest duration any packet of the event reported.
        ended: an end-of-event packet was seen.
        volume: power level in -dBm0 from the last packet seen.
        ssrc: the stream's SSRC.
    """

    symbol: str
    start: float
    duration: float
    ended: bool
    volume: int
    ssrc: int

    def __repr__(self) -> str:
        """Hide the digit, so that a stray log line or traceback cannot leak a PIN."""
        return (
            f"DtmfEvent(start={self.start:.3f}, duration={self.duration:.3f}, ended={self.ended})"
        )


@dataclass(slots=True)
class _Anchor:
    segment: int
    position: float  # seconds from session start
    timestamp: int
    clock_rate: int


@dataclass(slots=True)
class _Chunk:
    rate: int
    start: int  # sample index at `rate`
    samples: Samples


class ChannelTimeline:
    """Collects one channel's packets (from one or more streams) and renders its audio.

    Args:
        session_start: the session's start, in the same clock as packet arrivals.
        formats: the payload formats the stream may carry, by payload type.
        resync_tolerance: seconds a timestamp may disagree with arrival before re-anchoring.
    """

    def __init__(
        self,
        *,
        session_start: float,
        formats: Mapping[int, PayloadFormat],
        resync_tolerance: float = RESYNC_TOLERANCE,
    ) -> None:
        self._start = session_start
        self._formats = formats
        self._tolerance = resync_tolerance
        self._anchor: _Anchor | None = None
        self._decoder: tuple[int, int, Decoder] | None = None  # (segment, payload type, decoder)
        self._chunks: list[_Chunk] = []
        self._events: dict[tuple[int, int, int], DtmfEvent] = {}
        self.undecodable = 0
        self.wideband = False

    @property
    def dtmf_events(self) -> list[DtmfEvent]:
        """The telephone-events so far, in order of start."""
        return sorted(self._events.values(), key=lambda event: event.start)

    def add(self, item: OrderedPacket) -> None:
        """Place one released packet: decode audio, record an event, or skip it.

        Unknown payload types (keepalives, RFC 6263), undecodable payloads and malformed events
        are dropped and counted in `undecodable`; they never raise.
        """
        packet = item.packet
        payload_format = self._formats.get(packet.payload_type)
        if payload_format is None:
            self.undecodable += 1
            return
        if payload_format.name == TELEPHONE_EVENT:
            self._add_event(item, self._event_position(item), payload_format.clock_rate)
            return
        position = self._place(item, payload_format.clock_rate)
        if (
            payload_format.name == COMFORT_NOISE
            or packet.payload_type == PAYLOAD_TYPE_COMFORT_NOISE
        ):
            return  # RFC 3389: comfort noise renders as the silence already there
        try:
            decoder = self._decoder_for(item.segment, payload_format)
            samples = decoder.decode(packet.payload)
        except (UnsupportedCodecError, DecodeError):
            self.undecodable += 1
            return
        if samples.size:
            rate = decoder.sample_rate
            self.wideband = self.wideband or rate > RENDER_NARROWBAND
            self._chunks.append(_Chunk(rate=rate, start=round(position * rate), samples=samples))

    @property
    def audio_end(self) -> float | None:
        """Where the last decoded audio ends, in the arrival clock (None before any)."""
        if not self._chunks:
            return None
        return self._start + max((c.start + len(c.samples)) / c.rate for c in self._chunks)

    def render(self, *, end: float, rate: int) -> Samples:
        """Render the channel from session start to `end` at `rate`.

        Args:
            end: the session's end, in the arrival clock.
            rate: output sample rate (8000 or 16000).

        Returns:
            int16 mono samples, exactly `round((end - session_start) * rate)` long.
        """
        out = np.zeros(max(round((end - self._start) * rate), 0), dtype=np.int16)
        for run_rate, run_start, run in self._runs():
            samples = run if run_rate == rate else _resample(run, run_rate, rate)
            first = round(run_start / run_rate * rate)
            lo, hi = max(first, 0), min(first + len(samples), len(out))
            if hi > lo:
                out[lo:hi] = samples[lo - first : hi - first]
        return out

    def _place(self, item: OrderedPacket, clock_rate: int) -> float:
        arrival_position = item.arrival - self._start
        anchor = self._anchor
        if anchor is None or anchor.segment != item.segment or anchor.clock_rate != clock_rate:
            anchor = self._reanchor(item, arrival_position, clock_rate)
        delta = (item.packet.timestamp - anchor.timestamp) % TIMESTAMP_MODULUS
        if delta >= TIMESTAMP_MODULUS // 2:
            delta -= TIMESTAMP_MODULUS
        position = anchor.position + delta / clock_rate
        if abs(position - arrival_position) > self._tolerance:
            anchor = self._reanchor(item, arrival_position, clock_rate)
            position = arrival_position
        return position

    def _event_position(self, item: OrderedPacket) -> float:
        # RFC 4733 §2.1: events share the audio's timestamp clock, so place them from the audio
        # anchor without moving it; before any audio, or across a jump, use the arrival time.
        arrival_position = item.arrival - self._start
        anchor = self._anchor
        if anchor is None or anchor.segment != item.segment:
            return arrival_position
        delta = (item.packet.timestamp - anchor.timestamp) % TIMESTAMP_MODULUS
        if delta >= TIMESTAMP_MODULUS // 2:
            delta -= TIMESTAMP_MODULUS
        position = anchor.position + delta / anchor.clock_rate
        return arrival_position if abs(position - arrival_position) > self._tolerance else position

    def _reanchor(self, item: OrderedPacket, position: float, clock_rate: int) -> _Anchor:
        self._anchor = _Anchor(
            segment=item.segment,
            position=position,
            timestamp=item.packet.timestamp,
            clock_rate=clock_rate,
        )
        return self._anchor

    def _decoder_for(self, segment: int, payload_format: PayloadFormat) -> Decoder:
        current = self._decoder
        if current is None or current[:2] != (segment, payload_format.payload_type):
            decoder = create_decoder(
                payload_format.encoding_name,
                channels=payload_format.channels,
                fmtp=payload_format.fmtp,
            )
            current = (segment, payload_format.payload_type, decoder)
            self._decoder = current
        return current[2]

    def _add_event(self, item: OrderedPacket, position: float, clock_rate: int) -> None:
        try:
            event = parse_telephone_event(item.packet.payload)
        except RtpParseError:
            self.undecodable += 1
            return
        key = (item.packet.ssrc, item.packet.timestamp, event.event)
        previous = self._events.get(key)
        duration = event.duration / clock_rate
        self._events[key] = DtmfEvent(
            symbol=event.symbol or f"event-{event.event}",
            start=previous.start if previous else position,
            duration=max(duration, previous.duration) if previous else duration,
            ended=event.end or (previous.ended if previous else False),
            volume=event.volume,
            ssrc=item.packet.ssrc,
        )

    def _runs(self) -> list[tuple[int, int, Samples]]:
        runs: list[tuple[int, int, Samples]] = []
        pending: list[Samples] = []
        run_rate = run_start = run_end = 0
        for chunk in self._chunks:
            contiguous = chunk.rate == run_rate and abs(chunk.start - run_end) <= _SNAP_SAMPLES
            if pending and contiguous:
                pending.append(chunk.samples)
                run_end += len(chunk.samples)
                continue
            if pending:
                runs.append((run_rate, run_start, np.concatenate(pending)))
            pending = [chunk.samples]
            run_rate, run_start, run_end = chunk.rate, chunk.start, chunk.start + len(chunk.samples)
        if pending:
            runs.append((run_rate, run_start, np.concatenate(pending)))
        return runs


def _resample(samples: Samples, source_rate: int, target_rate: int) -> Samples:
    count = round(len(samples) * target_rate / source_rate)
    positions = np.arange(count) * (source_rate / target_rate)
    interpolated = np.interp(positions, np.arange(len(samples)), samples.astype(np.float64))
    resampled: Samples = np.round(interpolated).astype(np.int16)
    return resampled
