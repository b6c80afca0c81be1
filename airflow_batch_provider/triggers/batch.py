"""Trigger that waits, in the triggerer's event loop, for a batch to reach a terminal status."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable
from functools import cached_property
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.expiry import batch_gone
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.models import Batch
from airflow_batch_provider.triggers.kill import (
    TRIGGERER_CALLS_ON_KILL,
    finish_despite_cancellation,
    stopped_by_user,
)
from airflow_batch_provider.utils import format_progress, is_transient

T = TypeVar("T")

#: Event ``status`` values: the batch ended (whatever its own status), the API refused to
#: answer for a reason waiting will not fix, or the deadline passed first.
EVENT_TERMINAL = "terminal"
EVENT_ERROR = "error"
EVENT_TIMEOUT = "timeout"

#: How long ``on_kill`` may spend cancelling; the triggerer's own bound is 30 s by default.
CANCEL_TIMEOUT = 20.0


async def within(deadline: float | None, read: Awaitable[T]) -> T:
    """``await read``, given up (``asyncio.TimeoutError``) at ``deadline`` (epoch seconds; None: never).

    A read that hangs, or whose retries run long, must not hold a trigger past its deadline.
    """
    if deadline is None:
        return await read
    return await asyncio.wait_for(read, max(0.0, deadline - time.time()))


async def cancel_batches(trigger: BaseTrigger, hook: OpenAIBatchHook, batch_ids: list[str]) -> None:
    """Cancel batches of a stopped task; a failure (409: one ended meanwhile) is only logged."""

    async def cancel(batch_id: str) -> None:
        try:
            batch = await asyncio.wait_for(hook.acancel_batch(batch_id), CANCEL_TIMEOUT)
        except (OpenAIBatchAPIError, asyncio.TimeoutError, ValueError) as error:
            trigger.log.warning("Could not cancel batch %s: %s", batch_id, error)
        else:
            trigger.log.info(
                "Cancelled batch %s: the task was stopped. It is now %s.", batch_id, batch.status
            )

    await asyncio.gather(*map(cancel, batch_ids))


async def cancel_if_stopped(trigger: BaseTrigger, hook: OpenAIBatchHook, batch_ids: list[str]) -> None:
    """Cancel the trigger's batches if a user stopped its task (see :func:`stopped_by_user`).

    Called from ``on_kill`` on Airflow 3.3+, and on the trigger's cancellation before; runs to its
    end even when Airflow cancels the trigger again meanwhile.
    """

    async def cancel_when_stopped() -> None:
        if await stopped_by_user(trigger):
            await cancel_batches(trigger, hook, batch_ids)

    await finish_despite_cancellation(cancel_when_stopped())


class OpenAIBatchTrigger(BaseTrigger):
    """Poll a batch until it is terminal, then fire one event carrying the final batch.

    Only async I/O runs here (the hook's ``aget_batch``): the triggerer's event loop is
    never blocked. Transient errors (no answer, 408, 429, 5xx) are logged and the
    wait goes on, backing off up to ``poll_interval``; an error waiting cannot fix (401,
    403, 404, ...) ends the wait with an error event saying why.

    The event's payload is ``{"status": "terminal" | "error" | "timeout", "batch_id",
    "message", "batch", "status_code"}`` where ``batch`` is the last batch seen as
    ``Batch.model_dump(mode="json")`` (None when none was read) and ``status_code`` the HTTP
    status of the error that ended the wait (None otherwise; 404: the batch is gone, see
    :func:`~airflow_batch_provider.expiry.batch_gone`).

    Built for a triggerer running thousands of them: the triggers of one event loop share one
    reading of each connection (made again every ``SETTINGS_MAX_AGE`` seconds of the hook)
    and one pool of HTTP connections per connection; reads start every
    ``poll_interval`` and the first one after a random part of it, so triggers started
    together do not poll in step. A progress line is logged at each read.

    :param conn_id: the OpenAI Batch connection. Only its id is serialized, never a secret.
    :param batch_id: the batch to wait for.
    :param poll_interval: seconds between two reads of the batch. Default 60.
    :param deadline: absolute time (epoch seconds) after which the trigger gives up with a
        timeout event, on time even while a read hangs. Absolute, so a trigger resumed on
        another triggerer keeps its original deadline. Default None: wait as long as the
        batch runs.
    :param cancel_on_kill: cancel the batch when a user stops the deferred task (marks it
        failed); never when it is cleared or marked success, nor when the triggerer restarts
        (see :mod:`airflow_batch_provider.triggers.kill`). Default True.
    """

    def __init__(
        self,
        conn_id: str,
        batch_id: str,
        poll_interval: float = 60.0,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.batch_id = batch_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "batch_id": self.batch_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(conn_id=self.conn_id)

    def _event(
        self, status: str, message: str, batch: Batch | None, status_code: int | None = None
    ) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "batch_id": self.batch_id,
                "message": message,
                "batch": batch.model_dump(mode="json") if batch is not None else None,
                "status_code": status_code,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async for event in self._wait():
                yield event
        except asyncio.CancelledError:
            if self.cancel_on_kill and not TRIGGERER_CALLS_ON_KILL:
                await cancel_if_stopped(self, self.hook, [self.batch_id])
            raise

    async def _wait(self) -> AsyncIterator[TriggerEvent]:
        batch: Batch | None = None
        # After a transient error the next read comes sooner, doubling up to poll_interval.
        retry_delay = min(1.0, self.poll_interval)
        # The first read waits a random part of poll_interval (the sensor has just looked), so
        # that triggers started together, as after a triggerer restart, poll spread out over
        # the interval rather than all at once, every interval; and within the first half of
        # the time left before the deadline, so that the read itself fits before it.
        spread = self.poll_interval
        if self.deadline is not None:
            spread = min(spread, max(self.deadline - time.time(), 0.0) / 2)
        await asyncio.sleep(random.uniform(0, spread))
        while True:
            try:
                await self.hook.aget_settings()
            except Exception as error:  # no such connection, or one the hook cannot use
                yield self._event(EVENT_ERROR, f"Cannot use connection {self.conn_id!r}: {error}", batch)
                return
            # Polls start every poll_interval, however long a read waits for its turn.
            poll_started = time.monotonic()
            try:
                batch = await within(self.deadline, self.hook.aget_batch(self.batch_id))
            except asyncio.TimeoutError:
                yield self._timeout_event(batch)
                return
            except OpenAIBatchAPIError as error:
                if not is_transient(error):
                    message = _stop_message(self.batch_id, error)
                    yield self._event(EVENT_ERROR, message, batch, error.status_code)
                    return
                self.log.warning("Reading batch %s failed, will retry: %s", self.batch_id, error)
                delay = retry_delay
                retry_delay = min(retry_delay * 2, self.poll_interval)
            else:
                self.log.info(format_progress(batch))
                if batch.status.is_terminal:
                    yield self._event(EVENT_TERMINAL, f"Batch {self.batch_id} is {batch.status}.", batch)
                    return
                delay = max(0.0, poll_started + self.poll_interval - time.monotonic())
                retry_delay = min(1.0, self.poll_interval)

            if self.deadline is not None and time.time() >= self.deadline:
                yield self._timeout_event(batch)
                return
            await asyncio.sleep(self._until_deadline(delay))

    def _timeout_event(self, batch: Batch | None) -> TriggerEvent:
        status = batch.status if batch is not None else "unknown"
        return self._event(
            EVENT_TIMEOUT, f"Batch {self.batch_id} is still {status} at the sensor's deadline.", batch
        )

    def _until_deadline(self, seconds: float) -> float:
        """``seconds``, or less if the deadline comes sooner (0 once it has passed)."""
        if self.deadline is None:
            return seconds
        return max(0.0, min(seconds, self.deadline - time.time()))

    async def on_kill(self) -> None:
        """Airflow 3.3+, on a user's action: cancel the batch only if the task was stopped, not cleared."""
        if self.cancel_on_kill:
            await cancel_if_stopped(self, self.hook, [self.batch_id])


