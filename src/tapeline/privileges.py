"""Dropping root for the CLI on an installed appliance.

Run as root there, the CLI becomes the `tapeline` user before it touches the archive, so no
root-owned database or object files appear (DESIGN §2).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from pathlib import Path

SERVICE_USER = "tapeline"
log = logging.getLogger(__name__)


def drop_to_service_user(state_path: Path) -> bool:
    """Switch to `tapeline` when running as root and the archive belongs to it; True if switched.

    Keys stay readable: they are `root:tapeline 0640` and `tapeline`'s groups are kept.
    """
    if os.geteuid() != 0:
        return False
    try:
        account = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return False
    probe = state_path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.stat().st_uid != account.pw_uid:
        return False
    groups = [g.gr_gid for g in grp.getgrall() if SERVICE_USER in g.gr_mem]
    os.setgroups(sorted({account.pw_gid, *groups}))
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    os.environ["HOME"] = account.pw_dir
    return True
