"""`tapeline demo`: the whole product in one process, on embedded defaults, for a newcomer.

It writes a config into the data folder (SQLite, a local object folder, loopback listeners), makes
fresh keys and a self-signed certificate, creates one account holding every role with a random
password printed once (there is no default password), seeds three synthetic records through the
real filing path when the archive is empty, and runs the recorder and the web page together.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

from tapeline.archive.access import Role
from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.crypto import generate_archive_key, generate_signing_key
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.archive.users import add_user, list_users
from tapeline.config import Config, load_config
from tapeline.daemon.recorder import Recorder
from tapeline.daemon.services import build_services
from tapeline.eventloop import run_async
from tapeline.tlscert import generate_self_signed
from tapeline.web.server import make_server

DEMO_ACCOUNT = "officer"


@dataclass(frozen=True, slots=True)
class DemoPorts:
    """Where the demo listens (all loopback)."""

    web: int = 8443
    status: int = 9780
    sip: int = 5060


def write_demo_config(data_dir: Path, ports: DemoPorts) -> Path:
    """Write `tapeline.toml` into the data folder unless it is there already."""
    path = data_dir / "tapeline.toml"
    if not path.exists():
        template = files("tapeline").joinpath("data/demo.toml").read_text(encoding="utf-8")
        text = (
            template.replace("@DATA_DIR@", str(data_dir))
            .replace("@WEB_PORT@", str(ports.web))
            .replace("@STATUS_PORT@", str(ports.status))
            .replace("@SIP_PORT@", str(ports.sip))
        )
        path.write_text(text, encoding="utf-8")
    return path


def ensure_keys(config: Config) -> None:
    """Create whichever key or certificate files the config names and are missing."""
    if not config.storage.key_file.exists():
        generate_archive_key(config.storage.key_file)
    if not config.node.signing_key_file.exists():
        generate_signing_key(config.node.signing_key_file)
    if not config.web.tls_cert_file.exists() or not config.web.tls_key_file.exists():
        generate_self_signed(config.web.tls_cert_file, config.web.tls_key_file)


def prepare(data_dir: Path, ports: DemoPorts) -> tuple[Path, Config, str | None]:
    """Config, keys, account and sample records; returns the new password if one was made."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    config_path = write_demo_config(data_dir, ports)
    config = load_config(config_path)
    ensure_keys(config)
    archive = Archive.open(config)
    password = None
    try:
        if not list_users(archive):
            password = secrets.token_urlsafe(15)
            add_user(
                archive,
                name=DEMO_ACCOUNT,
                roles=[r.value for r in Role],
                teams=[],
                password=password,
                by=Actor.system("demo"),
            )
            seed(archive)
    finally:
        archive.close()
    return config_path, config, password


def seed(archive: Archive) -> None:
    """Three synthetic records so the page is not empty (tagged `demo`)."""
    now = datetime.now(UTC).replace(microsecond=0)
    file_synthetic_call(
        archive,
        line="+442071230001",
        counterparty="+447700900123",
        started_at=now - timedelta(hours=2),
        seconds=4.0,
        tags=["demo"],
    )
    file_synthetic_message(
        archive,
        line="+442071230001",
        counterparty="+447700900123",
        started_at=now - timedelta(hours=1),
        text="Can you call me about the 5y swap?",
        wamid="wamid.demo-1",
    )
    file_synthetic_call(
        archive,
        line="+442071230002",
        counterparty="+12025550143",
        started_at=now - timedelta(minutes=20),
        seconds=6.0,
        direction="outbound",
        tags=["demo"],
    )


async def run_demo(config_path: Path, config: Config, banner: str) -> None:
    """Run the recorder and the web page until Ctrl-C or SIGTERM; `banner` once both listen."""
    recorder = Recorder(config, config_path=config_path, services=build_services(config))
    web_archive = Archive.open(config, migrate=False)
    server = make_server(web_archive)
    try:
        recorder_task = asyncio.create_task(recorder.run(), name="recorder")
        await recorder.ready.wait()
        web_task = asyncio.create_task(server.serve(), name="web")
        if await server.wait_bound(web_task):
            sys.stdout.write(banner)
            sys.stdout.flush()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, recorder.request_stop)
        loop.add_signal_handler(signal.SIGINT, recorder.request_stop)
        await recorder_task
        server.should_exit = True
        await web_task
    finally:
        web_archive.close()


def main(data_dir: Path, ports: DemoPorts) -> int:
    """`tapeline demo`."""
    config_path, config, password = prepare(data_dir.resolve(), ports)
    if password:
        account = (
            f"{DEMO_ACCOUNT} / {password}   (shown once; holds every role, so the first sign-in"
            " sets up an authenticator app: TOTP is required for admin, legal, records-manager)"
        )
    else:
        account = f"{DEMO_ACCOUNT} (password was shown when the demo first ran)"
    banner = (
        f"Tapeline demo, data in {data_dir.resolve()}\n"
        f"  web page:  https://127.0.0.1:{ports.web}/  (self-signed certificate)\n"
        f"  status:    http://127.0.0.1:{ports.status}/readyz\n"
        f"  SIPREC:    {', '.join(config.siprec.listen)}\n"
        f"  config:    {config_path}\n"
        f"  account:   {account}\n"
        "Stop with Ctrl-C.\n"
    )
    run_async(run_demo(config_path, config, banner))
    return 0
