from __future__ import annotations

import time

import pytest

from tapeline.archive import totp
from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.nodes import active_alarms, clear_alarm, heartbeat, raise_alarm, take_lease
from tapeline.archive.users import MAX_FAILED_LOGINS, add_user, authenticate, list_users
from tapeline.errors import AccessDenied
from tapeline.events.outbox import pending

SYSTEM = Actor.system("test")
PASSWORD = "a long enough password"


def test_rfc6238_reference_vector() -> None:
    # RFC 6238 Appendix B, SHA-1, T = 59 s, 8 digits -> 94287082; we use 6 digits: 287082
    secret = b"12345678901234567890"
    assert totp.totp(secret, 59) == "287082"
    assert totp.verify(secret, "287082", 59 + 30)  # one step of drift is accepted
    assert not totp.verify(secret, "287082", 59 + 90)


def test_totp_account_needs_the_code(archive: Archive) -> None:
    secret = add_user(
        archive, name="lee", roles=["legal"], teams=[], password=PASSWORD, by=SYSTEM, with_totp=True
    )
    assert secret is not None
    now = time.time()
    with pytest.raises(AccessDenied):
        authenticate(archive, name="lee", password=PASSWORD, code=None, now=now)
    actor = authenticate(
        archive, name="lee", password=PASSWORD, code=totp.totp(secret, now), now=now
    )
    assert actor.roles == ("legal",)
    assert list_users(archive)[0].totp is True


def test_lockout_after_repeated_failures_even_with_the_right_password(archive: Archive) -> None:
    add_user(archive, name="rita", roles=["reviewer"], teams=[], password=PASSWORD, by=SYSTEM)
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(AccessDenied):
            authenticate(archive, name="rita", password="wrong wrong wrong", code=None)
    with pytest.raises(AccessDenied):
        authenticate(archive, name="rita", password=PASSWORD, code=None)


def test_unknown_roles_and_duplicate_names_are_refused(archive: Archive) -> None:
    from tapeline.errors import TapelineError  # noqa: PLC0415

    with pytest.raises(TapelineError, match="unknown or missing roles"):
        add_user(archive, name="x", roles=["root"], teams=[], password=PASSWORD, by=SYSTEM)
    add_user(archive, name="x", roles=["auditor"], teams=[], password=PASSWORD, by=SYSTEM)
    with pytest.raises(TapelineError, match="exists already"):
        add_user(archive, name="x", roles=["auditor"], teams=[], password=PASSWORD, by=SYSTEM)


def test_alarms_raise_once_clear_once_and_emit_events(archive: Archive) -> None:
    assert raise_alarm(archive, code="disk.90", severity="major", message="objects 91% full")
    assert not raise_alarm(archive, code="disk.90", severity="major", message="objects 92% full")
    assert [a.count for a in active_alarms(archive)] == [2]
    assert clear_alarm(archive, code="disk.90")
    assert not clear_alarm(archive, code="disk.90")
    assert active_alarms(archive) == []
    with archive.index.read() as session:
        events = pending(session, archive.node_id)
    assert [(e.type, e.seq) for e in events] == [("alarm.raised", 1), ("alarm.cleared", 2)]


def test_leases_exclude_other_nodes_until_they_expire(archive: Archive) -> None:
    from dataclasses import replace  # noqa: PLC0415

    other = replace(
        archive,
        config=archive.config.model_copy(
            update={"node": archive.config.node.model_copy(update={"id": "other-node"})}
        ),
    )
    assert take_lease(archive, "purge", seconds=60)
    assert take_lease(archive, "purge", seconds=60)  # renewal by the holder
    assert not take_lease(other, "purge", seconds=60)
    assert take_lease(other, "scrub", seconds=-1)  # already expired when taken
    assert take_lease(archive, "scrub", seconds=60)


def test_heartbeat_row_per_node(archive: Archive) -> None:
    from tapeline.archive.models import NodeHeartbeat  # noqa: PLC0415

    heartbeat(archive, status={"active_calls": 0}, starting=True)
    heartbeat(archive, status={"active_calls": 3})
    with archive.index.read() as session:
        row = session.get_one(NodeHeartbeat, archive.node_id)
    assert row.status == {"active_calls": 3}
    assert row.seen_at >= row.started_at
