"""sd_notify(3) from the standard library: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import os
import socket


def sd_notify(*messages: str) -> bool:
    """Send state lines to systemd; a no-op (False) when not started by systemd.

    Raises:
        ValueError: NOTIFY_SOCKET names something that is neither a path nor abstract.
    """
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] not in "@/":
        raise ValueError(f"unsupported NOTIFY_SOCKET {addr!r}")
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(messages).encode(), addr)
    except OSError:
        # systemd went away (or a test's socket closed): notifying is best effort, never fatal.
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC (sd_watchdog_enabled(3)), or None when no watchdog is asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6
