"""The async HTTP connections of one connection settings in one event loop, shared by every caller.

A triggerer runs every trigger in one event loop; through :func:`shared_http_client` its
triggers of one connection share up to :data:`MAX_CONNECTIONS` keep-alive connections and one
TLS context, reused across polls. Why these numbers: ``benchmarks/README.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from airflow_batch_provider.client.loop_cache import loop_cache
from airflow_batch_provider.client.settings import ClientSettings

MAX_CONNECTIONS = 32
"""Connections (and requests in flight) per connection settings and event loop; more requests
wait their turn. They bound how many reads one loop completes per second."""


class SharedClient:
    """Up to :data:`MAX_CONNECTIONS` ``httpx`` clients of one connection each, lent to one request at a time.

    Not one client with a pool of :data:`MAX_CONNECTIONS`: whenever a request starts or ends,
    httpcore's pool checks every connection and rescans its queue, work that grows with the
    square of its connections and queue. Requests beyond the clients wait in a FIFO queue.
    Clients are made on demand, so a few callers use a single connection; they share one TLS
    context (loading the CA bundle is costly).

    :param settings: where the requests go and with which headers.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._clients: list[httpx.AsyncClient] = []
        # The most recently used client first: its connection is the likeliest still open.
        self._idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        # When each client last finished a request: its connection is kept alive until then
        # plus keepalive_expiry.
        self._last_used: dict[httpx.AsyncClient, float] = {}
        self._closed = False

    @functools.cached_property
    def _ssl_context(self) -> ssl.SSLContext:
        return httpx.create_ssl_context()

    def _new_client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            headers=self._settings.headers,
            params=self._settings.query_params,
            timeout=httpx.Timeout(self._settings.timeout),
            limits=httpx.Limits(
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=self._settings.keepalive_expiry,
            ),
            verify=self._ssl_context,
            trust_env=self._settings.uses_proxy_settings,
        )
        self._clients.append(client)
        return client

    @property
    def is_closed(self) -> bool:
        return self._closed

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[tuple[httpx.AsyncClient, bool]]:
        """A free client for one request, and whether its connection is kept alive from an earlier one.

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
        last_used = self._last_used.get(client)
        reused = last_used is not None and time.monotonic() - last_used < self._settings.keepalive_expiry
        try:
            yield client, reused
            self._last_used[client] = time.monotonic()
        except BaseException:
            self._last_used.pop(client, None)  # httpx closed its connection
            raise
        finally:
            self._idle.put_nowait(client)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request on a free client; the body is read before the client is freed."""
        async with self.lend() as (client, _):
            return await client.request(method, url, **kwargs)

    async def aclose(self) -> None:
        self._closed = True
        await asyncio.gather(*(client.aclose() for client in self._clients))


async def shared_http_client(settings: ClientSettings) -> SharedClient:
    """The running event loop's shared client for ``settings``, made on first use."""
    cache = await loop_cache()

    async def make() -> SharedClient:
        return SharedClient(settings)

    client = await cache.get(("http", settings), make)
    if client.is_closed:
        cache.pop(("http", settings))
        client = await cache.get(("http", settings), make)
    return client


async def aclose_shared_http_client(settings: ClientSettings) -> None:
    """Close the running loop's shared client for ``settings``; the next call makes a new one."""
    client = (await loop_cache()).pop(("http", settings))
    if client is not None:
        await client.aclose()
