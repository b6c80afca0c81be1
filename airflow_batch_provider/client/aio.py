"""The non-blocking client of the Batches and Files APIs, on ``httpx``, for event loops (triggers)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from airflow_batch_provider.client.errors import (
    TransientError,
    check_answer,
    interrupted_error,
    unreachable_error,
)
from airflow_batch_provider.client.multipart import CHUNK_SIZE
from airflow_batch_provider.client.pool import aclose_shared_http_client, shared_http_client
from airflow_batch_provider.client.protocol import ModelT, parse_answer, segment
from airflow_batch_provider.client.retry import ClientLogger, RetryPolicy
from airflow_batch_provider.client.settings import ClientSettings
from airflow_batch_provider.models import Batch, BatchList, FileObject

_log = logging.getLogger(__name__)


class AsyncBatchClient:
    """Read and cancel batches without blocking the event loop.

    Every instance of one event loop with equal settings shares one pool of connections
    (:func:`~airflow_batch_provider.client.pool.shared_http_client`), so making one per
    trigger is cheap. Errors and retries follow the same policy as :class:`BatchClient`.

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

        async def attempt() -> ModelT:
            client = await shared_http_client(settings)
            try:
                response = await client.request(method, settings.url(path), **kwargs)
            except httpx.TransportError as exc:
                raise TransientError(unreachable_error(settings, action, exc)) from exc
            check_answer(settings, action, response.status_code, response.headers, response.content)
            return parse_answer(model, response, action, settings)

        return await self.retry_policy.acall(attempt, self.log)

    @contextlib.asynccontextmanager
    async def _stream(self, method: str, path: str) -> AsyncIterator[httpx.Response]:
        """A successful answer with its body unread; opening it is retried like :meth:`_call`."""
        settings = self.settings
        action = f"{method} {path}"

        async def attempt() -> tuple[contextlib.AbstractAsyncContextManager[httpx.Response], httpx.Response]:
            opening = (await shared_http_client(settings)).stream(method, settings.url(path))
            try:
                response = await opening.__aenter__()
                if response.status_code >= 400:
                    try:
                        body = await response.aread()
                    finally:
                        await opening.__aexit__(None, None, None)
            except httpx.TransportError as exc:
                raise TransientError(unreachable_error(settings, action, exc)) from exc
            if response.status_code >= 400:
                check_answer(settings, action, response.status_code, response.headers, body)
            return opening, response

        opening, response = await self.retry_policy.acall(attempt, self.log)
        try:
            yield response
        finally:
            await opening.__aexit__(None, None, None)
