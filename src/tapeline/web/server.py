"""Run the web page: uvicorn over HTTPS (the admin's certificate or the generated one)."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn

from tapeline.archive.core import Archive
from tapeline.httpserver import EmbeddedServer
from tapeline.sdnotify import sd_notify
from tapeline.web.app import create_app

log = logging.getLogger(__name__)


def make_server(archive: Archive) -> EmbeddedServer:
    """A uvicorn server for the page, not yet started."""
    web = archive.config.web
    host, port = web.address
    tls: dict[str, str] = {}
    if web.tls:
        tls = {"ssl_certfile": str(web.tls_cert_file), "ssl_keyfile": str(web.tls_key_file)}
    config = uvicorn.Config(
        create_app(archive),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        **tls,  # type: ignore[arg-type]  # uvicorn's keyword arguments, typed per key
    )
    return EmbeddedServer(config)


async def serve_web(archive: Archive, *, notify: bool = True) -> None:
    """Serve until SIGTERM/SIGINT; READY=1 once the socket is bound."""
    server = make_server(archive)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    task = asyncio.create_task(server.serve(), name="web")
    if await server.wait_bound(task) and notify:
        sd_notify("READY=1", "STATUS=serving")
        log.info("web ready", extra={"listen": archive.config.web.listen})
    await task
