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
from collections.abc import AsyncGenerator
from typing import Any
from weakref import WeakKeyDictionary

import httpx

from airflow_batch_provider import __version__
from airflow_batch_provider.hooks._connection import ConnectionSettings

USER_AGENT = f"airflow-batch-provider/{__version__}"

#: Requests in flight (and connections) per client. A thousand triggers polling at once
#: take turns on these. Kept small on purpose: httpcore's pool does work proportional to
#: its connections (and to its queue) every time a request starts or ends. Measured here,
#: 1,000 concurrent polls at 20 ms latency: 16 connections, 2.1 s of CPU, 2.8-3.5 s wall;
#: 100 connections and no semaphore, over 7 s of CPU.
MAX_CONNECTIONS = 16


class SharedClient:
    """An ``httpx.AsyncClient`` with at most ``MAX_CONNECTIONS`` requests in flight.

    The requests beyond that wait on a semaphore rather than in httpcore's pool, which
    rescans every queued request against every connection whenever a request starts or
    ends: a deep queue there costs quadratic time.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.http = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT, **settings.secret_headers},
            params=settings.query_params,
            timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        )
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    @property
    def is_closed(self) -> bool:
        return self.http.is_closed

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request once a slot is free; the body is read before the slot is freed."""
        async with self._slots:
            return await self.http.request(method, url, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()


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