def _stop_message(batch_id: str, error: OpenAIBatchAPIError) -> str:
    """Why a wait ends on an error that waiting cannot fix; a 404 says the batch is gone."""
    reason = batch_gone(batch_id, error) if error.status_code == 404 else error
    return f"Stopped waiting for batch {batch_id}: {reason}"


def format_parts_progress(batches: list[Batch]) -> str:
    """One log line about where several batches stand together.

    ``3 batch(es): 2 in_progress, 1 completed; 61,000/120,000 requests done (50.8%), 12 failed``
    """
    statuses: dict[str, int] = {}
    total = done = failed = 0
    for batch in batches:
        statuses[str(batch.status)] = statuses.get(str(batch.status), 0) + 1
        if batch.request_counts is not None:
            total += batch.request_counts.total
            done += batch.request_counts.completed + batch.request_counts.failed
            failed += batch.request_counts.failed
    line = f"{len(batches)} batch(es): " + ", ".join(
        f"{count} {status}" for status, count in statuses.items()
    )
    if total:
        line += f"; {done:,}/{total:,} requests done ({done / total:.1%}), {failed:,} failed"
    return line


class OpenAIBatchesTrigger(BaseTrigger):
    """Poll several batches until every one is terminal, then fire one event carrying them all.

    One trigger for all the batches (parts) of one task, so a task that splits its input
    into many batches still holds one trigger and no worker slot. Each poll reads the
    batches not yet terminal, at once; transient errors are ridden out as in
    :class:`OpenAIBatchTrigger`, and an error waiting cannot fix ends the wait.

    With no batches it is a timer: it fires when ``not_before`` comes (used to wait before
    a retry round, or for the organization's enqueued-token limit to free up).

    The event's payload is ``{"status": "terminal" | "error" | "timeout", "message",
    "batches": {batch_id: Batch JSON}, "state": state, "status_code"}`` (the batches as last
    read, ``state`` handed back as given, and the HTTP status of the error that ended the wait,
    None otherwise).

    :param conn_id: the OpenAI Batch connection. Only its id is serialized, never a secret.
    :param batch_ids: the batches to wait for.
    :param poll_interval: seconds between two reads. Default 60.
    :param deadline: absolute time (epoch seconds) after which the trigger gives up with a
        timeout event; default None: no deadline.
    :param not_before: absolute time (epoch seconds) before which the event does not fire,
        even when every batch is terminal; default None.
    :param cancel_on_kill: cancel every batch not yet terminal when a user stops the deferred
        task (marks it failed); never when it is cleared or marked success, nor when the
        triggerer restarts (see :mod:`airflow_batch_provider.triggers.kill`). Default True.
    :param state: what the task needs to go on (JSON, no secret), handed back in the event.
        It travels with the trigger because ``dag.test()`` drops ``defer(kwargs=...)``.
    """

    def __init__(
        self,
        conn_id: str,
        batch_ids: list[str],
        poll_interval: float = 60.0,
        deadline: float | None = None,
        not_before: float | None = None,
        cancel_on_kill: bool = True,
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.batch_ids = list(batch_ids)
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.not_before = not_before
        self.cancel_on_kill = cancel_on_kill
        self.state = state
        self._last: dict[str, Batch] = {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "batch_ids": self.batch_ids,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "not_before": self.not_before,
                "cancel_on_kill": self.cancel_on_kill,
                "state": self.state,
            },
        )

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(conn_id=self.conn_id)

    def _event(self, status: str, message: str, status_code: int | None = None) -> TriggerEvent:
        batches = {batch_id: batch.model_dump(mode="json") for batch_id, batch in self._last.items()}
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "batches": batches,
                "state": self.state,
                "status_code": status_code,
            }
        )

    def _unfinished(self) -> list[str]:
        return [
            batch_id
            for batch_id in self.batch_ids
            if batch_id not in self._last or not self._last[batch_id].status.is_terminal
        ]

    async def _poll(self) -> tuple[bool, tuple[str, int | None] | None]:
        """Read every unfinished batch once: ``(whether a read failed for now, why to stop or None)``.

        Why to stop is ``(message, HTTP status)``.
        """

        async def read(batch_id: str) -> Batch | OpenAIBatchAPIError:
            try:
                return await self.hook.aget_batch(batch_id)
            except OpenAIBatchAPIError as error:
                return error

        unfinished = self._unfinished()
        transient = False
        for batch_id, answer in zip(unfinished, await asyncio.gather(*map(read, unfinished)), strict=True):
            if isinstance(answer, Batch):
                self._last[batch_id] = answer
            elif is_transient(answer):
                self.log.warning("Reading batch %s failed, will retry: %s", batch_id, answer)
                transient = True
            else:
                return transient, (_stop_message(batch_id, answer), answer.status_code)
        if self._last:
            self.log.info(format_parts_progress(list(self._last.values())))
        return transient, None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async for event in self._wait():
                yield event
        except asyncio.CancelledError:
            if self.cancel_on_kill and not TRIGGERER_CALLS_ON_KILL:
                await cancel_if_stopped(self, self.hook, self._unfinished())
            raise

    async def _wait(self) -> AsyncIterator[TriggerEvent]:
        retry_delay = min(1.0, self.poll_interval)
        while True:
            poll_started = time.monotonic()
            transient = False
            if self._unfinished():
                try:
                    await self.hook.aget_settings()
                except Exception as error:  # no such connection, or one the hook cannot use
                    yield self._event(EVENT_ERROR, f"Cannot use connection {self.conn_id!r}: {error}")
                    return
                try:
                    transient, stop = await within(self.deadline, self._poll())
                except asyncio.TimeoutError:
                    yield self._timeout_event()
                    return
                if stop is not None:
                    yield self._event(EVENT_ERROR, *stop)
                    return
            now = time.time()
            if not self._unfinished():
                if self.not_before is None or now >= self.not_before:
                    yield self._event(EVENT_TERMINAL, f"{len(self.batch_ids)} batch(es) ended.")
                    return
                delay = self.not_before - now
            elif transient:
                delay, retry_delay = retry_delay, min(retry_delay * 2, self.poll_interval)
            else:
                delay, retry_delay = (
                    poll_started + self.poll_interval - time.monotonic(),
                    min(1.0, self.poll_interval),
                )
            if self.deadline is not None and now >= self.deadline:
                yield self._timeout_event()
                return
            await asyncio.sleep(self._until_deadline(delay))

    def _timeout_event(self) -> TriggerEvent:
        running = len(self._unfinished())
        return self._event(EVENT_TIMEOUT, f"{running} batch(es) still running at the deadline.")

    def _until_deadline(self, seconds: float) -> float:
        if self.deadline is None:
            return max(0.0, seconds)
        return max(0.0, min(seconds, self.deadline - time.time()))

    async def on_kill(self) -> None:
        """Airflow 3.3+, on a user's action: cancel the live batches only if the task was stopped."""
        if self.cancel_on_kill:
            await cancel_if_stopped(self, self.hook, self._unfinished())
