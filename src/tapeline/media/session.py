"""The media side of one call session: datagrams in, stereo audio, quality and DTMF out.

DESIGN §4 step 4 per stream: SRTP unprotect → RTP/RTCP demux (RFC 5761) → parse → reorder and
de-duplicate → decode → place on the session timeline; step 5 maps streams to channels and
renders. Sans-IO: the adapter (SIPREC ports, the tap, `import-pcap`) passes each UDP payload with
its arrival time `now`; nothing here reads a clock, opens a socket or logs. Malformed packets
(RtpParseError), SRTP failures and undecodable payloads are dropped and counted on the stream
(style.md §3.3), never raised.

Usage::

    media = MediaSession(start=now)
    caller = media.add_stream(channel=0, formats=formats_from_sdp)
    caller.receive_datagram(udp_payload, now=now)   # for every packet of that flow
    result = media.finish(end=now)                  # stereo int16, quality, DTMF
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from tapeline.media.formats import STATIC_FORMATS, TELEPHONE_EVENT
from tapeline.media.jitter import ReorderBuffer
from tapeline.media.quality import StreamQuality, is_one_way
from tapeline.media.recording import interleave
from tapeline.media.timeline import RENDER_NARROWBAND, RENDER_WIDEBAND, ChannelTimeline, DtmfEvent
from tapeline.proto.errors import RtpParseError
from tapeline.proto.rtp import RtcpSenderReport, is_rtcp, parse_rtcp, parse_rtp

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy.typing as npt

    from tapeline.media.formats import PayloadFormat
    from tapeline.media.srtp import SrtpReceiver

CHANNELS: Final = 2
DEFAULT_CLOCK_RATE: Final = 8000
MAX_REORDER_PACKETS: Final = 256  # 5 s of 20 ms packets, beyond any sane reorder window
_INT16_MIN: Final = -32768
_INT16_MAX: Final = 32767


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaResult:
    """Everything the recording writer and the index need from a call's media.

    Attributes:
        sample_rate: 8000, or 16000 when any stream decoded wideband audio.
        stereo: int16 samples, shape (frames, 2): channel 0 employee line, 1 external party.
        quality: one entry per stream, in the order the streams were added.
        dtmf: (channel, event) pairs in order of start. Sensitive: never log the symbols.
        one_way: audio was heard on one channel only.
    """

    sample_rate: int
    stereo: npt.NDArray[np.int16]
    quality: tuple[StreamQuality, ...]
    dtmf: tuple[tuple[int, DtmfEvent], ...]
    one_way: bool


class MediaStream:
    """One RTP flow of the session (one m-line direction, possibly several SSRCs over time).

    Args:
        channel: 0 (employee line) or 1 (external party).
        formats: payload types the SDP negotiated; RFC 3551 static types are added underneath.
        session_start: the session's start time, in the clock `now` is given in.
        srtp: the SRTP receiver when the m-line is RTP/SAVP with SDES keys.
        reorder_window: seconds a sequence gap may stay open before it is declared lost.
    """

    def __init__(
        self,
        *,
        channel: int,
        formats: Mapping[int, PayloadFormat],
        session_start: float,
        srtp: SrtpReceiver | None = None,
        reorder_window: float = 0.5,
    ) -> None:
        self.channel = channel
        self.formats: dict[int, PayloadFormat] = {**STATIC_FORMATS, **formats}
        audio_clocks = [f.clock_rate for f in formats.values() if f.name != TELEPHONE_EVENT]
        self.clock_rate = audio_clocks[0] if audio_clocks else DEFAULT_CLOCK_RATE
        self._srtp = srtp
        self._buffer = ReorderBuffer(
            clock_rate=self.clock_rate, window=reorder_window, max_packets=MAX_REORDER_PACKETS
        )
        self.timeline = ChannelTimeline(session_start=session_start, formats=self.formats)
        self.malformed = 0
        self.sender_reports: dict[int, RtcpSenderReport] = {}

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Take one UDP payload of this flow (RTP or RTCP, SRTP-protected or not).

        Args:
            data: the UDP payload.
            now: its arrival time in seconds.
        """
        try:
            rtcp = is_rtcp(data)
        except RtpParseError:
            self.malformed += 1
            return
        if rtcp:
            self._receive_rtcp(data)
            return
        plain = self._srtp.unprotect(data) if self._srtp else data
        if plain is None:
            return
        try:
            packet = parse_rtp(plain)
        except RtpParseError:
            self.malformed += 1
            return
        for item in self._buffer.push(packet, now):
            self.timeline.add(item)

    def finish(self) -> None:
        """Release whatever the reorder buffer still holds (end of call)."""
        for item in self._buffer.flush():
            self.timeline.add(item)

    @property
    def quality(self) -> StreamQuality:
        """The stream's figures so far."""
        return StreamQuality.from_stats(
            self._buffer.stats,
            channel=self.channel,
            clock_rate=self.clock_rate,
            srtp_auth_failures=self._srtp.auth_failures if self._srtp else 0,
            undecodable=self.malformed + self.timeline.undecodable,
        )

    def _receive_rtcp(self, data: bytes) -> None:
        plain = self._srtp.unprotect_rtcp(data) if self._srtp else data
        if plain is None:
            return
        try:
            packets = parse_rtcp(plain)
        except RtpParseError:
            self.malformed += 1
            return
        for packet in packets:
            if isinstance(packet, RtcpSenderReport):
                self.sender_reports[packet.ssrc] = packet


