"""WORM through the real filing path, against Ceph RGW enforcing Object Lock COMPLIANCE.

What an examiner would check: a SIPREC call lands as locked versions until the record's own
`retain_until`; the store itself refuses to delete them; holds show as the store's legal hold on
every version of every object; extensions only lengthen the lock; purge after expiry deletes the
versions and the certificate names them.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from tapeline.archive.audit import Actor
from tapeline.archive.checkpoints import write_checkpoint
from tapeline.archive.core import Archive
from tapeline.archive.disposal import execute_due
from tapeline.archive.export import export_records
from tapeline.archive.holds import approve_release, place_hold, request_release
from tapeline.archive.models import AuditEntry, DestructionCertificate, Interaction, StoredObject
from tapeline.archive.policies import extend
from tapeline.archive.purge import approve_batch, propose_batch
from tapeline.archive.records import Filters
from tapeline.archive.s3store import S3ObjectStore
from tapeline.archive.searches import scope_from
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.archive.users import add_user
from tapeline.archive.verify import verify_archive
from tapeline.config import load_config, parse_config
from tapeline.errors import NotFound, StorageError
from tapeline.tlscert import generate_self_signed
from tapeline.web.health import readiness
from tests.conftest import CephRgw, config_dict, free_port, tapeline, wait_for
from tests.integration.test_siprec_sipp import SCENARIO, _start_recorder, _wait_filed, _write_pcap
from tests.tomlwriter import dumps

pytestmark = [pytest.mark.s3, pytest.mark.slow]

LINE = "+442071230001"
PARTY = "+447700900123"
RMO = Actor(name="rmo", roles=("records-manager",))
REX = Actor(name="rex", roles=("records-manager",))
LENA = Actor(name="lena", roles=("legal",))
LEO = Actor(name="leo", roles=("legal",))
EVE = Actor(name="eve", roles=("export-officer",))
FINRA_DAYS = 2192  # finra-4511, the default class, counted from the call's start


def _whole(when: datetime) -> datetime:
    return datetime.fromtimestamp(math.ceil(when.timestamp()), UTC)


def _objects(archive: Archive, interaction_id: str) -> list[str]:
    with archive.index.read() as session:
        return list(
            session.execute(
                select(StoredObject.id).where(StoredObject.interaction_id == interaction_id)
            ).scalars()
        )


def _retain_until(archive: Archive, interaction_id: str) -> datetime:
    with archive.index.read() as session:
        return session.get_one(Interaction, interaction_id).retain_until


def _store(archive: Archive) -> S3ObjectStore:
    store = archive.vault.store
    assert isinstance(store, S3ObjectStore)
    return store


def _holds(store: S3ObjectStore, object_ids: list[str]) -> set[str]:
    return {
        store.legal_hold(oid, version) for oid in object_ids for version in store.version_ids(oid)
    }


@pytest.fixture
def s3_archive(ceph_rgw: CephRgw, tmp_path: Path) -> Iterator[Archive]:
    data = config_dict(tmp_path)
    data["storage"].update(ceph_rgw.storage_keys(tmp_path, ceph_rgw.new_bucket()))
    opened = Archive.open(parse_config(data, source="test"))
    try:
        yield opened
    finally:
        opened.close()


def _siprec_call(sip_port: int, call_id: str, cwd: Path) -> None:
    pcap = cwd / "two-streams.pcap"
    tone = bytes(range(256)) * 32  # 1.024 s of µ-law per stream: content is not checked here
    _write_pcap(pcap, [tone, tone[::-1]])
    result = subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{sip_port}",
            "-sf",
            str(SCENARIO),
            "-d",
            "1500",
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port(socket.SOCK_DGRAM)),
            "-mp",
            str(free_port()),
            "-cid_str",
            call_id,
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _siprec_s3_config(base: Path, rgw: CephRgw, bucket: str, sip_port: int) -> Path:
    """An appliance config: SIPREC on loopback, objects in an Object Lock bucket on RGW."""
    data = config_dict(base)
    data["storage"].update(rgw.storage_keys(base, bucket))
    data["siprec"] = {"listen": [f"udp:127.0.0.1:{sip_port}"], "rtp_ports": "32000-32999"}
    data["trunks"] = [{"name": "loopback", "match": ["127.0.0.0/8"]}]
    generate_self_signed(Path(data["web"]["tls_cert_file"]), Path(data["web"]["tls_key_file"]))
    path = base / "tapeline.toml"
    path.write_text(dumps(data))
    return path


def test_a_siprec_call_lands_locked_until_its_retain_until_and_cannot_be_deleted(
    ceph_rgw: CephRgw, tmp_path: Path
) -> None:
    sip_port = free_port(socket.SOCK_DGRAM)
    bucket = ceph_rgw.new_bucket()
    config_path = _siprec_s3_config(tmp_path, ceph_rgw, bucket, sip_port)
    info = json.loads(tapeline("info", "-c", str(config_path), "--json").stdout)
    assert info["storage_mode"] == f"worm-external:{bucket}"
    proc = _start_recorder(config_path)
    try:
        status = load_config(config_path, environ={}).node.status_listen
        with urllib.request.urlopen(f"http://{status}/readyz", timeout=10) as answer:
            ready = json.loads(answer.read())
        assert ready["storage_mode"] == f"worm-external:{bucket}"
        call_id = f"tapeline-worm-{os.getpid()}@127.0.0.1"
        _siprec_call(sip_port, call_id, tmp_path)
        record = _wait_filed(config_path, call_id)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert record["kind"] == "call"
    archive = Archive.open(load_config(config_path, environ={}), migrate=False)
    try:
        rid = str(record["id"])
        until = _retain_until(archive, rid)
        assert until > datetime.now(UTC) + timedelta(days=365)  # finra-4511 from the call
        objects = _objects(archive, rid)
        kinds = {o.kind for o in _rows(archive, rid)}
        assert {"recording", "manifest"} <= kinds
        store = _store(archive)
        client: Any = ceph_rgw.client()
        for oid in objects:
            [version] = store.version_ids(oid)
            answer = client.get_object_retention(Bucket=bucket, Key=oid, VersionId=version)
            assert answer["Retention"]["Mode"] == "COMPLIANCE"
            assert answer["Retention"]["RetainUntilDate"] == _whole(until)
            with pytest.raises(ClientError, match="AccessDenied"):
                client.delete_object(Bucket=bucket, Key=oid, VersionId=version)
            with pytest.raises(StorageError, match="deletion refused"):
                store.delete(oid, version_id=version)
            assert store.version_ids(oid) == [version]
        _assert_reported_as_worm(archive, bucket, rid, tmp_path / "export.zip")
        assert verify_archive(archive).ok, verify_archive(archive).problems
    finally:
        archive.close()


def _assert_reported_as_worm(archive: Archive, bucket: str, rid: str, bundle: Path) -> None:
    """The web readiness body and an export's signed manifest name the WORM bucket."""
    assert archive.storage_mode == f"worm-external:{bucket}"
    code, web_ready = readiness(archive, details=True)
    assert (code, web_ready["storage_mode"]) == (200, f"worm-external:{bucket}")
    with bundle.open("wb") as handle:
        export_records(archive, EVE, Filters(), handle, purpose="examiner request")
    with zipfile.ZipFile(bundle) as opened:
        manifest = json.loads(opened.read("manifest.json"))
    assert manifest["storage_mode"] == f"worm-external:{bucket}"
    assert manifest["records"] == [rid]


