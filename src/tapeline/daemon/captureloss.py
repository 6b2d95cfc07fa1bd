"""Packet loss over the node's recent calls, from the media quality filed with each recording.

The window is the last `alarms.capture_loss_window` calls this node captured live (SIPREC or tap;
imports and synthetic calls say nothing about this node's capture), all streams pooled: lost over
expected. Pooling weights long calls more than short ones, which is what a listener hears. One bad
call in a window of twenty can raise the alarm; it clears once enough clean calls have pushed it
out of the window, i.e. a later window is at or under the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from tapeline.archive.core import Archive
from tapeline.archive.models import Interaction, Stream

LIVE_SOURCES = ("siprec", "tap")


@dataclass(frozen=True, slots=True, kw_only=True)
class LossWindow:
    """The pooled figures of the recent calls."""

    calls: int
    expected: int
    lost: int

    @property
    def percent(self) -> float | None:
        """Lost packets in percent of expected; None when no packet was expected at all."""
        if self.expected <= 0:
            return None
        return 100.0 * max(self.lost, 0) / self.expected


def recent_loss(archive: Archive, *, calls: int) -> LossWindow:
    """Pool the quality figures of this node's last `calls` live calls (blocking)."""
    with archive.index.read() as session:
        recent = (
            select(Interaction.id)
            .where(
                Interaction.source_node == archive.node_id,
                Interaction.kind == "call",
                Interaction.source_path.in_(LIVE_SOURCES),
            )
            .order_by(Interaction.filed_at.desc(), Interaction.id.desc())
            .limit(calls)
            .subquery()
        )
        count = session.execute(select(func.count()).select_from(recent)).scalar_one()
        expected, lost = session.execute(
            select(
                func.coalesce(func.sum(Stream.quality["expected"].as_integer()), 0),
                func.coalesce(func.sum(Stream.quality["lost"].as_integer()), 0),
            ).where(Stream.interaction_id.in_(select(recent.c.id)))
        ).one()
    return LossWindow(calls=int(count), expected=int(expected), lost=int(lost))
