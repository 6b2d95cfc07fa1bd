"""The topic tree under `tapeline/v1/<node_id>/` (DESIGN §7 MQTT, operations §2.1).

Topic levels carry only the node id and the event type: never a phone number, a name or a Call-ID,
because topics land in broker logs and ACL audits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "tapeline/v1"
STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
_TYPE_LEVEL = re.compile(r"^[a-z][a-z0-9_.-]{0,47}$")
UNKNOWN_TYPE_LEVEL = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class Topics:
    """The topics of one node."""

    node_id: str

    @property
    def base(self) -> str:
        """`tapeline/v1/<node_id>`."""
        return f"{ROOT}/{self.node_id}"

    @property
    def status(self) -> str:
        """Retained `online` / `offline`, also the Last Will."""
        return f"{self.base}/status"

    @property
    def info(self) -> str:
        """Retained JSON: version, storage mode, listeners, schemas."""
        return f"{self.base}/info"

    @property
    def stats(self) -> str:
        """Retained flat JSON of numbers."""
        return f"{self.base}/stats"

    def event(self, type_: str) -> str:
        """`event/<type>`; a type that is not a plain lowercase name goes to `event/other`."""
        level = type_ if _TYPE_LEVEL.fullmatch(type_) else UNKNOWN_TYPE_LEVEL
        return f"{self.base}/event/{level}"
