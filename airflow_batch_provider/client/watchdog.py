"""A deadline for a blocking ``requests`` call, however the server dribbles its answer.

``requests`` (urllib3) bounds each socket read, not a whole request: a server sending a byte
every half second keeps a call alive for ever. :class:`Watch` ends it: the connection a request
goes out on registers itself with the watch of the calling thread, and when the deadline
passes the watch shuts that socket down, which ends any read or write blocked on it.

The same registration tells whether the request went out on a connection kept alive from an
earlier one (:attr:`Watch.reused`): a kept-alive connection closed by the server just as it is
reused is retried quietly (:class:`~airflow_batch_provider.client.errors.StaleConnectionError`).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from airflow_batch_provider.client.deadline import Deadline

_watching: ContextVar[Watch | None] = ContextVar("airflow_batch_provider_watch", default=None)


class Watch:
    """Shut the socket of the request in flight in this thread once ``deadline`` passes.

    Use as a context manager around everything one try does, reading the answer included.

    :param deadline: when the try must be over.
    """

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.fired = False
        self.reused = False
        self._connection: HTTPConnection | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(deadline.left(), self._fire)
        self._timer.daemon = True

    def attach(self, connection: HTTPConnection, reused: bool) -> None:
        """Called by the connection a request of this try goes out on."""
        with self._lock:
            self._connection = connection
            self.reused = reused

    def _fire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.fired = True
            sock = self._connection.sock if self._connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Watch:
        self._token = _watching.set(self)
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._timer.cancel()
            self._closed = True  # a late firing must not touch a connection back in the pool
            self._connection = None
        _watching.reset(self._token)


class _Watched:
    """Mixed into urllib3's connections: tell the calling thread's watch about each request."""

    sock: socket.socket | None
    _requests_sent = 0

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = _watching.get()
        if watch is not None:
            watch.attach(self, reused=self._requests_sent > 0)  # type: ignore[arg-type]
        self._requests_sent += 1
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """A ``requests`` transport whose connections register with the calling thread's :class:`Watch`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
