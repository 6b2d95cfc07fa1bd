"""A second copy: every object written to a primary store and to a replica store alike.

Theory of operation: the replica (another Object Lock bucket, or a local folder) gets every object
with the same `retain_until`, and every legal hold, retention extension and purge the primary gets,
in the same call; a write counts only when both copies are stored (each confirmed the way its store
confirms: read-back of the retention on S3). Reads are served by the primary. `tapeline verify`
opens every live object from both copies. A replica that cannot be written makes filing fail and
the capture journal stays, so the record is filed again later rather than held by one copy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from tapeline.archive.objects import ObjectStore


class ReplicatedStore:
    """The primary store, mirrored to a replica on every change."""

    def __init__(self, primary: ObjectStore, replica: ObjectStore) -> None:
        self.primary = primary
        self.replica = replica

    @property
    def mode(self) -> str:
        """The primary's mode: the examiner-facing storage is the primary."""
        return self.primary.mode

    @property
    def replica_mode(self) -> str:
        """How the second copy is stored (`worm-external:<bucket>` or `audit-trail`)."""
        return self.replica.mode

    @property
    def worm(self) -> bool:
        """The primary's WORM property (the replica is reported on its own)."""
        return self.primary.worm

    def put(
        self, object_id: str, chunks: Iterable[bytes], *, retain_until: datetime | None = None
    ) -> None:
        """Store on the primary, then the same bytes and date on the replica."""
        body = b"".join(chunks)
        self.primary.put(object_id, [body], retain_until=retain_until)
        self.replica.put(object_id, [body], retain_until=retain_until)

    def set_legal_hold(self, object_id: str, *, on: bool) -> None:
        """Set or release the hold on both copies."""
        self.primary.set_legal_hold(object_id, on=on)
        self.replica.set_legal_hold(object_id, on=on)

    def extend_retention(self, object_id: str, retain_until: datetime) -> None:
        """Extend both copies' retention (each store refuses to shorten)."""
        self.primary.extend_retention(object_id, retain_until)
        self.replica.extend_retention(object_id, retain_until)

    def version_ids(self, object_id: str) -> list[str]:
        """The primary's version ids (what certificates name)."""
        return self.primary.version_ids(object_id)

    def get(self, object_id: str) -> bytes:
        """Read from the primary."""
        return self.primary.get(object_id)

    def read_range(self, object_id: str, offset: int, length: int) -> bytes:
        """Read part of an object from the primary."""
        return self.primary.read_range(object_id, offset, length)

    def delete(self, object_id: str) -> None:
        """Purge both copies."""
        self.primary.delete(object_id)
        self.replica.delete(object_id)

    def ids(self) -> Iterator[str]:
        """The primary's object ids."""
        return self.primary.ids()

    def free_bytes(self) -> int:
        """The smaller free space of the two."""
        return min(self.primary.free_bytes(), self.replica.free_bytes())
