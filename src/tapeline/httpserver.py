"""uvicorn servers that leave signal handling to their owner (the recorder, the web, the demo)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that does not take over SIGTERM/SIGINT and says when it is bound.

    uvicorn's own handler re-raises the signal after its shutdown, which would kill the other
    half of `tapeline demo` and skip our ordered stop.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.bound = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signals alone."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind, then announce it."""
        await super().startup(sockets=sockets)
        if self.started:
            self.bound.set()

    async def wait_bound(self, task: asyncio.Task[None]) -> bool:
        """Wait until the socket is bound (True) or the server task ended (False)."""
        waiter = asyncio.ensure_future(self.bound.wait())
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        return self.bound.is_set()
