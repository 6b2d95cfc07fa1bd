"""Retention classes and policies, and the decision made when a record is filed (pure code).

A class says how long a record must at least be kept (`minimum_days`), optionally how long it may
at most be kept (`maximum_days`, GDPR Art 5(1)(e)), how long it stays easily accessible, and when
its clock starts (`creation`, the end of the fiscal year, or an external `event`). Policies match
records by line, team, channel, direction or tag and name a class. When several match, the longest
minimum wins (C-50), and the trace of that decision is stored with the record. Extensions (a
record, or a saved search) only ever lengthen retention.

The shipped templates (`tapeline/data/retention_classes.toml`) seed the index on first start;
`archive.policies` holds the database side.
"""

from __future__ import annotations

import calendar
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any

START_CREATION = "creation"
START_FISCAL_YEAR_END = "fiscal-year-end"
START_EVENT = "event"
# A record whose clock starts at an external event (account closure) is kept until that event is
# recorded and its minimum has run from it; until then nothing can expire it.
UNTIL_EVENT = datetime(9999, 12, 31, tzinfo=UTC)
DAYS_PER_YEAR = 365.25
# The longest minimum among the shipped templates (finra-4511, six years); a test checks it.
LONGEST_MINIMUM_DAYS = 2192


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionClass:
    """How long records of a class are kept, and the rule it comes from."""

    name: str
    minimum_days: int
    rule: str
    maximum_days: int | None = None
    accessible_days: int | None = None
    start: str = START_CREATION

    def as_dict(self) -> dict[str, Any]:
        """The class as JSON."""
        return {
            "name": self.name,
            "minimum_days": self.minimum_days,
            "maximum_days": self.maximum_days,
            "accessible_days": self.accessible_days,
            "start": self.start,
            "rule": self.rule,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Records matching every given criterion get `retention_class`."""

    name: str
    retention_class: str
    line: str | None = None
    team: str | None = None
    channel: str | None = None
    direction: str | None = None
    tag: str | None = None

    def matches(self, facts: RecordFacts) -> bool:
        """Whether a record is covered by this policy (an unset criterion matches anything)."""
        return (
            (self.line is None or self.line in {facts.line, facts.owner})
            and (self.team is None or self.team == facts.team)
            and (self.channel is None or self.channel == facts.channel)
            and (self.direction is None or self.direction == facts.direction)
            and (self.tag is None or self.tag in facts.tags)
        )

    def criteria(self) -> dict[str, str]:
        """The criteria that are set."""
        values = {
            "line": self.line,
            "team": self.team,
            "channel": self.channel,
            "direction": self.direction,
            "tag": self.tag,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordFacts:
    """What retention looks at in a record being filed."""

    started_at: datetime
    channel: str
    direction: str
    line: str | None = None
    owner: str | None = None
    team: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionDecision:
    """The class a record got, until when it is kept, and why."""

    retention_class: str
    retain_until: datetime
    trace: list[str] = field(default_factory=list)


def load_templates() -> dict[str, RetentionClass]:
    """The class templates shipped with Tapeline."""
    text = resources.files("tapeline").joinpath("data/retention_classes.toml").read_text("utf-8")
    return {c.name: c for c in classes_from(tomllib.loads(text)["classes"])}


def classes_from(items: Iterable[dict[str, Any]]) -> list[RetentionClass]:
    """Classes from TOML tables or config entries."""
    return [
        RetentionClass(
            name=item["name"],
            minimum_days=int(item["minimum_days"]),
            maximum_days=item.get("maximum_days"),
            accessible_days=item.get("accessible_days"),
            start=item.get("start") or START_CREATION,
            rule=item.get("rule") or "",
        )
        for item in items
    ]


def _year_end_in(year: int, month: int, day: int) -> date:
    # A "02-29" year end falls on 28 February in common years (the last day of the month).
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def fiscal_year_end(moment: datetime, month_day: str) -> datetime:
    """The end (last instant, UTC) of the fiscal year containing `moment` (`MM-DD` year end)."""
    month, day = (int(part) for part in month_day.split("-"))
    end = _year_end_in(moment.year, month, day)
    if moment.date() > end:
        end = _year_end_in(moment.year + 1, month, day)
    return datetime.combine(end, time.max, tzinfo=UTC).replace(microsecond=999000)


def calendar_years(days: int) -> int | None:
    """The whole years a day count stands for (a year is 365.25 days, rounded), if it is one."""
    years = round(days / DAYS_PER_YEAR)
    if years >= 1 and round(years * DAYS_PER_YEAR) == days:
        return years
    return None


def add_years(moment: datetime, years: int) -> datetime:
    """The same instant `years` calendar years later (29 February becomes 28 February)."""
    year = moment.year + years
    return moment.replace(
        year=year, day=min(moment.day, calendar.monthrange(year, moment.month)[1])
    )


def clock_start(cls: RetentionClass, started_at: datetime, fiscal_end: str) -> datetime | None:
    """When the class's clock starts for a record (None: at an event not yet recorded)."""
    if cls.start == START_FISCAL_YEAR_END:
        return fiscal_year_end(started_at, fiscal_end)
    if cls.start == START_EVENT:
        return None
    return started_at


def minimum_until(cls: RetentionClass, started_at: datetime, fiscal_end: str) -> datetime:
    """The earliest `retain_until` the class allows for a record."""
    start = clock_start(cls, started_at, fiscal_end)
    if start is None:
        return UNTIL_EVENT
    until = start + timedelta(days=cls.minimum_days)
    # The rules count calendar years: five years that span two leap days are 1827 days, one
    # more than 5 x 365.25 rounded. A class of whole years is kept at least that many calendar
    # years, so no record goes a day before its legal minimum.
    years = calendar_years(cls.minimum_days)
    if years is not None:
        until = max(until, add_years(start, years))
    return until


def maximum_until(cls: RetentionClass, started_at: datetime, fiscal_end: str) -> datetime | None:
    """The latest `retain_until` the class allows (GDPR Art 5(1)(e)); None: no maximum.

    Counted like the minimum (same start, whole years as calendar years), so a class whose
    maximum equals its minimum never caps below it. Only holds keep a record longer.
    """
    if cls.maximum_days is None:
        return None
    return minimum_until(replace(cls, minimum_days=cls.maximum_days), started_at, fiscal_end)


def decide(  # noqa: PLR0913  # the inputs of the decision, spelled out
    facts: RecordFacts,
    *,
    classes: dict[str, RetentionClass],
    policies: Iterable[Policy],
    default_class: str,
    requested: str | None = None,
    fiscal_end: str = "12-31",
) -> RetentionDecision:
    """Give a new record its class and `retain_until`, with the trace of why.

    Raises:
        KeyError: a class named by the filer, a policy or the default is unknown.
    """
    trace: list[str] = []
    if requested:
        name = requested
        trace.append(f"requested by filer: {name}")
    else:
        matched = [p for p in policies if p.matches(facts)]
        for policy in matched:
            cls = classes[policy.retention_class]
            trace.append(
                f"policy {policy.name} {policy.criteria()} -> {cls.name} ({cls.minimum_days} days)"
            )
        if matched:
            best = max(
                matched, key=lambda p: (classes[p.retention_class].minimum_days, p.retention_class)
            )
            name = best.retention_class
            if len(matched) > 1:
                trace.append(f"longest minimum wins: {name}")
        else:
            name = default_class
            trace.append(f"no policy matched; retention.default_class = {name}")
    cls = classes[name]
    until = minimum_until(cls, facts.started_at, fiscal_end)
    start = {START_FISCAL_YEAR_END: "from fiscal year end", START_EVENT: "from an event"}
    trace.append(
        f"{cls.rule}: at least {cls.minimum_days} days {start.get(cls.start, 'from creation')}"
    )
    return RetentionDecision(retention_class=name, retain_until=until, trace=trace)
