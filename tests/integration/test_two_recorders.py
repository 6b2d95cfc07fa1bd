"""Several recorders, one archive: two recorders and a web process on one index and one bucket.

Two recorder nodes and a web process share one PostgreSQL index and one Object Lock bucket on RGW,
and SIPp places calls to both recorders at the same time.

Every call must be filed exactly once, by the node that recorded it, as locked versions in the one
bucket, and be found by a single search through the web API. The recorders start together on a
fresh index, so migrations and first-start seeding run concurrently too.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import JobLease, NodeHeartbeat, StoredObject
from tapeline.archive.s3store import S3ObjectStore
from tapeline.archive.users import add_user
from tapeline.config import load_config
from tapeline.tlscert import generate_self_signed
from tapeline.web import tokens
from tests.conftest import CephRgw, PostgresServer, config_dict, free_port
from tests.integration.test_siprec_sipp import SCENARIO, _write_pcap
from tests.tomlwriter import dumps

pytestmark = [pytest.mark.s3, pytest.mark.postgres, pytest.mark.slow]
CALLS_PER_NODE = 3
NODES = ("rec-a", "rec-b")


def _node_config(
    base: Path,
    *,
    node_id: str,
    url: str,
    storage: dict[str, Any],
    keys_from: dict[str, Any] | None,
    rtp_ports: str,
) -> tuple[Path, dict[str, Any]]:
    """A node's config: its own spool and ports; the shared index, bucket and keys."""
    data = config_dict(base, url)
    data["node"]["id"] = node_id
    data["storage"].update(storage)
    if keys_from is not None:  # the nodes share the archive and signing keys (key import)
        data["storage"]["key_file"] = keys_from["storage"]["key_file"]
        data["node"]["signing_key_file"] = keys_from["node"]["signing_key_file"]
    sip_port = free_port(socket.SOCK_DGRAM)
    data["siprec"] = {"listen": [f"udp:127.0.0.1:{sip_port}"], "rtp_ports": rtp_ports}
    data["trunks"] = [{"name": "loopback", "match": ["127.0.0.0/8"]}]
    generate_self_signed(Path(data["web"]["tls_cert_file"]), Path(data["web"]["tls_key_file"]))
    path = base / "tapeline.toml"
    path.write_text(dumps(data))
    return path, data


def _start(command: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tapeline.cli", command, "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_port(address: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, f"{proc.args!r} did not start"
            time.sleep(0.1)
        else:
            return


def _sipp(port: int, prefix: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "sipp",
            f"127.0.0.1:{port}",
            "-sf",
            str(SCENARIO),
            "-d",
            "1500",
            "-m",
            str(CALLS_PER_NODE),
            "-l",
            str(CALLS_PER_NODE),
            "-r",
            "10",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port(socket.SOCK_DGRAM)),
            "-mp",
            str(free_port()),
            "-cid_str",
            f"{prefix}-%u@127.0.0.1",
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )


def _api(base: str, path: str, token: str, cafile: Path) -> Any:
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False  # the self-signed test certificate names no host
    request = urllib.request.Request(  # noqa: S310  # our own https URL
        base + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30, context=context) as answer:  # noqa: S310
        return json.loads(answer.read())


def test_two_recorders_and_a_web_share_one_index_and_bucket(
    postgres: PostgresServer, ceph_rgw: CephRgw, tmp_path: Path
) -> None:
    url = postgres.new_database()
    bucket = ceph_rgw.new_bucket()
    storage = ceph_rgw.storage_keys(tmp_path, bucket)
    first_path, first = _node_config(
        tmp_path / "a", node_id="rec-a", url=url, storage=storage, keys_from=None,
        rtp_ports="33000-33499",
    )  # fmt: skip
    second_path, _ = _node_config(
        tmp_path / "b", node_id="rec-b", url=url, storage=storage, keys_from=first,
        rtp_ports="33500-33999",
    )  # fmt: skip
    configs = [load_config(p, environ={}) for p in (first_path, second_path)]
    logs = [tmp_path / f"{n}.log" for n in NODES]
    procs = [
        _start("recorder", p, log) for p, log in zip((first_path, second_path), logs, strict=True)
    ]
    try:
        for cfg, proc, log in zip(configs, procs, logs, strict=True):
            _wait_port(cfg.node.status_listen, proc, log)
        web_log = tmp_path / "web.log"
        procs.append(_start("web", first_path, web_log))
        _wait_port(first["web"]["listen"], procs[-1], web_log)
        archive = Archive.open(configs[0], migrate=False)
        try:
            _check_calls(archive, configs, tmp_path, first)
        finally:
            archive.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _check_calls(archive: Archive, configs: list[Any], cwd: Path, first: dict[str, Any]) -> None:
    add_user(
        archive,
        name="cora",
        roles=["auditor"],
        teams=[],
        password="a long enough password 1",
        by=Actor.system("test"),
    )
    token = tokens.create(archive, Actor(name="cora", roles=("auditor",)), label="test")
    tone = bytes(range(256)) * 32  # 1.024 s of µ-law per stream: content is not checked here
    _write_pcap(cwd / "two-streams.pcap", [tone, tone[::-1]])
    sipps = [
        _sipp(int(cfg.siprec.listen[0].rsplit(":", 1)[1]), node, cwd)
        for cfg, node in zip(configs, NODES, strict=True)
    ]
    try:
        outputs = [sipp.communicate(timeout=120)[0] for sipp in sipps]
    finally:
        for sipp in sipps:
            if sipp.poll() is None:
                sipp.kill()
                sipp.communicate()
    for sipp, out in zip(sipps, outputs, strict=True):
        assert sipp.returncode == 0, out[-3000:]
    expected = {
        f"{node}-{n}@127.0.0.1": node for node in NODES for n in range(1, 1 + CALLS_PER_NODE)
    }
    base = f"https://{first['web']['listen']}"
    cafile = Path(first["web"]["tls_cert_file"])
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [
            r
            for r in _api(base, "/api/v1/interactions", token, cafile)
            if r["source"]["sip_call_id"] in expected
        ]
        if len(found) >= len(expected):
            break
        time.sleep(0.5)
    call_ids = sorted(r["source"]["sip_call_id"] for r in found)
    assert call_ids == sorted(expected), call_ids  # each call once, none missing
    for record in found:
        assert record["source"]["node"] == expected[record["source"]["sip_call_id"]]
        assert record["kind"] == "call"
    store = archive.vault.store
    assert isinstance(store, S3ObjectStore)
    with archive.index.read() as session:
        objects = session.execute(
            select(StoredObject.id, StoredObject.interaction_id).where(
                StoredObject.interaction_id.in_([r["id"] for r in found])
            )
        ).all()
        beats = set(session.execute(select(NodeHeartbeat.node_id)).scalars())
        leases = {row.name: row.holder for row in session.execute(select(JobLease)).scalars()}
    assert beats >= set(NODES)
    assert set(leases.values()) <= set(NODES)  # a job's lease is held by one recorder at a time
    assert {iid for _, iid in objects} == {r["id"] for r in found}
    for oid, _ in objects:
        [version] = store.version_ids(oid)
        assert store.retention(oid, version)[0] == "COMPLIANCE"
