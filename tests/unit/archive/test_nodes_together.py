"""Several nodes on one PostgreSQL index at once: first leases and first-start seeding race."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tapeline.archive.core import Archive
from tapeline.archive.models import JobLease, RetentionClassRow
from tapeline.archive.nodes import take_lease
from tapeline.archive.policies import seed
from tapeline.archive.retention import load_templates
from tapeline.config import parse_config
from tests.conftest import PostgresServer, config_dict

pytestmark = pytest.mark.postgres
NODES = 4


@pytest.fixture
def nodes(postgres: PostgresServer, tmp_path: Path) -> Iterator[list[Archive]]:
    """Four archives with their own node id and engine, sharing one fresh PostgreSQL index."""
    url = postgres.new_database()
    opened = []
    try:
        for number in range(NODES):
            data = config_dict(tmp_path / f"n{number}", url)
            data["node"]["id"] = f"node-{number}"
            opened.append(Archive.open(parse_config(data, source="test")))
        yield opened
    finally:
        for archive in opened:
            archive.close()


def _together(work: list[Callable[[], object]]) -> list[object]:
    """Run each callable in its own thread, released at the same moment."""
    start = threading.Barrier(len(work))
    results: list[object] = [RuntimeError("not run")] * len(work)

    def run(slot: int) -> None:
        start.wait()
        try:
            results[slot] = work[slot]()
        except Exception as exc:  # noqa: BLE001  # reported to the test, not swallowed
            results[slot] = exc

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_a_first_lease_taken_by_several_nodes_at_once_goes_to_exactly_one(
    nodes: list[Archive],
) -> None:
    for job in (f"job-{n}" for n in range(10)):
        results = _together([partial(take_lease, a, job, seconds=60) for a in nodes])
        assert all(isinstance(r, bool) for r in results), results
        assert results.count(True) == 1, (job, results)
        with nodes[0].index.read() as session:
            holder = session.get_one(JobLease, job).holder
        assert holder == nodes[results.index(True)].node_id


def test_nodes_starting_together_seed_the_retention_classes_once(nodes: list[Archive]) -> None:
    results = _together([partial(seed, a) for a in nodes])
    assert sorted(map(str, results)) == ["False"] * (NODES - 1) + ["True"], results
    with nodes[0].index.read() as session:
        count = session.execute(select(func.count()).select_from(RetentionClassRow)).scalar_one()
    assert count == len(load_templates())
