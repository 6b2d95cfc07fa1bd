"""The media fetcher: webhook media ids → Graph API → sealed archive objects (whatsapp.md §8).

Theory of operation: every media row the ingest files is `pending`. The fetcher resolves its id
(`GET {graph_base_url}/{media_id}` with the bearer token → `url`, `sha256`, `mime_type`), downloads
the URL with the same token (a 403/404 on the URL means it expired: resolve again once), checks the
SHA-256 (the webhook's, else Graph's; base64 or hex) and stores the file through the amend path.
A failure is recorded (`media.failed`, state `retrying`) and retried with exponential backoff until
the media id expires (7 days after the message); then the row becomes `failed`, a gap, alarmed. A
hash mismatch keeps the file (state `mismatch`) and raises an integrity alarm.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from tapeline.archive.amend import Amender
from tapeline.archive.core import Archive
from tapeline.archive.nodes import raise_alarm
from tapeline.errors import StorageError

log = logging.getLogger(__name__)
SHA256_BYTES = 32
MAX_BACKOFF_S = 3600.0
MAX_MEDIA_BYTES = 110 * 1024 * 1024  # Meta's largest media (documents, 100 MB) and some slack
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
HTTP_OK = 200
HTTP_FORBIDDEN = 403
HTTP_NOT_FOUND = 404


def normalise_sha256(text: str | None) -> str | None:
    """Lower-case hex of a SHA-256 given as hex or (url-safe) base64; None if it is neither."""
    if not text:
        return None
    value = text.strip()
    if _HEX64.match(value):
        return value.lower()
    padded = value + "=" * (-len(value) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(padded)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == SHA256_BYTES:
            return raw.hex()
    return None


class FetchError(Exception):
    """One download attempt failed (the reason is recorded, never the token or the URL)."""


@dataclass(slots=True)
class _Job:
    row: int
    media_id: str
    mime_type: str | None
    expected: str | None
    message_at: datetime
    attempts: int = 0
    due: float = 0.0


class MediaFetcher:
    """Fetches pending media; one at a time, woken by the ingest or by its own retry timer."""

    def __init__(  # noqa: PLR0913  # the knobs of [whatsapp], spelled out
        self,
        archive: Archive,
        amender: Amender,
        *,
        base_url: str,
        token: str | None,
        retry_base_s: float,
        expiry_s: float,
        timeout_s: float,
        changed: asyncio.Condition | None = None,
    ) -> None:
        self._archive = archive
        self._amender = amender
        self._base = base_url.rstrip("/")
        self._token = token
        self._retry_base = retry_base_s
        self._expiry = timedelta(seconds=expiry_s)
        self._timeout = timeout_s
        self._jobs: dict[int, _Job] = {}
        self._wake = asyncio.Event()
        self.changed = changed or asyncio.Condition()

    def wake(self) -> None:
        """New pending media may be in the index."""
        self._wake.set()

    @property
    def waiting(self) -> int:
        """Media rows known to be pending or retrying."""
        return len(self._jobs)

    async def run(self) -> None:
        """Fetch until cancelled."""
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        async with httpx.AsyncClient(
            headers=headers, timeout=self._timeout, follow_redirects=False
        ) as client:
            while True:
                await self._load_pending()
                now = time.monotonic()
                due = [job for job in self._jobs.values() if job.due <= now]
                for job in due:
                    await self._attempt(client, job)
                async with self.changed:
                    self.changed.notify_all()
                if due:
                    continue
                waits = [job.due - time.monotonic() for job in self._jobs.values()]
                timeout = max(0.0, min(waits)) if waits else None
                self._wake.clear()
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _load_pending(self) -> None:
        rows = await asyncio.to_thread(self._amender.pending_media)
        for row, media_id, mime_type, expected, message_at in rows:
            if row not in self._jobs:
                self._jobs[row] = _Job(
                    row, media_id, mime_type, normalise_sha256(expected), message_at
                )

    async def _attempt(self, client: httpx.AsyncClient, job: _Job) -> None:
        now = datetime.now(UTC)
        if now > job.message_at + self._expiry:
            await self._give_up(job, "media id expired (older than the media expiry)")
            return
        job.attempts += 1
        try:
            data, mime_type, graph_sha = await self._download(client, job.media_id)
        except FetchError as exc:
            await self._failed(job, str(exc))
            return
        expected = job.expected or normalise_sha256(graph_sha)
        try:
            state = await asyncio.to_thread(
                self._amender.store_media,
                job.row,
                data,
                mime_type=mime_type or job.mime_type,
                expected=expected,
            )
        except StorageError as exc:
            await self._failed(job, f"storing failed: {exc}")
            return
        del self._jobs[job.row]
        if state == "mismatch":
            await asyncio.to_thread(
                raise_alarm,
                self._archive,
                code="whatsapp.media_integrity",
                severity="critical",
                message=f"media {job.media_id}: SHA-256 differs from the webhook's; file kept",
            )

    async def _download(
        self, client: httpx.AsyncClient, media_id: str
    ) -> tuple[bytes, str | None, str | None]:
        for _ in range(2):  # a second resolve gives a fresh URL when the first one expired
            meta = await self._get(client, f"{self._base}/{media_id}")
            try:
                info = meta.json()
                url = str(info["url"])
            except (ValueError, KeyError, TypeError) as exc:
                raise FetchError("media lookup answered without a url") from exc
            response = await self._get(client, url, allow={HTTP_FORBIDDEN, HTTP_NOT_FOUND})
            if response.status_code in {HTTP_FORBIDDEN, HTTP_NOT_FOUND}:
                continue
            mime = info.get("mime_type") or response.headers.get("content-type")
            return response.content, mime, info.get("sha256")
        raise FetchError("media url refused twice (expired or not ours)")

    async def _get(
        self, client: httpx.AsyncClient, url: str, *, allow: set[int] | None = None
    ) -> httpx.Response:
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            raise FetchError(f"transfer failed: {exc.__class__.__name__}") from exc
        if response.status_code != HTTP_OK and response.status_code not in (allow or set()):
            raise FetchError(f"HTTP {response.status_code}")
        if len(response.content) > MAX_MEDIA_BYTES:
            raise FetchError("media larger than any WhatsApp media")
        return response

    async def _failed(self, job: _Job, reason: str) -> None:
        backoff = min(self._retry_base * 2 ** (job.attempts - 1), MAX_BACKOFF_S)
        next_at = datetime.now(UTC) + timedelta(seconds=backoff)
        final = next_at > job.message_at + self._expiry
        log.warning("media %s fetch failed (attempt %d): %s", job.media_id, job.attempts, reason)
        if final:
            await self._give_up(job, reason)
            return
        job.due = time.monotonic() + backoff
        await asyncio.to_thread(self._amender.media_failed, job.row, reason=reason, final=False)

    async def _give_up(self, job: _Job, reason: str) -> None:
        self._jobs.pop(job.row, None)
        await asyncio.to_thread(self._amender.media_failed, job.row, reason=reason, final=True)
        await asyncio.to_thread(
            raise_alarm,
            self._archive,
            code="whatsapp.media_gave_up",
            severity="critical",
            message=f"media {job.media_id} could not be fetched before it expired: {reason}",
        )
