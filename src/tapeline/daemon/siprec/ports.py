"""The RTP port pool (`siprec.rtp_ports`): blocks of even RTP ports, RTCP on the odd one above.

A session takes one block of `2 * m-lines` ports, so m-line *i* gets `base + 2i`. That layout is
also what SIPp's `play_pcap_audio` assumes when it replays several streams ("remote port + offset").
"""

from __future__ import annotations


class PortPoolExhausted(Exception):  # noqa: N818  # an operational state, answered with 503
    """No block of free ports is left."""


class PortPool:
    """Hands out and takes back contiguous even-aligned port blocks."""

    def __init__(self, low: int, high: int) -> None:
        self._low = low + (low % 2)
        self._high = high
        self._used: set[int] = set()
        self._next = self._low

    def allocate(self, count: int) -> int:
        """Reserve `count` RTP/RTCP pairs; returns the first (even) RTP port.

        Raises:
            PortPoolExhausted: no contiguous block is free.
        """
        width = 2 * count
        span = self._high - self._low + 1
        for _ in range(max(1, span // 2)):
            base = self._next
            if base + width - 1 > self._high:
                base = self._low
            self._next = base + width if base + 2 * width - 1 <= self._high else self._low
            block = range(base, base + width)
            if not self._used.intersection(block):
                self._used.update(block)
                return base
        raise PortPoolExhausted("RTP port pool exhausted")

    def release(self, base: int, count: int) -> None:
        """Give a block back."""
        self._used.difference_update(range(base, base + 2 * count))

    @property
    def in_use(self) -> int:
        """Ports currently reserved."""
        return len(self._used)