class MediaSession:
    """All media streams of one call session, rendered together onto one timeline.

    Args:
        start: the session's start (the first signalling or media event), arrival clock.
    """

    def __init__(self, *, start: float) -> None:
        self.start = start
        self.streams: list[MediaStream] = []

    def add_stream(
        self,
        *,
        channel: int,
        formats: Mapping[int, PayloadFormat],
        srtp: SrtpReceiver | None = None,
        reorder_window: float = 0.5,
    ) -> MediaStream:
        """Register one RTP flow on a channel; feed it with `MediaStream.receive_datagram`.

        Raises:
            ValueError: `channel` is not 0 or 1.
        """
        if channel not in range(CHANNELS):
            raise ValueError(f"channel must be 0 or 1, not {channel}")
        stream = MediaStream(
            channel=channel,
            formats=formats,
            session_start=self.start,
            srtp=srtp,
            reorder_window=reorder_window,
        )
        self.streams.append(stream)
        return stream

    def finish(self, *, end: float, cover_audio: bool = False) -> MediaResult:
        """Flush every stream and render the call from `start` to `end`.

        Args:
            end: the session's end (BYE, or the last packet for a capture), arrival clock.
            cover_audio: extend `end` to the end of the last decoded audio. A passive capture
                knows when its last packet *arrived*, not when its 20 ms of sound ended, and
                packets seen just after a BYE were still heard.

        Returns:
            The stereo audio, exactly `(end - start)` seconds long, with quality and DTMF.
        """
        for stream in self.streams:
            stream.finish()
        if cover_audio:
            ends = [s.timeline.audio_end for s in self.streams if s.timeline.audio_end is not None]
            end = max([end, *ends])
        wideband = any(stream.timeline.wideband for stream in self.streams)
        rate = RENDER_WIDEBAND if wideband else RENDER_NARROWBAND
        length = max(round((end - self.start) * rate), 0)
        mixed = np.zeros((CHANNELS, length), dtype=np.int32)
        for stream in self.streams:
            mixed[stream.channel] += stream.timeline.render(end=end, rate=rate)
        channels = np.clip(mixed, _INT16_MIN, _INT16_MAX).astype(np.int16)
        quality = tuple(stream.quality for stream in self.streams)
        dtmf = sorted(
            (
                (stream.channel, event)
                for stream in self.streams
                for event in stream.timeline.dtmf_events
            ),
            key=lambda pair: pair[1].start,
        )
        return MediaResult(
            sample_rate=rate,
            stereo=interleave(channels[0], channels[1]),
            quality=quality,
            dtmf=tuple(dtmf),
            one_way=is_one_way(quality),
        )