def _rows(archive: Archive, interaction_id: str) -> list[StoredObject]:
    with archive.index.read() as session:
        rows = list(
            session.execute(
                select(StoredObject).where(StoredObject.interaction_id == interaction_id)
            ).scalars()
        )
        session.expunge_all()
        return rows


def test_holds_set_legal_hold_on_every_version_and_release_clears_it(
    s3_archive: Archive,
) -> None:
    now = datetime.now(UTC)
    first = file_synthetic_call(
        s3_archive, line=LINE, counterparty=PARTY, started_at=now - timedelta(days=2)
    )
    store = _store(s3_archive)
    assert _holds(store, _objects(s3_archive, first)) == {"OFF"}
    place_hold(s3_archive, LENA, matter="BGC", scope=scope_from(party=PARTY))
    assert _holds(store, _objects(s3_archive, first)) == {"ON"}
    # filed while the hold stands: locked and held before the record is indexed
    later = file_synthetic_call(
        s3_archive, line=LINE, counterparty=PARTY, started_at=now - timedelta(days=1)
    )
    later_objects = _objects(s3_archive, later)
    assert len(later_objects) >= 2
    assert _holds(store, later_objects) == {"ON"}
    other = file_synthetic_call(
        s3_archive, line=LINE, counterparty="+447700900999", started_at=now - timedelta(days=1)
    )
    assert _holds(store, _objects(s3_archive, other)) == {"OFF"}
    place_hold(s3_archive, LENA, matter="FCA", scope=scope_from(line=LINE))
    request_release(s3_archive, LENA, matter="BGC", reason="settled")
    approve_release(s3_archive, LEO, matter="BGC")
    # still under the FCA hold: the store's hold stays ON until the last release
    assert _holds(store, _objects(s3_archive, first) + later_objects) == {"ON"}
    request_release(s3_archive, LENA, matter="FCA", reason="closed")
    approve_release(s3_archive, LEO, matter="FCA")
    assert _holds(store, _objects(s3_archive, first) + later_objects) == {"OFF"}


