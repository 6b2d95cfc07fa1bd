"""The review flag, review queue and resolution screens, through the ASGI app."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tapeline.archive.models import AuditEntry, Interaction
from tapeline.archive.nodes import raise_alarm
from tapeline.archive.trustedclock import CLOCK_ALARM, is_suspended
from tests.unit.web.conftest import Site, csrf_of


def _row(site: Site, interaction_id: str) -> Interaction:
    with site.archive.index.read() as session:
        return session.get_one(Interaction, interaction_id)


def test_flag_shows_on_the_record_and_in_the_queue_and_resolving_files_a_record(
    site: Site,
) -> None:
    rita = site.login("rita")
    token = csrf_of(rita)
    flagged = rita.post(
        f"/records/{site.call_id}/review-flag", data={"csrf": token, "reason": "price quoted"}
    )
    assert flagged.status_code == 303, flagged.text
    page = rita.get(f"/records/{site.call_id}")
    assert "open review flag: rita: price quoted" in page.text
    assert 'id="review-flag"' not in page.text  # no second flag form while one is open
    queue = rita.get("/review")
    assert queue.status_code == 200
    assert f'href="/records/{site.call_id}"' in queue.text
    resolved = rita.post(
        f"/review/{site.call_id}/resolve",
        data={"csrf": token, "action": "no breach", "comment": "quote within limits"},
    )
    assert resolved.status_code == 200, resolved.text
    assert _row(site, site.call_id).review_flag is None
    with site.archive.index.read() as session:
        kinds = session.execute(
            select(Interaction).where(Interaction.kind == "review_resolution")
        ).scalars()
        resolutions = list(kinds)
        actions = set(session.execute(select(AuditEntry.action)).scalars())
    assert len(resolutions) == 1
    assert resolutions[0].outcome == "no breach"
    assert resolutions[0].id in resolved.text
    assert {"review.flagged", "review.resolved"} <= actions
    assert "No open flags." in rita.get("/review").text
    after = rita.get(f"/records/{site.call_id}").text
    assert "no open flag" in after
    assert f'href="/records/{resolutions[0].id}">resolution record' in after


def test_roles_and_team_scope_are_refused(site: Site) -> None:
    audrey = site.login("audrey")
    refused = audrey.post(
        f"/records/{site.call_id}/review-flag", data={"csrf": csrf_of(audrey), "reason": "x"}
    )
    assert refused.status_code == 403
    assert 'id="review-flag"' not in audrey.get(f"/records/{site.call_id}").text
    sam = site.login("sam")  # supervisor of rates: Bob's call is equities
    token = csrf_of(sam)
    other = sam.post(
        f"/records/{site.other_call_id}/review-flag", data={"csrf": token, "reason": "x"}
    )
    assert other.status_code == 404
    own = sam.post(f"/records/{site.call_id}/review-flag", data={"csrf": token, "reason": "x"})
    assert own.status_code == 303
    assert _row(site, site.other_call_id).review_flag is None
    assert _row(site, site.call_id).review_flag == "sam: x"


def test_missing_csrf_is_refused_and_nothing_changes(site: Site) -> None:
    rita = site.login("rita")
    answer = rita.post(f"/records/{site.call_id}/review-flag", data={"reason": "no token"})
    assert answer.status_code in {400, 403}
    assert _row(site, site.call_id).review_flag is None


def test_api_flag_list_resolve_with_a_token(site: Site) -> None:
    owner = site.login("rita")
    made = owner.post("/account/tokens", data={"csrf": csrf_of(owner), "label": "t"})
    found = re.search(r'id="new-token">(tl_[A-Za-z0-9_-]+)<', made.text)
    assert found is not None
    api = site.client()
    auth = {"Authorization": f"Bearer {found.group(1)}"}
    flagged = api.post(
        f"/api/v1/interactions/{site.call_id}/review-flag", json={"reason": "r"}, headers=auth
    )
    assert flagged.status_code == 201, flagged.text
    again = api.post(
        f"/api/v1/interactions/{site.call_id}/review-flag", json={"reason": "r"}, headers=auth
    )
    assert again.status_code == 400  # already flagged
    listed = api.get("/api/v1/review-flags", headers=auth)
    assert [f["id"] for f in listed.json()] == [site.call_id]
    resolved = api.post(
        f"/api/v1/review-flags/{site.call_id}/resolve",
        json={"action": "escalated", "comment": "to compliance"},
        headers=auth,
    )
    assert resolved.status_code == 200, resolved.text
    assert _row(site, resolved.json()["resolution"]).kind == "review_resolution"
    assert api.get("/api/v1/review-flags", headers=auth).json() == []
    assert api.get("/api/v1/review-flags").status_code == 401


def test_clock_confirm_is_offered_to_records_managers_only_and_lifts_the_suspension(
    site: Site,
) -> None:
    assert 'id="clock-suspended"' not in site.login("remy").get("/status").text
    raise_alarm(site.archive, code=CLOCK_ALARM, severity="critical", message="jumped ahead")
    rita = site.login("rita")
    page = rita.get("/status")
    assert 'id="clock-suspended"' in page.text
    assert 'id="clock-confirm"' not in page.text
    refused = rita.post("/status/clock-confirm", data={"csrf": csrf_of(rita)})
    assert refused.status_code == 403
    assert is_suspended(site.archive)
    remy = site.login("remy")
    assert 'id="clock-confirm"' in remy.get("/status").text
    no_token = remy.post("/status/clock-confirm", data={})
    assert no_token.status_code in {400, 403}
    assert is_suspended(site.archive)
    token = csrf_of(remy)
    far = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    wrong = remy.post("/status/clock-confirm", data={"csrf": token, "stated": far})
    assert wrong.status_code == 400
    assert "set the clock right" in wrong.text
    assert is_suspended(site.archive)
    stated = datetime.now(UTC).isoformat()
    done = remy.post("/status/clock-confirm", data={"csrf": token, "stated": stated})
    assert done.status_code == 200, done.text
    assert "purging resumes" in done.text
    assert not is_suspended(site.archive)
    assert 'id="clock-suspended"' not in done.text
