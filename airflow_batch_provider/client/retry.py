"""How long to keep trying a request: one policy for the sync and async paths."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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

from airflow_batch_provider.client.errors import StaleConnectionError, TransientError

T = TypeVar("T")

DEFAULT_RETRY_TOTAL_SECONDS = 300.0
"""Default bound on the time one call may spend, from its first try to the start of its last."""


class ClientLogger(Protocol):
    """Where the client reports: a ``logging.Logger`` or Airflow's structured logger."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


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
    ``total_seconds`` after the first. Only :class:`TransientError` is retried. A try that
    met a kept-alive connection the server had just closed (:class:`StaleConnectionError`) is
    sent again at once on a new one, quietly: that is not a retry and is not logged.

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

    def _options(self, log: ClientLogger, total_seconds: float) -> dict[str, Any]:
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

    def call(self, attempt: Callable[[], T], log: ClientLogger) -> T:
        """Run ``attempt`` until it returns, fails for good, or the policy gives up."""

        def on_a_fresh_connection_if_stale() -> T:
            try:
                return attempt()
            except StaleConnectionError:
                return attempt()

        try:
            return Retrying(**self._options(log, self.total_seconds))(on_a_fresh_connection_if_stale)
        except TransientError as exc:
            raise exc.error from exc.__cause__

    async def acall(self, attempt: Callable[[], Awaitable[T]], log: ClientLogger) -> T:
        """The async twin of :meth:`call`: sleeps with ``asyncio.sleep``.

        The first try runs before tenacity is set up, since a triggerer pays that set-up on
        every poll of every batch and most calls succeed at once. A first try that fails is
        replayed as tenacity's first, with the time it took taken off ``total_seconds``: the
        retries are the same as :meth:`call`'s.
        """
        started = time.monotonic()

        async def on_a_fresh_connection_if_stale() -> T:
            try:
                return await attempt()
            except StaleConnectionError:
                return await attempt()

        try:
            return await on_a_fresh_connection_if_stale()
        except TransientError as exc:
            first_failure: TransientError | None = exc

        async def replay_then_attempt() -> T:
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await on_a_fresh_connection_if_stale()

        options = self._options(log, self.total_seconds - (time.monotonic() - started))
        try:
            return await AsyncRetrying(**options)(replay_then_attempt)
        except TransientError as exc:
            raise exc.error from exc.__cause__
