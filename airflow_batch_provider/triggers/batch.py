"""Trigger that waits, in the triggerer's event loop, for a batch to reach a terminal status."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.models import Batch
from airflow_batch_provider.utils import format_progress, is_transient

#: Event ``status`` values: the batch ended (whatever its own status), the API refused to
#: answer for a reason waiting will not fix, or the deadline passed first.
EVENT_TERMINAL = "terminal"
EVENT_ERROR = "error"
EVENT_TIMEOUT = "timeout"

#: How long ``on_kill`` may spend cancelling; the triggerer's own bound is 30 s by default.
CANCEL_TIMEOUT = 20.0


class OpenAIBatchTrigger(BaseTrigger):
    """Poll a batch until it is terminal, then fire one event carrying the final batch.

    Only async I/O runs here (the hook's ``aget_batch``): the triggerer's event loop is
    never blocked. Transient errors (no answer, 408, 429, 5xx) are logged and the
    wait goes on, backing off up to ``poll_interval``; an error waiting cannot fix (401,
    403, 404, ...) ends the wait with an error event saying why.

    The event's payload is ``{"status": "terminal" | "error" | "timeout", "batch_id",
    "message", "batch"}`` where ``batch`` is the last batch seen as
    ``Batch.model_dump(mode="json")`` (None when none was read).

    Built for a triggerer running thousands of them: the triggers of one event loop share one
    reading of each connection (made again every ``SETTINGS_MAX_AGE`` seconds of the hook)
    and one pool of HTTP connections per connection; reads start every
    ``poll_interval`` and the first one after a random part of it, so triggers started
    together do not poll in step. A progress line is logged at each read.

    :param conn_id: the OpenAI Batch connection. Only its id is serialized, never a secret.
    :param batch_id: the batch to wait for.
    :param poll_interval: seconds between two reads of the batch. Default 60.
    :param deadline: absolute time (epoch seconds) after which the trigger gives up with a
        timeout event. Absolute, so a trigger resumed on another triggerer keeps its
        original deadline. Default None: wait as long as the batch runs.
    :param cancel_on_kill: cancel the batch when a user kills, clears or marks the deferred
        task (``on_kill``, Airflow 3.3+; on older versions the batch keeps running).
        Default True.
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

    def _event(self, status: str, message: str, batch: Batch | None) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "batch_id": self.batch_id,
                "message": message,
                "batch": batch.model_dump(mode="json") if batch is not None else None,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        batch: Batch | None = None
        # After a transient error the next read comes sooner, doubling up to poll_interval.
        retry_delay = min(1.0, self.poll_interval)
        # The first read waits a random part of poll_interval (the sensor has just looked), so
        # that triggers started together, as after a triggerer restart, poll spread out over
        # the interval rather than all at once, every interval.
        await asyncio.sleep(random.uniform(0, self._until_deadline(self.poll_interval)))
        while True:
            try:
                await self.hook.aget_settings()
            except Exception as error:  # no such connection, or one the hook cannot use
                yield self._event(EVENT_ERROR, f"Cannot use connection {self.conn_id!r}: {error}", batch)
                return
            # Polls start every poll_interval, however long a read waits for its turn.
            poll_started = time.monotonic()
            try:
                batch = await self.hook.aget_batch(self.batch_id)
            except OpenAIBatchAPIError as error:
                if not is_transient(error):
                    yield self._event(
                        EVENT_ERROR, f"Stopped waiting for batch {self.batch_id}: {error}", batch
                    )
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
                status = batch.status if batch is not None else "unknown"
                yield self._event(
                    EVENT_TIMEOUT, f"Batch {self.batch_id} is still {status} at the sensor's deadline.", batch
                )
                return
            await asyncio.sleep(self._until_deadline(delay))

    def _until_deadline(self, seconds: float) -> float:
        """``seconds``, or less if the deadline comes sooner (0 once it has passed)."""
        if self.deadline is None:
            return seconds
        return max(0.0, min(seconds, self.deadline - time.time()))

    async def on_kill(self) -> None:
        """Cancel the batch when a user kills the deferred task (Airflow 3.3+)."""
        if not self.cancel_on_kill:
            return
        try:
            batch = await asyncio.wait_for(self.hook.acancel_batch(self.batch_id), CANCEL_TIMEOUT)
        except (OpenAIBatchAPIError, asyncio.TimeoutError, ValueError) as error:
            # 409: the batch ended before the cancel arrived; nothing left to stop.
            self.log.warning("Could not cancel batch %s: %s", self.batch_id, error)
        else:
            self.log.info("Cancelled batch %s on kill: it is now %s.", self.batch_id, batch.status)
