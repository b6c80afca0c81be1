"""The upstream executor: each request goes to a real OpenAI-compatible server.

This turns the emulator into a Batch API for a server that lacks one.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from airflow_batch_provider.emulator.errors import APIError
from airflow_batch_provider.emulator.executors.base import JSON, Execution
from airflow_batch_provider.rules import parse_retry_after, should_retry

MAX_RETRY_WAIT = 30.0
"""Longest wait between two tries, in seconds, whatever ``Retry-After`` says."""
_BACKOFF = wait_exponential(multiplier=0.5, max=MAX_RETRY_WAIT)


class UpstreamExecutor:
    """Sends each request to a real OpenAI-compatible server and relays its answer.

    A request for ``/v1/<endpoint>`` goes to ``{base_url}/<endpoint>``: ``base_url`` is the
    server's API root as the SDK takes it (``https://api.openai.com/v1``,
    ``http://localhost:8000/v1``). Connection errors, timeouts and the answers
    :func:`~airflow_batch_provider.rules.should_retry` calls retryable (408, 429, 5xx, or what
    ``x-should-retry`` says) are retried with exponential backoff from 0.5 s, honouring
    ``Retry-After``; what still fails becomes an error :class:`Execution` (502 when the server
    could not be reached, 504 on a timeout).

    :param base_url: the upstream server's API root.
    :param api_key: sent as ``Authorization: Bearer``; None sends no such header.
    :param timeout: seconds to wait for one answer (default 600: long generations).
    :param max_retries: retries after the first attempt (default 2).
    :param max_connections: concurrent connections to the upstream server (default 64).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        max_retries: int = 2,
        max_connections: int = 64,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._max_retries = max_retries
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # One client per event loop: an httpx.AsyncClient must not cross loops.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def target(self, url: str) -> str:
        """The upstream URL that answers ``url``."""
        return self.base_url + (url[3:] if url.startswith("/v1/") else url)

    async def execute(self, url: str, body: JSON) -> Execution:
        """Relay ``body`` to the upstream server; never raises for a failed or unreachable server."""
        return await self._relay("POST", url, body)

    async def fetch(self, url: str) -> Execution:
        """Relay ``GET url`` (e.g. ``/v1/models``) to the upstream server, as :meth:`execute` does."""
        return await self._relay("GET", url, None)

    async def _relay(self, method: str, url: str, body: JSON | None) -> Execution:
        target = self.target(url)
        try:
            response = await self._send_with_retries(method, target, body)
        except httpx.TimeoutException:
            message = f"The upstream server did not answer {method} {target} in time."
            return Execution.of_error(APIError(504, message, type="server_error", code="upstream_timeout"))
        except httpx.TransportError as exc:
            message = f"The upstream server could not be reached for {method} {target}: {type(exc).__name__}."
            return Execution.of_error(
                APIError(502, message, type="server_error", code="upstream_unreachable")
            )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            message = (
                f"The upstream server answered {method} {target} with status {response.status_code} "
                "and a body that is not a JSON object."
            )
            status = response.status_code if response.is_error else 502
            return Execution.of_error(
                APIError(status, message, type="server_error", code="upstream_invalid_body")
            )
        usage = answer.get("usage")
        return Execution(response.status_code, answer, usage if isinstance(usage, dict) else None)

    async def _send_with_retries(self, method: str, target: str, body: JSON | None) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(_is_retryable),
            stop=stop_after_attempt(self._max_retries + 1),
            wait=_retry_wait,
            retry_error_callback=_last_outcome,
        )
        response: httpx.Response = await retrying(self._client().request, method, target, json=body)
        return response

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(headers=self._headers, timeout=self._timeout, limits=self._limits)
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the connections of the running event loop's client."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


def _is_retryable(response: httpx.Response) -> bool:
    return should_retry(response.status_code, response.headers)


def _retry_wait(retry_state: RetryCallState) -> float:
    """The server's ``Retry-After`` when it sends one, else exponential backoff from 0.5 s."""
    outcome = retry_state.outcome
    if outcome is not None and not outcome.failed:
        delay = parse_retry_after(outcome.result().headers)
        if delay is not None:
            return min(delay, MAX_RETRY_WAIT)
    return _BACKOFF(retry_state)


def _last_outcome(retry_state: RetryCallState) -> httpx.Response:
    """When retries run out: the last response, or the last transport error raised again."""
    assert retry_state.outcome is not None
    response: httpx.Response = retry_state.outcome.result()
    return response
