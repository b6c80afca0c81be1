"""Shared ``httpx.AsyncClient`` instances: one per connection settings and event loop.

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
from weakref import WeakKeyDictionary

import httpx

from airflow_batch_provider import __version__
from airflow_batch_provider.hooks._connection import ConnectionSettings

USER_AGENT = f"airflow-batch-provider/{__version__}"

#: Concurrent connections per client. A thousand triggers polling at once queue for these
#: (each poll holds one for one round trip) instead of opening a thousand sockets.
MAX_CONNECTIONS = 100


class _LoopClients:
    def __init__(self) -> None:
        self.clients: dict[ConnectionSettings, httpx.AsyncClient] = {}
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


def new_client(settings: ConnectionSettings) -> httpx.AsyncClient:
    """A client sending the connection's headers and query parameters with every request."""
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, **settings.secret_headers},
        params=settings.query_params,
        timeout=httpx.Timeout(settings.timeout),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
    )


async def get_client(settings: ConnectionSettings) -> httpx.AsyncClient:
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
        client = loop_clients.clients[settings] = new_client(settings)
    return client


async def aclose_client(settings: ConnectionSettings) -> None:
    """Close the running loop's shared client for ``settings``; the next call makes a new one."""
    loop_clients = _by_loop.get(asyncio.get_running_loop())
    client = loop_clients.clients.pop(settings, None) if loop_clients else None
    if client is not None:
        await client.aclose()
