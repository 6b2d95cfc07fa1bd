"""Run the installed recorder and web from the scratch root as the `tapeline` user.

There is no systemd as PID 1 here, so the processes are started with `runuser -u tapeline --`,
with the config's paths pointed into the scratch root by TAPELINE_<SECTION>__<KEY> overrides and
every listener on loopback. The web runs in a private mount namespace that applies what its unit
applies (ReadOnlyPaths= on objects/, InaccessiblePaths= on spool/), when namespaces are allowed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.install.conftest import USER, InstalledRoot, tree_listing

pytestmark = pytest.mark.slow

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

_WEB_SANDBOX = (
    'set -e; mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; '
    'mount -t tmpfs -o mode=000,size=4k tapeline-hidden "$2"; shift 2; exec "$@"'
)


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _namespaces_allowed() -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


@dataclass
class Service:
    """One started process: the runuser wrapper and its notify socket."""

    name: str
    proc: subprocess.Popen[bytes]
    notify: socket.socket
    log: Path

    def child_pid(self) -> int:
        """The tapeline process runuser forked (signals go to it, not to runuser)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(stat_fields[1]) == self.proc.pid:
                        return int(entry.name)
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: runuser {self.proc.pid} has no child")

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


@dataclass(frozen=True)
class Ports:
    """Loopback ports for one run."""

    status: int
    web: int
    siprec: int


def _overrides(root: InstalledRoot, ports: Ports) -> dict[str, str]:
    p = root.host_path
    return {
        "TAPELINE_STORAGE__PATH": str(p("/var/lib/tapeline/objects")),
        "TAPELINE_STORAGE__SPOOL": str(p("/var/lib/tapeline/spool")),
        "TAPELINE_STORAGE__KEY_FILE": str(p("/etc/tapeline/keys/archive.key")),
        "TAPELINE_NODE__SIGNING_KEY_FILE": str(p("/etc/tapeline/keys/signing.key")),
        "TAPELINE_WEB__TLS_CERT_FILE": str(p("/etc/tapeline/tls/web.crt")),
        "TAPELINE_WEB__TLS_KEY_FILE": str(p("/etc/tapeline/tls/web.key")),
        "TAPELINE_DATABASE__URL": "sqlite:///" + str(p("/var/lib/tapeline/index/tapeline.db")),
        "TAPELINE_NODE__STATUS_LISTEN": f"127.0.0.1:{ports.status}",
        "TAPELINE_WEB__LISTEN": f"127.0.0.1:{ports.web}",
        "TAPELINE_SIPREC__LISTEN": json.dumps([f"udp:127.0.0.1:{ports.siprec}"]),
    }


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder the tapeline user can reach, for notify sockets and logs."""
    path = Path(tempfile.mkdtemp(prefix="tapeline-run-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


class Runner:
    """Starts the installed programs as `tapeline` and stops them, by PID only."""

    def __init__(self, root: InstalledRoot, workdir: Path, *, sandbox_web: bool) -> None:
        self.root = root
        self.workdir = workdir
        self.sandbox_web = sandbox_web
        self.ports = Ports(_free_port(), _free_port(), _free_port(socket.SOCK_DGRAM))
        self.started: list[Service] = []

    def start(self, role: str) -> Service:
        """Start `tapeline <role> -c /etc/tapeline/tapeline.toml` of the scratch root."""
        tag = f"{role}-{len(self.started)}"
        sock_path = self.workdir / f"{tag}.notify"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(sock_path))
        sock_path.chmod(0o666)
        notify.settimeout(0.2)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "NOTIFY_SOCKET": str(sock_path),
            **_overrides(self.root, self.ports),
        }
        cmd = [
            "runuser",
            "-u",
            USER,
            "--",
            str(self.root.venv / "bin" / "tapeline"),
            role,
            "-c",
            str(self.root.host_path("/etc/tapeline/tapeline.toml")),
        ]
        if role == "web" and self.sandbox_web:
            objects = self.root.host_path("/var/lib/tapeline/objects")
            spool = self.root.host_path("/var/lib/tapeline/spool")
            cmd = [
                "unshare", "-m", "--propagation", "private", "--",
                "sh", "-c", _WEB_SANDBOX, "sh", str(objects), str(spool), *cmd,
            ]  # fmt: skip
        log = self.workdir / f"{tag}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, cwd="/", stdout=out, stderr=subprocess.STDOUT)
        service = Service(role, proc, notify, log)
        self.started.append(service)
        return service

    def stop(self, service: Service) -> int:
        """SIGTERM the tapeline process and return its exit status (within STOP_TIMEOUT)."""
        if service.proc.poll() is None:
            os.kill(service.child_pid(), signal.SIGTERM)
        try:
            return service.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{service.name} did not exit within {STOP_TIMEOUT} s of SIGTERM")

    def cleanup(self) -> None:
        """Kill whatever this runner started and is still alive."""
        for service in self.started:
            if service.proc.poll() is None:
                with contextlib.suppress(AssertionError, ProcessLookupError):
                    os.kill(service.child_pid(), signal.SIGKILL)
                service.proc.kill()
                service.proc.wait(timeout=10)
            service.notify.close()


def _wait_ready(service: Service) -> None:
    """Wait for READY=1 on the notify socket."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            pytest.fail(f"{service.name} exited {service.proc.returncode}:\n{service.output()}")
        with contextlib.suppress(TimeoutError):
            if b"READY=1" in service.notify.recv(4096).split(b"\n"):
                return
    pytest.fail(f"{service.name} sent no READY=1 within {START_TIMEOUT} s:\n{service.output()}")


