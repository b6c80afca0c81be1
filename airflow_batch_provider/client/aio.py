"""The non-blocking client of the Batches and Files APIs, on ``httpx``, for event loops (triggers, the UI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from airflow_batch_provider.client.errors import check_answer, interrupted_error, no_answer
from airflow_batch_provider.client.multipart import CHUNK_SIZE
from airflow_batch_provider.client.pool import aclose_shared_http_client, shared_http_client
from airflow_batch_provider.client.protocol import ModelT, parse_answer, segment
from airflow_batch_provider.client.retry import ClientLogger, RetryPolicy
from airflow_batch_provider.client.settings import ClientSettings
from airflow_batch_provider.models import Batch, BatchList, FileObject

_log = logging.getLogger(__name__)


class AsyncBatchClient:
    """Read and cancel batches, and read files, without blocking the event loop.

    Every instance of one event loop with equal settings shares one pool of connections
    (:func:`~airflow_batch_provider.client.pool.shared_http_client`), so making one per
    trigger is cheap. Errors, retries, redirects (never followed) and the bound on each try
    (``timeout``, end to end) follow the same policy as :class:`BatchClient`.

    :param settings: where to send requests, with which key.
    :param log: where retries are reported (default: this module's logger).
    """

    def __init__(self, settings: ClientSettings, log: ClientLogger | None = None) -> None:
        self.settings = settings
        self.log: ClientLogger = log or _log
        self.retry_policy = RetryPolicy(max_retries=settings.max_retries)

    async def get_batch(self, batch_id: str) -> Batch:
        """Retrieve a batch."""
        return await self._call(Batch, "GET", f"/batches/{segment(batch_id)}")

    async def cancel_batch(self, batch_id: str) -> Batch:
        """Ask the API to cancel a batch; it answers ``cancelling`` and keeps partial results."""
        return await self._call(Batch, "POST", f"/batches/{segment(batch_id)}/cancel")

    async def list_batches_page(self, limit: int = 100, after: str | None = None) -> BatchList:
        """One page of the account's batches, newest first.

        :param limit: batches per page (default 100, the API's maximum).
        :param after: the id of the last batch of the previous page; None (default) for the first.
        """
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return await self._call(BatchList, "GET", "/batches", params=params)

    async def get_file(self, file_id: str) -> FileObject:
        """Retrieve a file's metadata."""
        return await self._call(FileObject, "GET", f"/files/{segment(file_id)}")

    async def iter_file_content(
        self, file_id: str, chunk_size: int = CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        """A file's content, chunk by chunk, as it arrives (memory use does not grow with its size).

        Opening the answer is retried like any request; an answer cut off once its bytes flow
        raises :class:`OpenAIBatchAPIError`. Close the iterator when stopping early
        (``contextlib.aclosing``): that frees its connection.

        :param file_id: the file, e.g. a batch's ``error_file_id``.
        :param chunk_size: most bytes per chunk (default 1 MiB).
        """
        action = f"GET /files/{file_id}/content"
        async with self._stream("GET", f"/files/{segment(file_id)}/content") as response:
            try:
                async for chunk in response.aiter_bytes(chunk_size):
                    yield chunk
            except httpx.TransportError as exc:
                raise interrupted_error(self.settings, action, exc) from exc

    async def read_file_head(self, file_id: str, max_bytes: int = 65_536) -> bytes:
        """The first ``max_bytes`` of a file's content (all of it when shorter); the rest is not read.

        :param file_id: the file, e.g. a batch's ``error_file_id``.
        :param max_bytes: most bytes returned (default 64 KiB).
        """
        head = bytearray()
        async with contextlib.aclosing(self.iter_file_content(file_id, min(max_bytes, CHUNK_SIZE))) as chunks:
            async for chunk in chunks:
                head += chunk
                if len(head) >= max_bytes:
                    break
        return bytes(head[:max_bytes])

    async def aclose(self) -> None:
        """Close the shared connections of these settings in the running event loop."""
        await aclose_shared_http_client(self.settings)

    async def _call(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> ModelT:
        settings = self.settings
        action = f"{method} {path}"
        url = settings.url(path)

        async def attempt() -> ModelT:
            shared = await shared_http_client(settings)
            async with shared.lend() as (client, reused):
                try:
                    # The whole try, not each read, is bounded by the timeout.
                    response = await asyncio.wait_for(client.request(method, url, **kwargs), settings.timeout)
                except asyncio.TimeoutError as exc:
                    raise no_answer(settings, action, exc, reused=reused, timed_out=settings.timeout) from exc
                except httpx.TransportError as exc:
                    raise no_answer(settings, action, exc, reused=reused, timed_out=None) from exc
            check_answer(settings, action, response.status_code, response.headers, response.content, url)
            return parse_answer(model, response, action, settings)

        return await self.retry_policy.acall(attempt, self.log)

    @contextlib.asynccontextmanager
    async def _stream(self, method: str, path: str) -> AsyncIterator[httpx.Response]:
        """A successful answer with its body unread; opening it (up to its headers) is retried like
        :meth:`_call` and bounded by the timeout; each read after that by the timeout too."""
        settings = self.settings
        action = f"{method} {path}"
        url = settings.url(path)

        async def attempt() -> tuple[contextlib.AsyncExitStack, httpx.Response]:
            stack = contextlib.AsyncExitStack()
            shared = await shared_http_client(settings)
            client, reused = await stack.enter_async_context(shared.lend())
            try:
                opening = stack.enter_async_context(client.stream(method, url))
                response = await asyncio.wait_for(opening, settings.timeout)
                body = await response.aread() if response.status_code >= 300 else b""
            except asyncio.TimeoutError as exc:
                await stack.aclose()
                raise no_answer(settings, action, exc, reused=reused, timed_out=settings.timeout) from exc
            except httpx.TransportError as exc:
                await stack.aclose()
                raise no_answer(settings, action, exc, reused=reused, timed_out=None) from exc
            if response.status_code >= 300:
                await stack.aclose()
                check_answer(settings, action, response.status_code, response.headers, body, url)
            return stack, response

        stack, response = await self.retry_policy.acall(attempt, self.log)
        async with stack:
            yield response
