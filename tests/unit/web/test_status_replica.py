"""The status page shows the second copy's state per record, from the completeness reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeline.archive.audit import Actor
from tapeline.archive.cdr import reconcile
from tapeline.archive.models import Interaction
from tapeline.archive.replica import ReplicatedStore
from tapeline.config import Config, parse_config
from tests.conftest import config_dict
from tests.unit.web.conftest import Site


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The site's appliance, with a replica folder (overrides the suite's `config`)."""
    data = config_dict(tmp_path)
    data["storage"]["replica_path"] = str(tmp_path / "replica")
    return parse_config(data, source="test")


def test_status_page_names_records_whose_second_copy_is_missing(site: Site) -> None:
    store = site.archive.vault.store
    assert isinstance(store, ReplicatedStore)
    with site.archive.index.read() as session:
        call = session.get_one(Interaction, site.call_id)
        day, manifest = call.started_at.date(), call.manifest_object_id
    page = site.login("audrey").get("/status").text
    assert "Replica: <strong>audit-trail</strong>" in page
    assert "No completeness report has run yet." in page

    assert manifest is not None
    store.replica.delete(manifest)
    report = reconcile(site.archive, Actor(name="rmo", roles=("records-manager",)), day)
    assert {"interaction_id": site.call_id, "replica": "missing"} in report["replica"]
    page = site.login("audrey").get("/status").text
    assert f'href="/records/{site.call_id}"' in page
    assert site.other_call_id not in page  # present in the replica: not named
