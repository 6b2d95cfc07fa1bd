"""The `capture.no_audio` alarm: a recorded call with signalling but no RTP for too long.

A SIPREC session whose streams receive nothing usually means the SBC forks signalling but its
media never reaches us (a firewall, a wrong media address, an RTP port range not opened): the
call would be filed as silence. One node-level alarm covers every such session, so monitoring
gets one raise and one clear per episode, not one per call, and no call identifier leaves the box.
Sans-IO apart from `apply`: the service passes, per open session, the loop time of its last RTP
packet (or of its start) and `now`.
"""

from __future__ import annotations

from collections.abc import Iterable

from tapeline.archive.core import Archive
from tapeline.archive.nodes import AlarmLatch

ALARM_NO_AUDIO = "capture.no_audio"


class NoAudioWatch:
    """Counts silent sessions and says when the alarm must flip."""

    def __init__(self, *, limit_s: float) -> None:
        self.limit_s = limit_s
        self.latch = AlarmLatch(ALARM_NO_AUDIO, severity="major")
        self.silent = 0
        self.open = 0

    def evaluate(self, last_audio: Iterable[float], now: float) -> bool | None:
        """The alarm state to write (True: raise, False: clear), or None when it stands."""
        times = list(last_audio)
        self.open = len(times)
        self.silent = sum(1 for t in times if now - t >= self.limit_s)
        active = self.silent > 0
        return None if active == self.latch.active else active

    def apply(self, archive: Archive, *, active: bool) -> None:
        """Write the flip decided by `evaluate` (blocking: the index)."""
        message = (
            f"{self.silent} recorded call(s) have signalling but no audio "
            f"for {self.limit_s:g} s or more"
        )
        self.latch.set(archive, active=active, message=message)

    def health(self) -> tuple[str, str]:
        """`warn` while a call is silent: it is being recorded as silence."""
        if self.silent:
            return "warn", f"{self.silent} of {self.open} open calls without audio"
        return "pass", f"{self.open} open calls, none without audio for {self.limit_s:g} s"
