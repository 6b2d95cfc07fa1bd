"""Search latency on a large index: party + dates, message full text, a person's timeline.

Run from the repository root: `.venv/bin/python bench/search.py [N] [--seed-minutes M]`.

Seeding does NOT go through filing: rows are inserted directly in bulk (SQLAlchemy Core
executemany, 10,000 rows per statement batch) into the migrated schema with its indexes -
interactions, one participant each, a counterparty with its identifier per party, and a message
row for every WhatsApp interaction. No objects, audit entries or recordings exist, so this
measures the index queries only, which is what a search costs once the archive is large. N is
what was seeded before the seeding budget ran out (default 1,000,000 and 6 minutes per backend);
the printed N is the real one.

Each query runs through the application's own query builder and row shaping
(`records.search`, as the search page, `/api/v1/interactions` and the timeline do, minus the
audit entry), 30 times with different people and windows, after one untimed warm-up:

* party + date range: a counterparty's number and a 90-day window, first page (51 rows);
* full text over messages: a word in WhatsApp message text (`ILIKE '%word%'`), first page;
* a person's timeline: every interaction with one counterparty (limit 500, as the page).

The reference, measured in the same run on the same database, is a plain
`SELECT count(*) FROM interactions`; ratios are query p50 / reference p50. SQLite always;
PostgreSQL too when `initdb` and `pg_ctl` are found (a throwaway cluster on loopback, as the
tests start one, with fsync off).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from tapeline.archive.db import Index
from tapeline.archive.ids import new_id
from tapeline.archive.models import (
    Counterparty,
    CounterpartyIdentifier,
    Interaction,
    Message,
    Participant,
)
from tapeline.archive.parties import identifier_for
from tapeline.archive.records import Filters, search

PARTIES = 2_000
LINES = 200
TEAMS = ("rates", "equities", "fx", "credit", "sales", "ops", "repo", "munis", "etf", "desk10")
WORDS = (
    "price", "bond", "swap", "yield", "spread", "term", "sheet", "deal", "call", "confirm",
    "trade", "fill", "order", "cancel", "amend", "settle", "margin", "quote", "bid", "offer",
)  # fmt: skip
RARE = "zebracorn"  # in about one message in 1,000: the full-text search looks for it
BATCH = 10_000
RUNS = 30
REGION = "GB"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_S = 2 * 365 * 86_400


def party_number(n: int) -> str:
    """The phone number of party n."""
    return f"+4477009{n:05d}"


def line_number(n: int) -> str:
    """The number of recorded line n."""
    return f"+4420712{n:05d}"


@dataclass(frozen=True, slots=True)
class Timing:
    """p50 and p95 of one query, in milliseconds."""

    p50: float
    p95: float


def _measure(run: Callable[[int], object]) -> Timing:
    run(-1)  # warm-up: plans, caches
    samples = []
    for i in range(RUNS):
        started = time.perf_counter()
        run(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return Timing(statistics.median(samples), p95)


def _people(index: Index) -> dict[int, int]:
    """Counterparty rows for every party (party number -> counterparty id)."""
    with index.write() as session:
        session.execute(
            insert(Counterparty),
            [{"display_name": f"Client {n:04d}", "created_at": T0} for n in range(PARTIES)],
        )
        ids = list(session.execute(select(Counterparty.id).order_by(Counterparty.id)).scalars())
        session.execute(
            insert(CounterpartyIdentifier),
            [
                {"identifier": identifier_for(party_number(n), REGION), "counterparty_id": cid}
                for n, cid in enumerate(ids)
            ],
        )
    return dict(enumerate(ids))


def _rows(i: int, rng: random.Random, people: dict[int, int]) -> tuple[dict[str, Any], ...]:
    party = rng.randrange(PARTIES)
    line = rng.randrange(LINES)
    whatsapp = rng.random() < 0.5  # half calls, half messages
    started = T0 + timedelta(seconds=rng.randrange(SPAN_S))
    rid = new_id()
    ident = identifier_for(party_number(party), REGION)
    interaction: dict[str, Any] = {
        "id": rid,
        "channel": "whatsapp" if whatsapp else "voice",
        "kind": "message" if whatsapp else "call",
        "direction": rng.choice(("inbound", "outbound")),
        "started_at": started,
        "ended_at": None if whatsapp else started + timedelta(seconds=rng.randrange(10, 900)),
        "duration_ms": None if whatsapp else rng.randrange(10_000, 900_000),
        "line_number": line_number(line),
        "line_owner": f"Trader {line:03d}",
        "line_team": TEAMS[line % len(TEAMS)],
        "counterparty_id": people[party],
        "counterparty_identifier": ident,
        "outcome": None,
        "incomplete": False,
        "gaps": [],
        "tags": [],
        "review_flag": None,
        "retention_class": "default",
        "retain_until": started + timedelta(days=2557),
        "source_path": "bench",
        "source_node": "bench",
        "sip_call_id": None,
        "manifest_object_id": None,
        "filed_at": started,
        "details": {},
        "purged_at": None,
    }
    participant = {
        "interaction_id": rid,
        "role": "counterparty",
        "identifier": ident,
        "display_name": None,
    }
    if not whatsapp:
        return interaction, participant
    words = [rng.choice(WORDS) for _ in range(rng.randrange(3, 15))]
    if i % 1000 == 0:
        words.insert(rng.randrange(len(words)), RARE)
    message: dict[str, Any] = {
        "interaction_id": rid,
        "wamid": f"wamid.bench{i}",
        "type": "text",
        "text": " ".join(words),
        "status": "delivered",
        "status_at": None,
        "errors": [],
    }
    return interaction, participant, message


def seed(index: Index, target: int, budget_s: float) -> tuple[int, float]:
    """Insert up to `target` interactions in batches until the budget runs out; (N, seconds)."""
    rng = random.Random(7)  # noqa: S311  # reproducible data, not secrets
    people = _people(index)
    started = time.perf_counter()
    done = 0
    while done < target and time.perf_counter() - started < budget_s:
        interactions: list[dict[str, Any]] = []
        participants: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for i in range(done, min(target, done + BATCH)):
            made = _rows(i, rng, people)
            interactions.append(made[0])
            participants.append(made[1])
            messages.extend(made[2:])
        with index.write() as session:
            session.execute(insert(Interaction), interactions)
            session.execute(insert(Participant), participants)
            if messages:
                session.execute(insert(Message), messages)
        done += len(interactions)
    with index.engine.begin() as conn:  # fresh statistics, as a running system would have
        conn.execute(text("ANALYZE"))
    return done, time.perf_counter() - started


def measure(index: Index, people: int) -> dict[str, Timing]:
    """The three queries and the reference on a seeded index."""
    rng = random.Random(11)  # noqa: S311  # reproducible choices, not secrets

    def reference(_: int) -> object:
        with index.read() as session:
            return session.execute(select(func.count()).select_from(Interaction)).scalar_one()

    def party_dates(_: int) -> object:
        since = T0 + timedelta(days=rng.randrange(600))
        filters = Filters(
            party=party_number(rng.randrange(PARTIES)),
            since=since,
            until=since + timedelta(days=90),
            limit=51,
            region=REGION,
        )
        with index.read() as session:
            return search(session, filters)

    def full_text(_: int) -> object:
        word = RARE if rng.random() < 0.5 else rng.choice(WORDS)  # rare or common
        with index.read() as session:
            return search(session, Filters(text=word, limit=51, region=REGION))

    def timeline(_: int) -> object:
        person = rng.randrange(1, people + 1)
        with index.read() as session:
            return search(session, Filters(counterparty_id=person, limit=500, region=REGION))

    return {
        "reference: SELECT count(*) FROM interactions": _measure(reference),
        "party + 90-day range, first page": _measure(party_dates),
        "full text over messages, first page": _measure(full_text),
        "person's timeline (up to 500)": _measure(timeline),
    }


@contextmanager
def postgres() -> Iterator[str | None]:
    """A throwaway PostgreSQL database URL, or None when the server binaries are missing."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    initdb = str(found[-1]) if found else shutil.which("initdb")
    if initdb is None:
        yield None
        return
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    folder = Path(tempfile.mkdtemp(prefix="tapeline-bench-pg-"))
    data = folder / "data"
    # initdb refuses root; as the tests do, run the server as `postgres` then.
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    subprocess.run(
        [*as_postgres, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    port = 55_000 + random.randrange(5_000)  # noqa: S311  # a port, not a secret
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *as_postgres,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(folder / "log"),
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def run(name: str, url: str, target: int, budget_s: float) -> None:
    """Seed one backend and print its table."""
    index = Index.open(url)
    try:
        seeded, seconds = seed(index, target, budget_s)
        print(
            f"\n{name}: seeded N={seeded:,} interactions in {seconds:.0f} s "
            f"({seeded / seconds:,.0f} rows/s; {PARTIES} parties, {LINES} lines)"
        )
        timings = measure(index, PARTIES)
    finally:
        index.dispose()
    reference = next(iter(timings.values())).p50
    print("| query | p50 ms | p95 ms | p50 / reference |")
    print("| --- | ---: | ---: | ---: |")
    for label, timing in timings.items():
        print(f"| {label} | {timing.p50:.1f} | {timing.p95:.1f} | {timing.p50 / reference:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed-minutes", type=float, default=6.0)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    budget = args.seed_minutes * 60
    with tempfile.TemporaryDirectory(prefix="tapeline-bench-") as tmp:
        run("SQLite", f"sqlite:///{tmp}/index.db", args.n, budget)
    if args.no_postgres:
        return
    with postgres() as url:
        if url is None:
            print("\nPostgreSQL: initdb/pg_ctl not found, not measured")
            return
        run("PostgreSQL", url, args.n, budget)


if __name__ == "__main__":
    main()
