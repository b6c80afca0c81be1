"""What the code running in one event loop shares: made once, closed when the loop shuts down.

A triggerer runs every trigger in one event loop. Its triggers share, through this cache, one
pool of HTTP connections per connection settings and one reading of each Airflow connection,
instead of a TLS handshake per poll and a connection lookup per trigger.

Nothing here may outlive its loop (an ``httpx.AsyncClient`` is bound to the loop it first ran
in), so there is one cache per loop. A loop's cache is closed when the loop shuts down through
``asyncio.run`` (which finalizes async generators before closing the loop; a guard generator
per loop does the closing): every value with an ``aclose()`` is closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

T = TypeVar("T")


class LoopCache:
    """Values of one event loop, by key, each made once (and again once older than asked)."""

    def __init__(self) -> None:
        # key -> (when it was made, the value or the future making it)
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._guard: AsyncGenerator[None, None] | None = None

    async def get(self, key: Hashable, make: Callable[[], Awaitable[T]], max_age: float | None = None) -> T:
        """The value under ``key``, made by ``make()`` if there is none yet or it is too old.

        Callers that ask while the value is being made wait for that one making. A making
        that fails is forgotten, so the next caller tries again.

        :param key: what the value is for, e.g. ``("settings", conn_id)``.
        :param make: makes the value (awaited once, however many callers wait for it).
        :param max_age: seconds after which the value is made again; None keeps it for good.
        """
        made_at, entry = self._entries.get(key, (0.0, None))
        fresh = max_age is None or time.monotonic() - made_at < max_age
        if entry is not None and not isinstance(entry, asyncio.Future) and fresh:
            return entry
        if not isinstance(entry, asyncio.Future):
            made_at, entry = time.monotonic(), asyncio.ensure_future(make())
            self._entries[key] = (made_at, entry)
        try:
            value = await asyncio.shield(entry)
        except BaseException:
            if entry.done() and self._entries.get(key, (0.0, None))[1] is entry:
                del self._entries[key]
            raise
        # Keep the value, not the future: a future holds its loop, the cache's weak key.
        if self._entries.get(key, (0.0, None))[1] is entry:
            self._entries[key] = (made_at, value)
        return value

    def pop(self, key: Hashable) -> Any:
        """Remove the value under ``key`` and return it (None if there was none)."""
        _, entry = self._entries.pop(key, (0.0, None))
        return None if isinstance(entry, asyncio.Future) else entry

    async def aclose(self) -> None:
        """Close every value that has ``aclose()``, and forget them all."""
        entries, self._entries = list(self._entries.values()), {}
        closers = [value.aclose() for _, value in entries if hasattr(value, "aclose")]
        await asyncio.gather(*closers, return_exceptions=True)


_by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, LoopCache] = WeakKeyDictionary()


async def _close_at_loop_shutdown(cache: LoopCache) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        _by_loop.pop(asyncio.get_running_loop(), None)
        await cache.aclose()


async def loop_cache() -> LoopCache:
    """The running event loop's cache, made on first use."""
    loop = asyncio.get_running_loop()
    cache = _by_loop.get(loop)
    if cache is None:
        cache = _by_loop[loop] = LoopCache()
        cache._guard = _close_at_loop_shutdown(cache)
        # The first step registers the generator with the loop's async-generator hooks, so
        # ``loop.shutdown_asyncgens()`` closes it, and with it this loop's values.
        await cache._guard.asend(None)
    return cache
