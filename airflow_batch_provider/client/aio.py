"""The non-blocking client of the Batches and Files APIs, on ``httpx``, for event loops (triggers)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from airflow_batch_provider.client.errors import check_answer, no_answer
from airflow_batch_provider.client.pool import aclose_shared_http_client, shared_http_client
from airflow_batch_provider.client.protocol import ModelT, parse_answer, segment
from airflow_batch_provider.client.retry import ClientLogger, RetryPolicy
from airflow_batch_provider.client.settings import ClientSettings
from airflow_batch_provider.models import Batch, FileObject

_log = logging.getLogger(__name__)


class AsyncBatchClient:
    """Read and cancel batches without blocking the event loop.

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

    async def get_file(self, file_id: str) -> FileObject:
        """Retrieve a file's metadata."""
        return await self._call(FileObject, "GET", f"/files/{segment(file_id)}")

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
