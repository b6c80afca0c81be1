"""Shared async HTTP clients: one per connection settings and event loop.

A triggerer runs every trigger in one event loop, and each trigger builds its own hook.
Sharing one client per connection there means one connection pool and one TLS context
for all of them, reused across polls, instead of a handshake per poll per trigger.

A client cannot outlive its event loop, so the cache is keyed by loop too. The clients
of a loop are closed when the loop shuts down through ``asyncio.run`` (which finalizes
async generators before closing the loop; a guard generator per loop does the closing),
or earlier by :func:`aclose_client`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncGenerator
from typing import Any
from weakref import WeakKeyDictionary

import httpx

from airflow_batch_provider.hooks._connection import ConnectionSettings
from airflow_batch_provider.hooks._http import request_headers

#: Connections (and requests in flight) per connection settings and event loop; more
#: requests wait their turn. They bound how many reads one loop completes per second, about
#: ``MAX_CONNECTIONS / (latency + the loop's own delay)``: measured here at 20 ms latency,
#: 1,000 triggers polling every 2 s (500 reads/s asked), 16 connections gave 280 reads/s and
#: reads waiting up to 8 s for a connection; 32 kept up, with waits under 2 s; 64 did too,
#: but more answers arriving at once pushed the loop's lag p99 past 50 ms.
MAX_CONNECTIONS = 32


class SharedClient:
    """Up to ``MAX_CONNECTIONS`` clients of one connection each, lent to one request at a time.

    Not one client with a pool of ``MAX_CONNECTIONS``: whenever a request starts or ends,
    httpcore's pool checks every connection (a socket poll for each idle one, a recount of
    the idle ones for each) and rescans its queue, work that grows with the square of its
    connections and queue. Measured here, polls at 20 ms latency: one client of 16
    connections behind a semaphore spent 2.9-3.3 ms of CPU per poll, 16 clients of one
    connection 1.8-1.9 ms. Requests beyond the clients wait in a FIFO queue.

    Clients are made on demand, so a few triggers use a single connection; they share one
    TLS context (loading the CA bundle costs about 40 ms of CPU).
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self._settings = settings
        self._clients: list[httpx.AsyncClient] = []
        # The most recently used client first: its connection is the likeliest still open.
        self._idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        self._closed = False

    @functools.cached_property
    def _ssl_context(self) -> ssl.SSLContext:
        return httpx.create_ssl_context()

    def _new_client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            headers=request_headers(self._settings),
            params=self._settings.query_params,
            timeout=httpx.Timeout(self._settings.timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            verify=self._ssl_context,
        )
        self._clients.append(client)
        return client

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request on a free client; the body is read before the client is freed.

        :raises RuntimeError: the shared client has been closed.
        """
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        # A request waits only once every client exists and is busy, so a new client never
        # overtakes a waiting request.
        if self._idle.empty() and len(self._clients) < MAX_CONNECTIONS:
            client = self._new_client()
        else:
            client = await self._idle.get()
        try:
            return await client.request(method, url, **kwargs)
        finally:
            self._idle.put_nowait(client)

    async def aclose(self) -> None:
        self._closed = True
        await asyncio.gather(*(client.aclose() for client in self._clients))


class _LoopClients:
    def __init__(self) -> None:
        self.clients: dict[ConnectionSettings, SharedClient] = {}
        self.guard: AsyncGenerator[None, None] | None = None

    async def aclose(self) -> None:
        clients, self.clients = list(self.clients.values()), {}
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)


_by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = WeakKeyDictionary()


async def _close_at_loop_shutdown(loop_clients: _LoopClients) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await loop_clients.aclose()


async def get_client(settings: ConnectionSettings) -> SharedClient:
    """The shared client for ``settings`` in the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    loop_clients = _by_loop.get(loop)
    if loop_clients is None:
        loop_clients = _by_loop[loop] = _LoopClients()
        loop_clients.guard = _close_at_loop_shutdown(loop_clients)
        # The first step registers the generator with the loop's async-generator hooks, so
        # ``loop.shutdown_asyncgens()`` closes it, and with it this loop's clients.
        await loop_clients.guard.asend(None)
    client = loop_clients.clients.get(settings)
    if client is None or client.is_closed:
        client = loop_clients.clients[settings] = SharedClient(settings)
    return client


async def aclose_client(settings: ConnectionSettings) -> None:
    """Close the running loop's shared client for ``settings``; the next call makes a new one."""
    loop_clients = _by_loop.get(asyncio.get_running_loop())
    client = loop_clients.clients.pop(settings, None) if loop_clients else None
    if client is not None:
        await client.aclose()
