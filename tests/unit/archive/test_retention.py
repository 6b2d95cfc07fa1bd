"""Retention: templates, policy resolution, start rules, config checks (pure code)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tapeline.archive.retention import (
    LONGEST_MINIMUM_DAYS,
    UNTIL_EVENT,
    Policy,
    RecordFacts,
    RetentionClass,
    decide,
    load_templates,
)
from tapeline.config import parse_config
from tapeline.errors import ConfigError
from tests.conftest import config_dict

T0 = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)
FACTS = RecordFacts(
    started_at=T0,
    channel="voice",
    direction="inbound",
    line="+442071230001",
    owner="Alice Trader",
    team="rates",
    tags=("fx",),
)
CLASSES = load_templates()


@pytest.mark.parametrize(
    ("name", "days", "accessible", "maximum"),
    [
        ("sec-17a-4", 1096, 730, None),
        ("finra-4511", 2192, None, None),
        ("finra-3170", 1096, 730, None),
        ("advisers-204-2", 1826, 730, None),
        ("cftc-1-31-oral", 365, None, None),
        ("cftc-1-31", 1826, None, None),
        ("mifid-ii", 1826, None, 2557),
        ("selftest", 7, None, 30),
    ],
)
def test_each_template_resolves_to_its_minimum(
    name: str, days: int, accessible: int | None, maximum: int | None
) -> None:
    cls = CLASSES[name]
    assert (cls.minimum_days, cls.accessible_days, cls.maximum_days) == (days, accessible, maximum)
    policy = Policy(name="p", retention_class=name, team="rates")
    decision = decide(FACTS, classes=CLASSES, policies=[policy], default_class="finra-4511")
    assert decision.retention_class == name
    if name == "advisers-204-2":  # five years from the end of the fiscal year
        year_end = datetime(2024, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
        assert decision.retain_until == year_end + timedelta(days=days)
    else:
        assert decision.retain_until == T0 + timedelta(days=days)
    assert any(cls.rule in line for line in decision.trace)


def test_longest_template_constant_matches_the_templates() -> None:
    assert max(c.minimum_days for c in CLASSES.values()) == LONGEST_MINIMUM_DAYS


def test_overlapping_policies_take_the_longest_minimum_and_keep_the_trace() -> None:
    policies = [
        Policy(name="oral", retention_class="cftc-1-31-oral", channel="voice"),
        Policy(name="desk", retention_class="mifid-ii", team="rates"),
        Policy(name="fx", retention_class="sec-17a-4", tag="fx"),
        Policy(name="other desk", retention_class="finra-4511", team="equities"),
    ]
    decision = decide(FACTS, classes=CLASSES, policies=policies, default_class="finra-4511")
    assert decision.retention_class == "mifid-ii"
    assert decision.retain_until == T0 + timedelta(days=1826)
    assert "longest minimum wins: mifid-ii" in decision.trace
    assert sum(line.startswith("policy ") for line in decision.trace) == 3


def test_no_match_gets_the_default_class_and_a_filer_request_wins() -> None:
    policies = [Policy(name="eq", retention_class="mifid-ii", team="equities")]
    plain = decide(FACTS, classes=CLASSES, policies=policies, default_class="finra-4511")
    assert plain.retention_class == "finra-4511"
    assert "no policy matched" in plain.trace[0]
    asked = decide(
        FACTS, classes=CLASSES, policies=policies, default_class="finra-4511", requested="selftest"
    )
    assert asked.retention_class == "selftest"


def test_fiscal_year_end_and_event_start_rules() -> None:
    classes = {
        "fy": RetentionClass(name="fy", minimum_days=10, rule="r", start="fiscal-year-end"),
        "ev": RetentionClass(name="ev", minimum_days=10, rule="r", start="event"),
    }
    fy = decide(FACTS, classes=classes, policies=[], default_class="fy", fiscal_end="03-31")
    assert fy.retain_until == datetime(2025, 3, 31, 23, 59, 59, 999000, tzinfo=UTC) + timedelta(
        days=10
    )
    ev = decide(FACTS, classes=classes, policies=[], default_class="ev")
    assert ev.retain_until == UNTIL_EVENT


def _with_retention(tmp_path: Path, retention: dict[str, Any]) -> dict[str, Any]:
    data = config_dict(tmp_path)
    data["retention"] = retention
    return data


def test_a_class_whose_maximum_is_below_its_minimum_is_refused_at_config_load(
    tmp_path: Path,
) -> None:
    bad = {"classes": [{"name": "short", "minimum_days": 100, "maximum_days": 50}]}
    with pytest.raises(ConfigError, match="maximum_days is below minimum_days") as caught:
        parse_config(_with_retention(tmp_path, bad), source="t.toml")
    assert caught.value.key == "retention.classes.0"
    good = {"classes": [{"name": "long", "minimum_days": 100, "maximum_days": 150}]}
    loaded = parse_config(_with_retention(tmp_path / "good", good), source="t")
    assert loaded.retention.classes[0].name == "long"


def test_a_policy_needs_a_criterion(tmp_path: Path) -> None:
    bad = {"policies": [{"name": "all", "retention_class": "mifid-ii"}]}
    with pytest.raises(ConfigError, match="at least one"):
        parse_config(_with_retention(tmp_path, bad), source="t.toml")


def _end(year: int, month: int, day: int) -> datetime:
    """The last instant (milliseconds) of a UTC day."""
    return datetime(year, month, day, 23, 59, 59, 999000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("started", "fiscal_end", "until"),
    [
        # Made in the fiscal year ending 30 June 2028: kept to the end of 30 June 2033.
        (datetime(2027, 8, 15, 10, 0, tzinfo=UTC), "06-30", _end(2033, 6, 30)),
        # Made on the last day of the fiscal year: that year's end still counts.
        (datetime(2027, 6, 30, 22, 0, tzinfo=UTC), "06-30", _end(2032, 6, 30)),
        # Calendar fiscal year 2027; the five years 2028-2032 hold two leap days (1827 days).
        (datetime(2027, 3, 1, 9, 0, tzinfo=UTC), "12-31", _end(2032, 12, 31)),
        # A year end on 29 February falls on the 28th in common years.
        (datetime(2027, 1, 10, 9, 0, tzinfo=UTC), "02-29", _end(2032, 2, 28)),
    ],
)
def test_advisers_act_runs_five_calendar_years_from_the_fiscal_year_end(
    started: datetime, fiscal_end: str, until: datetime
) -> None:
    facts = RecordFacts(started_at=started, channel="voice", direction="inbound")
    decision = decide(
        facts, classes=CLASSES, policies=[], default_class="advisers-204-2", fiscal_end=fiscal_end
    )
    assert decision.retain_until == until
    assert "from fiscal year end" in decision.trace[-1]


def test_whole_year_classes_never_fall_a_day_short_of_the_calendar() -> None:
    # 1 March 2027 + 5 years spans 29 Feb 2028 and 29 Feb 2032: 1827 days, not 1826.
    facts = RecordFacts(started_at=datetime(2027, 3, 1, 9, tzinfo=UTC), channel="voice",
                        direction="inbound")  # fmt: skip
    for name in ("cftc-1-31", "mifid-ii"):
        decision = decide(facts, classes=CLASSES, policies=[], default_class=name)
        assert decision.retain_until == datetime(2032, 3, 1, 9, tzinfo=UTC), name
    # A class that is not a whole number of years keeps its exact day count.
    week = decide(facts, classes=CLASSES, policies=[], default_class="selftest")
    assert week.retain_until == facts.started_at + timedelta(days=7)


@pytest.mark.parametrize("value", ["02-30", "04-31", "13-01", "12-32"])
def test_an_impossible_fiscal_year_end_is_refused_at_config_load(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_with_retention(tmp_path, {"fiscal_year_end": value}), source="t.toml")
    assert caught.value.key == "retention.fiscal_year_end"