def _poll_livez(service: Service, url: str, context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            pytest.fail(f"{service.name} exited {service.proc.returncode}:\n{service.output()}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=2, context=context) as response,  # noqa: S310
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    pytest.fail(
        f"{service.name}: {url} did not answer within {START_TIMEOUT} s:\n{service.output()}"
    )


def _insecure_context() -> ssl.SSLContext:
    # The installed certificate is self-signed; we compare it byte for byte instead.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _served_cert(port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        _insecure_context().wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.fixture
def runner(installed_root: InstalledRoot, workdir: Path) -> Iterator[Runner]:
    """A Runner for the session's scratch root; kills leftovers on the way out."""
    r = Runner(installed_root, workdir, sandbox_web=_namespaces_allowed())
    try:
        yield r
    finally:
        r.cleanup()


def test_tapeline_user_reads_config_and_keys_but_cannot_change_them(
    installed_root: InstalledRoot,
) -> None:
    for path in (
        "/etc/tapeline/tapeline.toml",
        "/etc/tapeline/keys/archive.key",
        "/etc/tapeline/keys/signing.key",
        "/etc/tapeline/tls/web.crt",
        "/etc/tapeline/tls/web.key",
    ):
        host = str(installed_root.host_path(path))
        readable = subprocess.run(["runuser", "-u", USER, "--", "test", "-r", host], check=False)
        assert readable.returncode == 0, f"{USER} cannot read {path}"
        writable = subprocess.run(["runuser", "-u", USER, "--", "test", "-w", host], check=False)
        assert writable.returncode != 0, f"{USER} can write {path}"
        other = subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", host], check=False)
        assert other.returncode != 0, f"nobody can read {path}"


def test_recorder_and_web_start_serve_livez_and_stop(
    installed_root: InstalledRoot, runner: Runner
) -> None:
    state = installed_root.host_path("/var/lib/tapeline")
    objects = installed_root.host_path("/var/lib/tapeline/objects")

    recorder = runner.start("recorder")
    _wait_ready(recorder)
    _poll_livez(recorder, f"http://127.0.0.1:{runner.ports.status}/livez")
    assert runner.stop(recorder) == 0, recorder.output()

    objects_before = tree_listing(objects)
    web = runner.start("web")
    _wait_ready(web)
    _poll_livez(web, f"https://127.0.0.1:{runner.ports.web}/livez", _insecure_context())
    installed_cert = installed_root.host_path("/etc/tapeline/tls/web.crt").read_text(
        encoding="ascii"
    )
    assert _served_cert(runner.ports.web) == ssl.PEM_cert_to_DER_cert(installed_cert)
    assert runner.stop(web) == 0, web.output()
    assert tree_listing(objects) == objects_before, "the web changed the object folder"

    # Both at once, sharing the index, as the two units do.
    both = [runner.start("recorder"), runner.start("web")]
    for service in both:
        _wait_ready(service)
    _poll_livez(both[0], f"http://127.0.0.1:{runner.ports.status}/livez")
    _poll_livez(both[1], f"https://127.0.0.1:{runner.ports.web}/livez", _insecure_context())
    for service in both:
        assert runner.stop(service) == 0, service.output()

    listing = tree_listing(state)
    assert listing, "nothing under the state folder"
    not_ours = {path: meta for path, meta in listing.items() if meta[1] != installed_root.uid}
    assert not not_ours, f"files under {state} not owned by {USER}: {not_ours}"
    assert installed_root.host_path("/var/lib/tapeline/index/tapeline.db").exists()


def test_cli_run_as_root_switches_to_tapeline_before_touching_the_archive(
    installed_root: InstalledRoot, tmp_path: Path
) -> None:
    """`sudo tapeline user add ...` on the box must not leave root-owned index files behind."""
    ports = Ports(status=_free_port(), web=_free_port(), siprec=_free_port(socket.SOCK_DGRAM))
    password = tmp_path / "pw"
    password.write_text("installed admin password\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **_overrides(installed_root, ports)}
    config = installed_root.host_path("/etc/tapeline/tapeline.toml")
    result = subprocess.run(
        [
            str(installed_root.venv / "bin" / "tapeline"),
            "user",
            "add",
            "root-made",
            "--role",
            "auditor",
            "-c",
            str(config),
            "--password-file",
            str(password),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    index = installed_root.host_path("/var/lib/tapeline/index")
    files = list(index.iterdir())
    assert any(f.name == "tapeline.db" for f in files)
    for path in files:
        assert path.stat().st_uid == installed_root.uid, (
            f"{path} is owned by uid {path.stat().st_uid}"
        )
