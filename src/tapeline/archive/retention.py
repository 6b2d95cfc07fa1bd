"""Retention classes and the decision made when a record is filed.

The retention issue adds policies, proposals and approvals; until then every record gets the
configured default class (or the class its filer asks for, such as `selftest`), and the decision
trace is kept with the record so an examiner can see why it is kept until when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionClass:
    """A class: how long records must at least be kept, and the rule it comes from."""

    name: str
    minimum_days: int
    rule: str


BUILTIN_CLASSES: dict[str, RetentionClass] = {
    c.name: c
    for c in (
        RetentionClass(
            name="sec-17a-4", minimum_days=round(3 * DAYS_PER_YEAR), rule="SEC 17a-4(b)(4)"
        ),
        RetentionClass(name="finra-4511", minimum_days=round(6 * DAYS_PER_YEAR), rule="FINRA 4511"),
        RetentionClass(
            name="advisers-204-2", minimum_days=round(5 * DAYS_PER_YEAR), rule="Advisers Act 204-2"
        ),
        RetentionClass(
            name="cftc-1-31-oral", minimum_days=round(1 * DAYS_PER_YEAR), rule="CFTC 1.31 oral"
        ),
        RetentionClass(name="cftc-1-31", minimum_days=round(5 * DAYS_PER_YEAR), rule="CFTC 1.31"),
        RetentionClass(
            name="mifid-ii", minimum_days=round(5 * DAYS_PER_YEAR), rule="MiFID II Art. 16(7)"
        ),
        RetentionClass(name="selftest", minimum_days=7, rule="appliance self-test calls"),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionDecision:
    """The class a record got, until when it is kept, and why."""

    retention_class: str
    retain_until: datetime
    trace: list[str]


def decide(started_at: datetime, *, default_class: str, requested: str | None) -> RetentionDecision:
    """Give a new record its class and `retain_until`.

    Raises:
        KeyError: the class is unknown.
    """
    name = requested or default_class
    cls = BUILTIN_CLASSES[name]
    why = f"requested by filer: {name}" if requested else f"retention.default_class = {name}"
    return RetentionDecision(
        retention_class=name,
        retain_until=started_at + timedelta(days=cls.minimum_days),
        trace=[why, f"{cls.rule}: at least {cls.minimum_days} days"],
    )
