"""Shared fixtures: a throw-away appliance config, archives on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tapeline.archive.core import Archive
from tapeline.archive.crypto import generate_archive_key, generate_signing_key
from tapeline.archive.objects import LocalObjectStore
from tapeline.archive.s3store import S3ObjectStore
from tapeline.config import Config, parse_config

# CI replays the same examples every run (a red CI must mean a changed program, not a new random
# draw); developers' runs keep exploring. Failures found either way are pinned with @example.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_keys(base: Path) -> tuple[Path, Path]:
    """New archive and signing keys under `base/keys`."""
    archive_key = base / "keys" / "archive.key"
    signing_key = base / "keys" / "signing.key"
    generate_archive_key(archive_key)
    generate_signing_key(signing_key)
    return archive_key, signing_key


def config_dict(base: Path, database_url: str | None = None) -> dict[str, Any]:
    """A complete config for an appliance living under `base`."""
    archive_key, signing_key = write_keys(base)
    return {
        "node": {
            "id": "test-node",
            "status_listen": f"127.0.0.1:{free_port()}",
            "signing_key_file": str(signing_key),
            "default_region": "GB",
        },
        "storage": {
            "path": str(base / "objects"),
            "spool": str(base / "spool"),
            "key_file": str(archive_key),
            "min_free_bytes": 0,
        },
        "database": {"url": database_url or f"sqlite:///{base / 'index' / 'tapeline.db'}"},
        "web": {
            "listen": f"127.0.0.1:{free_port()}",
            "tls_cert_file": str(base / "tls" / "web.crt"),
            "tls_key_file": str(base / "tls" / "web.key"),
        },
        "siprec": {"listen": [f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]},
        "lines": [
            {"number": "+442071230001", "owner": "Alice Trader", "team": "rates"},
            {"number": "+442071230002", "owner": "Bob Sales", "team": "equities"},
        ],
    }


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config(config_dict(tmp_path), source="test")


class PostgresServer:
    """A real PostgreSQL cluster in a temp folder, run as the `postgres` user on a free port."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tapeline-pg-"))
        self.port = free_port()
        bindir = self._bindir()
        shutil.chown(self.dir, "postgres")
        run = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                *run,
                str(bindir / "initdb"),
                "-D",
                str(self.dir / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
        )
        self._ctl = [*run, str(bindir / "pg_ctl"), "-D", str(self.dir / "data")]
        subprocess.run(
            [
                *self._ctl,
                "-w",
                "-l",
                str(self.dir / "log"),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    @staticmethod
    def _bindir() -> Path:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not versions:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        return versions[-1]

    def new_database(self) -> str:
        import psycopg  # noqa: PLC0415  # only the PostgreSQL tests need it

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run([*self._ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `condition` until it holds, at most `timeout` seconds (fixtures only, never tests)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.2)


_CEPH_CONF = """[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon}
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd objectstore = memstore
memstore device bytes = 2147483648
osd crush chooseleaf type = 0
ms bind msgr2 = false
run dir = {d}/run
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
[mon.a]
mon data = {d}/mon
[osd.0]
osd data = {d}/osd0
# placed in the CRUSH map by the fixture; at init an OSD may otherwise send these updates before
# it knows the fsid, and the monitor refuses them ("wrong fsid") and the OSD exits
osd crush update on start = false
osd class update on start = false
[client.rgw.t]
rgw frontends = beast endpoint=127.0.0.1:{rgw} tcp_nodelay=1
rgw data = {d}/rgw
"""


class CephRgw:
    """A single-node Ceph (one monitor, one memory-backed OSD, one RGW) on loopback.

    Follows ../shared/reference/worm-ceph.md: test-only settings (no authentication, data lost
    on stop). Each daemon runs in the foreground (`-f`) as our own child, so `stop` ends exactly
    the processes started here, by PID, and removes the temp folder.
    """

    ACCESS_KEY = "tapeline-test"
    SECRET_KEY = "tapeline-test-secret"  # loopback-only test cluster

    def __init__(self) -> None:
        started = time.monotonic()
        self.dir = Path(tempfile.mkdtemp(prefix="tapeline-ceph-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        mon, rgw = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{rgw}"
        for sub in ("mon", "osd0", "run", "log", "rgw"):
            (self.dir / sub).mkdir()
        fsid = str(uuid.uuid4())
        self.conf = self.dir / "ceph.conf"
        self.conf.write_text(_CEPH_CONF.format(fsid=fsid, mon=mon, rgw=rgw, d=self.dir))
        c = ["-c", str(self.conf)]
        try:
            monmap = str(self.dir / "monmap")
            self._run(
                "monmaptool", "--create", "--addv", "a", f"v1:127.0.0.1:{mon}", "--fsid", fsid,
                monmap,
            )  # fmt: skip
            self._run("ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", monmap)
            self._start("ceph-mon", *c, "-f", "-i", "a")
            wait_for(lambda: self._ok("ceph", *c, "mon", "stat"), timeout=60, what="ceph-mon")
            self._run("ceph", *c, "--connect-timeout", "60", "osd", "create")
            self._run("ceph-osd", *c, "-i", "0", "--mkfs")
            self._run(
                "ceph", *c, "osd", "crush", "add", "osd.0", "1.0", "host=localhost", "root=default"
            )
            self._start("ceph-osd", *c, "-f", "-i", "0")
            self._start("radosgw", *c, "-f", "-n", "client.rgw.t")
            wait_for(self._answers, timeout=180, what="Ceph RGW")
            self._run(
                "radosgw-admin", *c, "user", "create", "--uid=t", "--display-name=t",
                f"--access-key={self.ACCESS_KEY}", f"--secret={self.SECRET_KEY}",
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def _run(self, *args: str) -> None:
        result = subprocess.run(args, capture_output=True, check=False, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.decode(errors='replace')}")

    def _ok(self, *args: str) -> bool:
        self._check_alive()
        return subprocess.run(args, capture_output=True, check=False, timeout=30).returncode == 0

    def _check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                out = self.dir / "log" / f"{proc.args[0]!s}.out"  # type: ignore[index]
                tail = out.read_text(errors="replace")[-2000:] if out.exists() else ""
                raise RuntimeError(f"{proc.args!r} exited {proc.returncode}:\n{tail}")

    def _start(self, *args: str) -> None:
        name = args[0]
        with (self.dir / "log" / f"{name}.out").open("wb") as out:
            self.procs.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT))

    def _answers(self) -> bool:
        self._check_alive()
        try:
            with urllib.request.urlopen(self.endpoint, timeout=2):  # noqa: S310  # our own http URL
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def client(self) -> Any:
        """A boto3 S3 client for the test cluster."""
        import boto3  # noqa: PLC0415  # only the s3 tests need it
        from botocore.config import Config as BotoConfig  # noqa: PLC0415

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            config=BotoConfig(s3={"addressing_style": "path"}),
        )

    def new_bucket(self, *, object_lock: bool = True) -> str:
        """A fresh bucket, with Object Lock (and so versioning) unless told otherwise."""
        name = "t-" + uuid.uuid4().hex[:20]
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def storage_keys(self, base: Path, bucket: str) -> dict[str, Any]:
        """`[storage]` keys pointing at `bucket`, with credential files under `base/keys`."""
        keys = base / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        (keys / "s3-access-key").write_text(self.ACCESS_KEY + "\n")
        (keys / "s3-secret-key").write_text(self.SECRET_KEY + "\n")
        return {
            "backend": "s3",
            "s3_endpoint": self.endpoint,
            "s3_bucket": bucket,
            "s3_access_key_file": str(keys / "s3-access-key"),
            "s3_secret_key_file": str(keys / "s3-secret-key"),
        }

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
        self.procs.clear()
        if not os.environ.get("KEEP_CEPH_TEST_DIR"):  # set it to read a failed start's logs
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ceph_rgw() -> Iterator[CephRgw]:
    server = CephRgw()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("s3", marks=pytest.mark.s3),
    ]
)
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    """An opened archive on each index backend, and on an S3 Object Lock bucket (SQLite index)."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
    data = config_dict(tmp_path, url)
    if request.param == "s3":
        rgw: CephRgw = request.getfixturevalue("ceph_rgw")
        data["storage"].update(rgw.storage_keys(tmp_path, rgw.new_bucket()))
    cfg = parse_config(data, source="test")
    opened = Archive.open(cfg)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def index_archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    """An opened archive on a local object folder, on each index backend (SQLite, PostgreSQL)."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
    opened = Archive.open(parse_config(config_dict(tmp_path, url), source="test"))
    try:
        yield opened
    finally:
        opened.close()


def flip_a_byte(archive: Archive, object_id: str, request: pytest.FixtureRequest) -> None:
    """Tamper with a stored object: rewrite its file, or on S3 put a new version over it.

    A COMPLIANCE-locked version cannot be changed, but anyone with write access can add a newer
    version on top; reads then see it, and `verify` must name it.
    """
    store = archive.vault.store
    data = bytearray(store.get(object_id))
    data[len(data) // 2] ^= 0x01
    if isinstance(store, LocalObjectStore):
        store.path_of(object_id).write_bytes(bytes(data))
    elif isinstance(store, S3ObjectStore):
        rgw: CephRgw = request.getfixturevalue("ceph_rgw")
        rgw.client().put_object(Bucket=store.bucket, Key=object_id, Body=bytes(data))
    else:
        raise TypeError(f"cannot tamper with a {type(store).__name__}")


def write_config_file(base: Path, database_url: str | None = None) -> Path:
    """A config file for an appliance under `base` (keys and TLS certificate included)."""
    from tapeline.tlscert import generate_self_signed  # noqa: PLC0415
    from tests.tomlwriter import dumps  # noqa: PLC0415

    data = config_dict(base, database_url)
    generate_self_signed(Path(data["web"]["tls_cert_file"]), Path(data["web"]["tls_key_file"]))
    path = base / "tapeline.toml"
    path.write_text(dumps(data))
    return path


def tapeline(
    *args: str, check: bool = True, input_: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a subprocess."""
    import sys  # noqa: PLC0415

    result = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        input=input_,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"tapeline {' '.join(args)} exited {result.returncode}: {result.stderr}"
        )
    return result


def require_tool(name: str) -> str:
    """The path of a tool a test needs; a clear failure (never a skip) when it is missing.

    `make test` installs every tool the suite uses, so a missing one is a broken install, which
    a skip would hide.
    """
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found is None:
        pytest.fail(f"{name} is required by this test: run `make test`, which installs it")
    return found


@pytest.fixture
def need_sox() -> str:
    return require_tool("sox")


@pytest.fixture
def need_ffmpeg() -> str:
    return require_tool("ffmpeg")
