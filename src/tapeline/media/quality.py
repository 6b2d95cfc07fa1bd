"""Per-stream quality figures filed with a recording (DESIGN §4 step 5; RFC 3550 §6.4.1 terms)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tapeline.media.jitter import StreamStats

_MS_PER_SECOND: Final = 1000.0
ONE_WAY_MIN_PACKETS: Final = 50  # one second of 20 ms packets


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamQuality:
    """What a reviewer and monitoring need to judge one stream.

    Attributes:
        channel: the recording channel the stream was mapped to.
        expected: packets the sequence numbers say were sent (sum over segments).
        received: distinct packets received (late ones included, duplicates not).
        lost: expected minus received.
        duplicates: packets received more than once.
        jitter_ms: RFC 3550 interarrival jitter at the end of the stream, in milliseconds.
        max_jitter_ms: the largest jitter value seen.
        longest_gap_ms: the longest time between two arrivals (loss, hold, or one-way audio).
        srtp_auth_failures: packets dropped because SRTP authentication failed.
        undecodable: packets dropped as malformed, of an unknown type, or not decodable.
        ssrcs: the SSRCs seen, in order.
    """

    channel: int
    expected: int
    received: int
    lost: int
    duplicates: int
    jitter_ms: float
    max_jitter_ms: float
    longest_gap_ms: float
    srtp_auth_failures: int = 0
    undecodable: int = 0
    ssrcs: tuple[int, ...] = ()

    @classmethod
    def from_stats(
        cls,
        stats: StreamStats,
        *,
        channel: int,
        clock_rate: int,
        srtp_auth_failures: int = 0,
        undecodable: int = 0,
    ) -> StreamQuality:
        """Build the figures from a reorder buffer's `StreamStats` and the stream's RTP clock."""
        return cls(
            channel=channel,
            expected=stats.expected,
            received=stats.received,
            lost=stats.lost,
            duplicates=stats.duplicates,
            jitter_ms=stats.jitter / clock_rate * _MS_PER_SECOND,
            max_jitter_ms=stats.max_jitter / clock_rate * _MS_PER_SECOND,
            longest_gap_ms=stats.longest_gap * _MS_PER_SECOND,
            srtp_auth_failures=srtp_auth_failures,
            undecodable=undecodable,
            ssrcs=stats.ssrcs,
        )


def is_one_way(streams: Iterable[StreamQuality], *, min_packets: int = ONE_WAY_MIN_PACKETS) -> bool:
    """Tell whether a call had audio in one direction only.

    Args:
        streams: the quality figures of every stream of the call.
        min_packets: fewer received packets than this on a channel counts as no audio.

    Returns:
        True when at least one channel heard audio and another channel did not.
    """
    per_channel: dict[int, int] = {}
    for stream in streams:
        per_channel[stream.channel] = per_channel.get(stream.channel, 0) + stream.received
    heard = [count >= min_packets for count in per_channel.values()]
    return len(heard) > 1 and any(heard) and not all(heard)
