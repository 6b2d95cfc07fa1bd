"""The WhatsApp capture service in the recorder: listener, journal, ingest worker, media fetcher.

Start: read the secrets (no app secret → refuse to start), file every journal an earlier run left
(recovery: a crash after a 200 loses nothing), then bind `whatsapp.listen`. Stop: close the
listener, file what is queued, seal the journal (released once everything in it is filed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import uvicorn

from tapeline.archive.core import Archive
from tapeline.archive.journal import read_journal
from tapeline.archive.nodes import raise_alarm
from tapeline.config import Config, read_secret
from tapeline.daemon.recorder import Runtime
from tapeline.daemon.whatsapp.app import WebhookHandlers, create_webhook_app
from tapeline.daemon.whatsapp.ingest import Ingest
from tapeline.daemon.whatsapp.media import MediaFetcher
from tapeline.daemon.whatsapp.sendproxy import SendProxy, parse_clients
from tapeline.daemon.whatsapp.signature import parse_secrets
from tapeline.daemon.whatsapp.spool import (
    Delivery,
    Ticket,
    WebhookJournal,
    decode_delivery,
    encode_delivery,
    release,
)
from tapeline.errors import ConfigError, IntegrityError, StorageError
from tapeline.httpserver import EmbeddedServer

log = logging.getLogger(__name__)
RETRY_FILING_S = 5.0
DRAIN_TIMEOUT_S = 20.0


class WhatsappService:
    """WhatsApp Business capture (webhooks, media), as a recorder `Service`."""

    name = "whatsapp"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.changed = asyncio.Condition()
        self._queue: asyncio.Queue[tuple[Delivery, Ticket | None]] = asyncio.Queue()
        self._busy = False
        self._tasks: list[asyncio.Task[None]] = []
        self._server: EmbeddedServer | None = None
        self._server_task: asyncio.Task[None] | None = None
        self._archive: Archive | None = None
        self._journal: WebhookJournal | None = None
        self._ingest: Ingest | None = None
        self.fetcher: MediaFetcher | None = None
        self.recovered = 0

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, runtime: Runtime) -> None:
        """Check secrets, recover old journals, bind the listener.

        Raises:
            ConfigError: no app secret, or `whatsapp.listen` cannot be bound.
        """
        wa = self.config.whatsapp
        secrets = self._secrets()
        verify_token = (
            read_secret(wa.verify_token_file, key="whatsapp.verify_token_file")
            if wa.verify_token_file
            else None
        )
        access_token = (
            read_secret(wa.access_token_file, key="whatsapp.access_token_file")
            if wa.access_token_file
            else None
        )
        archive = self._archive = runtime.archive
        self._journal = WebhookJournal(
            self.config.storage.spool / "whatsapp", archive.vault.archive_key
        )
        self._ingest = Ingest(archive, self.config)
        self.fetcher = MediaFetcher(
            archive,
            self._ingest.amender,
            base_url=wa.graph_base_url,
            token=access_token,
            retry_base_s=wa.media_retry_base_s,
            expiry_s=wa.media_expiry_s,
            timeout_s=wa.media_timeout_s,
            changed=self.changed,
        )
        await self._recover()
        proxy = None
        if wa.send_proxy_tokens_file is not None:
            tokens = read_secret(wa.send_proxy_tokens_file, key="whatsapp.send_proxy_tokens_file")
            proxy = SendProxy(
                clients=parse_clients(tokens),
                base_url=wa.graph_base_url,
                access_token=access_token,
                ingest=self._ingest,
                timeout_s=wa.media_timeout_s,
            )
        handlers = WebhookHandlers(
            secrets=secrets,
            verify_token=verify_token,
            max_body_bytes=wa.max_body_bytes,
            commit=self._commit,
            accepted=self._accepted,
            alarm=self._alarm,
            send=proxy.handle if proxy is not None else None,
        )
        host, port = wa.address
        server = self._server = EmbeddedServer(
            uvicorn.Config(
                create_webhook_app(handlers),
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
                server_header=False,
                date_header=False,
            )
        )
        self._tasks = [
            asyncio.create_task(self._journal.run(), name="whatsapp.journal"),
            asyncio.create_task(self._worker(), name="whatsapp.ingest"),
            asyncio.create_task(self.fetcher.run(), name="whatsapp.media"),
        ]
        self._server_task = asyncio.create_task(server.serve(), name=f"whatsapp.http:{port}")
        if not await server.wait_bound(self._server_task):
            await self._cancel_tasks()
            raise ConfigError("config", "whatsapp.listen", f"cannot listen on {wa.listen}")
        log.info("whatsapp webhook listening", extra={"listen": wa.listen})

    def _secrets(self) -> list[bytes]:
        path = self.config.whatsapp.app_secret_file
        if path is None:
            raise ConfigError("config", "whatsapp.app_secret_file", "required with whatsapp.listen")
        secrets = parse_secrets(read_secret(path, key="whatsapp.app_secret_file"))
        if not secrets:
            raise ConfigError("config", "whatsapp.app_secret_file", "no app secret in the file")
        return secrets

    async def run(self) -> None:
        """Serve until cancelled."""
        tasks = [t for t in [self._server_task, *self._tasks] if t is not None]
        await asyncio.gather(*tasks)

    async def stop(self) -> None:
        """Close the listener, file what was accepted, seal the journal."""
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._server_task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await self.wait_for(lambda: self.idle)
        await self._cancel_tasks()
        if self._journal is not None:
            await asyncio.to_thread(self._journal.close)

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def reload(self, config: Config) -> None:
        """Take new lines (business phone number ids)."""
        self.config = config
        if self._ingest is not None:
            self._ingest.reload(config)

    # --- waiting (tests, stop) --------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing accepted is waiting to be filed."""
        return self._queue.empty() and not self._busy

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds; re-checked whenever a delivery or media is done."""
        async with self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # --- the pipeline -----------------------------------------------------------------------------

    async def _commit(self, delivery: Delivery) -> Ticket:
        if self._journal is None:
            raise StorageError("journal not open")
        return await self._journal.commit(encode_delivery(delivery))

    def _accepted(self, delivery: Delivery, ticket: Ticket) -> None:
        self._queue.put_nowait((delivery, ticket))

    async def _worker(self) -> None:
        while True:
            delivery, ticket = await self._queue.get()
            self._busy = True
            try:
                if await self._file(delivery) and ticket is not None and self._journal:
                    self._journal.filed(ticket)
                elif ticket is not None:
                    asyncio.get_running_loop().call_later(
                        RETRY_FILING_S, self._queue.put_nowait, (delivery, ticket)
                    )
            finally:
                self._busy = False
                await self._notify()

    async def _file(self, delivery: Delivery) -> bool:
        ingest = self._ingest
        if ingest is None:
            return False
        try:
            report = await asyncio.to_thread(ingest.file_delivery, delivery)
        except StorageError as exc:
            log.error("webhook delivery not filed yet, kept in the journal: %s", exc)  # noqa: TRY400
            await self._alarm("whatsapp.filing", "a webhook delivery could not be filed yet")
            return False
        except Exception:  # last-resort supervisor of one delivery's pipeline
            log.exception("webhook delivery could not be filed; kept in the journal")
            await self._alarm("whatsapp.filing", "a webhook delivery could not be filed (bug)")
            return False
        if report.pending_media and self.fetcher is not None:
            self.fetcher.wake()
        return True

    async def _recover(self) -> None:
        """File every journal an earlier run left behind, then release it."""
        journal = self._journal
        archive = self._archive
        if journal is None or archive is None:
            return
        for path in await asyncio.to_thread(journal.leftovers):
            await self._recover_one(path, archive)

    async def _recover_one(self, path: Path, archive: Archive) -> None:
        try:
            contents = await asyncio.to_thread(read_journal, path, archive.vault.archive_key)
        except (IntegrityError, StorageError) as exc:
            log.error("webhook journal %s unreadable, kept: %s", path, exc)  # noqa: TRY400
            await self._alarm("whatsapp.journal_unreadable", f"journal {path.name} kept unread")
            return
        if contents.torn:
            await self._alarm("whatsapp.journal_torn", f"journal {path.name} ended torn")
        complete = True
        for record in contents.records:
            complete = await self._file(decode_delivery(record)) and complete
            self.recovered += 1
        if complete:
            await asyncio.to_thread(release, path)
        log.info("recovered webhook journal", extra={"records": len(contents.records)})

    async def _alarm(self, code: str, message: str) -> None:
        if self._archive is not None:
            await asyncio.to_thread(
                raise_alarm, self._archive, code=code, severity="warning", message=message
            )
