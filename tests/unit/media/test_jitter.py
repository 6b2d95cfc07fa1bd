"""Reorder buffer: ordering, duplicates, wraparound, SSRC changes, bounds and RFC 3550 jitter."""

from __future__ import annotations

import pytest

from tapeline.media.jitter import ReorderBuffer
from tapeline.proto.rtp import RtpPacket


def _packet(sequence: int, *, ssrc: int = 1, timestamp: int | None = None) -> RtpPacket:
    ts = sequence * 160 if timestamp is None else timestamp
    return RtpPacket(
        marker=False,
        payload_type=0,
        sequence_number=sequence % 65536,
        timestamp=ts % (1 << 32),
        ssrc=ssrc,
        payload=bytes([sequence % 256]) * 4,
    )


def _run(buffer: ReorderBuffer, sequences: list[int], *, step: float = 0.02) -> list[int]:
    released = []
    for index, sequence in enumerate(sequences):
        released += buffer.push(_packet(sequence), index * step)
    released += buffer.flush()
    return [item.packet.sequence_number for item in released]


def test_reordered_packets_are_released_in_sequence_order() -> None:
    buffer = ReorderBuffer(clock_rate=8000)
    assert _run(buffer, [10, 12, 11, 14, 13, 15]) == [10, 11, 12, 13, 14, 15]
    stats = buffer.stats
    assert (stats.expected, stats.received, stats.lost, stats.duplicates) == (6, 6, 0, 0)


def test_duplicates_are_dropped_and_counted() -> None:
    buffer = ReorderBuffer(clock_rate=8000)
    assert _run(buffer, [1, 2, 2, 3, 3, 3, 4]) == [1, 2, 3, 4]
    assert buffer.stats.duplicates == 3
    assert buffer.stats.received == 4


def test_sequence_wraparound_is_continuous() -> None:
    buffer = ReorderBuffer(clock_rate=8000)
    assert _run(buffer, [65534, 0, 65535, 1, 2]) == [65534, 65535, 0, 1, 2]
    assert (buffer.stats.expected, buffer.stats.lost) == (5, 0)


def test_gap_is_declared_lost_after_the_window_and_reported_on_the_next_packet() -> None:
    buffer = ReorderBuffer(clock_rate=8000, window=0.1)
    released = buffer.push(_packet(1), 0.0)
    assert buffer.push(_packet(4), 0.02) == []
    released += buffer.push(_packet(5), 0.2)  # the gap at 2-3 has now waited longer than 0.1 s
    assert [(r.packet.sequence_number, r.lost_before) for r in released] == [(1, 0), (4, 2), (5, 0)]
    assert buffer.stats.lost == 2


def test_buffer_is_bounded_in_packets() -> None:
    buffer = ReorderBuffer(clock_rate=8000, window=1000.0, max_packets=3)
    buffer.push(_packet(1), 0.0)
    held = [buffer.push(_packet(sequence), 0.0) for sequence in (3, 4, 5)]
    assert held == [[], [], []]
    released = buffer.push(_packet(6), 0.0)  # four held > 3: skip the gap at 2
    assert [r.packet.sequence_number for r in released] == [3, 4, 5, 6]


def test_late_packet_after_its_gap_was_skipped_is_counted_not_released() -> None:
    buffer = ReorderBuffer(clock_rate=8000, window=0.05)
    assert _run(buffer, [1, 3, 4, 5, 6, 2, 7], step=0.03) == [1, 3, 4, 5, 6, 7]
    stats = buffer.stats
    assert (stats.late, stats.received, stats.lost) == (1, 7, 0)


def test_new_ssrc_starts_a_new_segment() -> None:
    buffer = ReorderBuffer(clock_rate=8000)
    released = buffer.push(_packet(100, ssrc=1), 0.0) + buffer.push(_packet(101, ssrc=1), 0.02)
    released += buffer.push(_packet(7, ssrc=2), 0.04) + buffer.push(_packet(8, ssrc=2), 0.06)
    assert [(r.segment, r.packet.ssrc) for r in released] == [(0, 1), (0, 1), (1, 2), (1, 2)]
    assert buffer.stats.ssrcs == (1, 2)
    assert (buffer.stats.expected, buffer.stats.lost, buffer.stats.segments) == (4, 0, 2)


def test_big_jump_needs_a_following_packet_to_be_believed() -> None:
    buffer = ReorderBuffer(clock_rate=8000)
    # 5000 is a lone stray; 20000, 20001 is a restart of the sequence space.
    assert _run(buffer, [1, 2, 5000, 3, 20000, 20001, 20002]) == [1, 2, 3, 20000, 20001, 20002]
    stats = buffer.stats
    assert (stats.stray, stats.segments, stats.expected, stats.lost) == (1, 2, 6, 0)


def test_restart_at_zero_with_same_audio_is_a_reset_not_duplicates() -> None:
    buffer = ReorderBuffer(clock_rate=8000)
    released: list[int] = []
    for index, sequence in enumerate([*range(150), 0, 1, 2]):
        released += [r.segment for r in buffer.push(_packet(sequence), index * 0.02)]
    assert released == [0] * 150 + [1, 1, 1]
    assert (buffer.stats.duplicates, buffer.stats.expected) == (0, 153)


def test_jitter_is_zero_for_a_perfect_clock_and_follows_rfc3550() -> None:
    steady = ReorderBuffer(clock_rate=8000)
    _run(steady, list(range(50)))
    assert steady.stats.jitter == pytest.approx(0.0, abs=1e-6)
    jittery = ReorderBuffer(clock_rate=8000)
    jittery.push(_packet(0), 0.0)
    jittery.push(_packet(1), 0.030)  # 10 ms late: D = 80 timestamp units, J = 80 / 16
    assert jittery.stats.jitter == pytest.approx(5.0)
    assert jittery.stats.longest_gap == pytest.approx(0.030)
    assert (jittery.stats.first_arrival, jittery.stats.last_arrival) == (0.0, 0.030)


def test_timestamp_wrap_does_not_explode_jitter() -> None:
    buffer = ReorderBuffer(clock_rate=8000)
    buffer.push(_packet(0, timestamp=(1 << 32) - 160), 0.0)
    buffer.push(_packet(1, timestamp=0), 0.02)
    assert buffer.stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_repeated_timestamps_do_not_update_jitter() -> None:
    buffer = ReorderBuffer(clock_rate=8000)
    for index in range(5):  # RFC 4733 updates share the event's timestamp
        buffer.push(_packet(index, timestamp=800), index * 0.05)
    assert buffer.stats.jitter == 0.0


def test_small_step_back_is_late_never_a_reset() -> None:
    buffer = ReorderBuffer(clock_rate=8000, window=0.01)
    assert _run(buffer, [10, 12, 13, 14, 11, 11, 15], step=0.03) == [10, 12, 13, 14, 15]
    assert (buffer.stats.segments, buffer.stats.late) == (1, 2)