def test_an_extension_lengthens_the_lock_and_a_shorter_date_never_reaches_the_store(
    s3_archive: Archive,
) -> None:
    rid = file_synthetic_call(
        s3_archive, line=LINE, counterparty=PARTY, started_at=datetime.now(UTC)
    )
    store = _store(s3_archive)
    filed = _retain_until(s3_archive, rid)
    objects = _objects(s3_archive, rid)
    later = filed + timedelta(days=400)
    extend(s3_archive, RMO, reason="SEC inquiry", interaction_id=rid, until=later)
    assert _retain_until(s3_archive, rid) == later
    for oid in objects:
        [version] = store.version_ids(oid)
        assert store.retention(oid, version) == ("COMPLIANCE", _whole(later))
    with pytest.raises(StorageError, match="refusing to shorten retention"):
        store.extend_retention(objects[0], filed)
    [version] = store.version_ids(objects[0])
    assert store.retention(objects[0], version) == ("COMPLIANCE", _whole(later))


def test_purge_after_expiry_deletes_the_versions_and_the_certificate_names_them(
    s3_archive: Archive,
) -> None:
    for name in ("rmo", "rex"):
        add_user(
            s3_archive,
            name=name,
            roles=["records-manager"],
            teams=[],
            password="a long enough password 1",
            by=Actor.system("test"),
        )
    # finra-4511 counts six years from the start: this call's retention ends in a few seconds
    started = datetime.now(UTC) - timedelta(days=FINRA_DAYS) + timedelta(seconds=4)
    rid = file_synthetic_call(s3_archive, line=LINE, counterparty=PARTY, started_at=started)
    store = _store(s3_archive)
    until = _retain_until(s3_archive, rid)
    versions = {oid: store.version_ids(oid) for oid in _objects(s3_archive, rid)}
    assert all(len(v) == 1 for v in versions.values())
    for oid, [version] in versions.items():
        assert store.retention(oid, version) == ("COMPLIANCE", _whole(until))
        with pytest.raises(StorageError, match="deletion refused"):
            store.delete(oid, version_id=version)
    wait_for(lambda: datetime.now(UTC) > _whole(until), timeout=30, what="retention expiry")
    now = datetime.now(UTC)
    batch = propose_batch(s3_archive, RMO, now=now)
    assert [i["id"] for i in batch["items"]] == [rid]
    approve_batch(s3_archive, REX, batch["id"], now=now)
    [cert_id] = execute_due(s3_archive, now=now + timedelta(days=15))
    with s3_archive.index.read() as session:
        cert = session.get_one(DestructionCertificate, cert_id)
        [entry] = cert.body["records"]
        listed = {o["object_id"]: o["versions"] for o in entry["objects"]}
        assert cert.body["locations"] == [s3_archive.storage_mode]
        wrapped = [o.wrapped_key for o in _rows(s3_archive, rid)]
    assert listed == versions
    assert wrapped == [None] * len(versions)  # the data keys are destroyed
    for oid in versions:
        assert store.version_ids(oid) == []
        with pytest.raises(NotFound):
            store.get(oid)
    # the certificate itself is a record: locked for six years
    [cert_version] = store.version_ids(cert_id)
    mode, cert_until = store.retention(cert_id, cert_version)
    assert mode == "COMPLIANCE"
    assert cert_until > datetime.now(UTC) + timedelta(days=6 * 365)


def test_audit_checkpoints_are_sealed_as_locked_audit_segments(s3_archive: Archive) -> None:
    file_synthetic_call(s3_archive, line=LINE, counterparty=PARTY, started_at=datetime.now(UTC))
    checkpoint = write_checkpoint(s3_archive, now=datetime.now(UTC))
    assert checkpoint is not None
    with s3_archive.index.read() as session:
        [segment] = session.execute(
            select(StoredObject).where(StoredObject.kind == "audit-segment")
        ).scalars()
        hashes = [
            e.hash
            for e in session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq.between(checkpoint["seq_from"], checkpoint["seq_to"]))
                .order_by(AuditEntry.seq)
            ).scalars()
        ]
    body = json.loads(s3_archive.vault.load(segment.id, segment.wrapped_key or b"", segment.sha256))
    assert body["checkpoint"] == checkpoint
    assert [e["hash"] for e in body["entries"]] == hashes
    store = _store(s3_archive)
    [version] = store.version_ids(segment.id)
    mode, until = store.retention(segment.id, version)
    assert mode == "COMPLIANCE"
    assert until > datetime.now(UTC) + timedelta(days=FINRA_DAYS - 1)
    with pytest.raises(StorageError, match="deletion refused"):
        store.delete(segment.id, version_id=version)
    assert verify_archive(s3_archive).ok, verify_archive(s3_archive).problems
