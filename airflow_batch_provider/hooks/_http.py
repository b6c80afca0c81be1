"""The HTTP policy shared by the hook's sync (requests) and async (httpx) paths.

One place decides which answers are errors, what their messages say, which failures
are retried, and how long to wait between tries.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from airflow_batch_provider import __version__
from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.hooks._connection import ConnectionSettings

T = TypeVar("T")

USER_AGENT = f"airflow-batch-provider/{__version__}"

#: Default bound on the time one call may spend, from its first try to the start of its last.
DEFAULT_RETRY_TOTAL_SECONDS = 300.0

_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_*.\-]{3,})")


class WarningLogger(Protocol):
    """Where retries are reported: a ``logging.Logger`` or Airflow's structured logger."""

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


class TransientError(Exception):
    """A failure worth another try; carries the error to raise if none is left.

    :param error: the error the caller gets when retries run out.
    :param retry_after: seconds the server asked us to wait, if it said.
    """

    def __init__(self, error: OpenAIBatchAPIError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def request_headers(settings: ConnectionSettings) -> dict[str, str]:
    """The headers of every request: user agent, key and account. They carry the key: never log them."""
    return {"User-Agent": USER_AGENT, **settings.secret_headers}


def is_retryable_status(status_code: int) -> bool:
    """408, 429 and every 5xx are worth another try; other errors are not."""
    return status_code in (408, 429) or status_code >= 500


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait before the next try, from ``retry-after-ms`` or else ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Returns None when neither
    header is present or parseable.
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def api_error(
    settings: ConnectionSettings,
    action: str,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    retry_after: float | None = None,
) -> OpenAIBatchAPIError:
    """Build the error for an HTTP error answer.

    :param settings: the connection, named in the advice.
    :param action: what was attempted, e.g. ``GET /batches/batch_abc``.
    :param status_code: the HTTP status of the answer.
    :param headers: the answer's headers (case-insensitive mapping).
    :param body: the answer's body; the live API sends ``{"error": {...}}``.
    :param retry_after: seconds the server asked to wait before a retry, if it said.
    """
    details = _error_details(body)
    server_message = redact(str(details.get("message") or "").strip(), settings)
    message = f"{action} failed with HTTP {status_code}"
    if server_message:
        message += f": {server_message}"
    advice = _advice(settings, status_code)
    if advice:
        message = f"{message.rstrip('.')}. {advice}"
    if retry_after is not None:
        message += f" (the server asked to wait {retry_after:g} s)"
    if not message.endswith((".", "!", "?")):
        message += "."
    return OpenAIBatchAPIError(
        message,
        status_code=status_code,
        type=_as_text(details.get("type")),
        code=_as_text(details.get("code")),
        param=_as_text(details.get("param")),
        request_id=headers.get("x-request-id"),
    )


def check_answer(
    settings: ConnectionSettings, action: str, status_code: int, headers: Mapping[str, str], body: bytes
) -> None:
    """Raise for an error answer: :class:`TransientError` if worth retrying, else the API error."""
    if status_code < 400:
        return
    should_retry = headers.get("x-should-retry")
    if should_retry == "true" or (should_retry != "false" and is_retryable_status(status_code)):
        retry_after = parse_retry_after(headers)
        raise TransientError(
            api_error(settings, action, status_code, headers, body, retry_after), retry_after
        )
    raise api_error(settings, action, status_code, headers, body)


def unreachable_error(settings: ConnectionSettings, action: str, exc: BaseException) -> OpenAIBatchAPIError:
    """The error for a request that got no answer: refused, reset, timed out, unknown host."""
    return OpenAIBatchAPIError(
        f"{action} got no answer from {settings.base_url}: {describe_transport_error(exc)}. "
        f"Check the Base URL of connection {settings.conn_id!r} and that the server is up."
    )


def interrupted_error(settings: ConnectionSettings, action: str, exc: BaseException) -> OpenAIBatchAPIError:
    """The error for an answer whose body was cut off (connection dropped mid-answer)."""
    return OpenAIBatchAPIError(
        f"{action}: the answer from {settings.base_url} was cut off ({describe_transport_error(exc)}). "
        "Nothing partial was kept; retry later."
    )


def describe_transport_error(exc: BaseException) -> str:
    """A short reason for a transport failure, e.g. ``Connection refused`` or ``timed out``.

    requests and httpx wrap the socket error in several layers whose messages repeat the
    whole URL; the innermost operating-system error says it best.
    """
    if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower():
        return "timed out"
    seen: set[int] = set()
    current: BaseException | None = exc
    innermost: BaseException = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        innermost = current
        if isinstance(current, OSError) and (current.errno or current.strerror):
            # asyncio words a refused connection "Connect call failed (...)": use the errno's name.
            if current.errno and current.errno > 0 and not isinstance(current, socket.gaierror):
                return os.strerror(current.errno)
            return str(current.strerror)
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        nested = reason if isinstance(reason, BaseException) else None
        if nested is None and current.args and isinstance(current.args[0], BaseException):
            nested = current.args[0]  # requests wraps urllib3's error as its first argument
        current = nested or current.__cause__ or current.__context__
    text = str(innermost)
    return text.rsplit(": ", 1)[-1] if text else type(innermost).__name__


def redact(text: str, settings: ConnectionSettings) -> str:
    """Remove the API key, and anything shaped like an OpenAI key, from a server's message."""
    if settings.api_key is not None:
        key = settings.api_key.get_secret_value()
        if key:
            text = text.replace(key, "***")
    return _KEY_LIKE.sub("sk-***", text)


def _error_details(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
    text = body[:300].decode("utf-8", "replace").strip()
    return {"message": text} if text else {}


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _advice(settings: ConnectionSettings, status_code: int) -> str | None:
    conn = repr(settings.conn_id)
    if status_code == 401:
        return f"Check the API key of connection {conn}"
    if status_code == 403:
        return f"Check that the API key of connection {conn} may use this organization, project and API"
    if status_code == 404:
        return (
            f"Check the id, and the Base URL of connection {conn} ({settings.base_url}; "
            "it usually ends in /v1)"
        )
    if status_code == 429:
        return "The server is rate limiting: run fewer requests at once, or retry later"
    if status_code >= 500:
        return "The server had a problem; retry later"
    return None


class _wait_retry_after(wait_base):
    """Wait as long as the server asked; otherwise back off exponentially with jitter."""

    def __init__(self, backoff: wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self.backoff(retry_state))


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry a request; one policy for the sync and async paths.

    A call is tried at most ``max_retries + 1`` times, and no try starts more than
    ``total_seconds`` after the first. Only :class:`TransientError` is retried.

    :param max_retries: retries after the first try (default 5, from the connection).
    :param total_seconds: bound on the whole call, retries included (default 300 s). A
        ``Retry-After`` that would end past it is not waited for: the call fails at once.
    :param backoff_initial: the first backoff, doubled at each retry (default 0.5 s).
    :param backoff_max: the longest backoff (default 8 s); jitter of up to
        ``backoff_initial`` is added.
    """

    max_retries: int = 5
    total_seconds: float = DEFAULT_RETRY_TOTAL_SECONDS
    backoff_initial: float = 0.5
    backoff_max: float = 8.0

    def _options(self, log: WarningLogger, total_seconds: float) -> dict[str, Any]:
        def log_retry(retry_state: RetryCallState) -> None:
            outcome = retry_state.outcome
            exc = outcome.exception() if outcome is not None else None
            log.warning(
                "%s Retry %d of %d in %.1f s.",
                exc.error.message if isinstance(exc, TransientError) else exc,
                retry_state.attempt_number,
                self.max_retries,
                retry_state.upcoming_sleep,
            )

        return {
            "stop": stop_after_attempt(self.max_retries + 1) | stop_before_delay(total_seconds),
            "wait": _wait_retry_after(
                wait_exponential(multiplier=self.backoff_initial, max=self.backoff_max)
                + wait_random(0, self.backoff_initial)
            ),
            "retry": retry_if_exception_type(TransientError),
            "before_sleep": log_retry,
            "reraise": True,
        }

    def call(self, attempt: Callable[[], T], log: WarningLogger) -> T:
        """Run ``attempt`` until it returns, fails for good, or the policy gives up."""
        try:
            return Retrying(**self._options(log, self.total_seconds))(attempt)
        except TransientError as exc:
            raise exc.error from exc.__cause__

    async def acall(self, attempt: Callable[[], Awaitable[T]], log: WarningLogger) -> T:
        """The async twin of :meth:`call`: sleeps with ``asyncio.sleep``.

        The first try runs before tenacity is set up: that costs about 0.1 ms of CPU per
        call, which a triggerer pays on every poll of every batch, and most calls succeed
        at once. A first try that fails is replayed as tenacity's first, with the time it
        took taken off ``total_seconds``: the retries are the same as :meth:`call`'s.
        """
        started = time.monotonic()
        try:
            return await attempt()
        except TransientError as exc:
            first_failure: TransientError | None = exc

        async def replay_then_attempt() -> T:
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await attempt()

        options = self._options(log, self.total_seconds - (time.monotonic() - started))
        try:
            return await AsyncRetrying(**options)(replay_then_attempt)
        except TransientError as exc:
            raise exc.error from exc.__cause__
