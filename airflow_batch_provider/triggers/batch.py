"""Trigger that waits, in the triggerer's event loop, for a batch to reach a terminal status."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any
from weakref import WeakKeyDictionary

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.hooks._http import is_retryable_status
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.models import Batch

#: Event ``status`` values: the batch ended (whatever its own status), the API refused to
#: answer for a reason waiting will not fix, or the deadline passed first.
EVENT_TERMINAL = "terminal"
EVENT_ERROR = "error"
EVENT_TIMEOUT = "timeout"

#: How long ``on_kill`` may spend cancelling; the triggerer's own bound is 30 s by default.
CANCEL_TIMEOUT = 20.0
#: How long the triggers of one event loop share a hook (and the connection it read) before
#: the next poll reads the connection again, picking up a rotated key.
SHARED_HOOK_SECONDS = 300.0

# The hooks the triggers of each event loop share, by connection id: a triggerer starting a
# thousand triggers reads each connection once, not a thousand times in one loop iteration.
# An entry holds the time it was made and the hook, or the future reading its connection.
_SharedHooks = dict[str, tuple[float, "OpenAIBatchHook | asyncio.Future[OpenAIBatchHook]"]]
_shared_hooks: WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedHooks] = WeakKeyDictionary()


async def _connected_hook(conn_id: str) -> OpenAIBatchHook:
    hook = OpenAIBatchHook(conn_id=conn_id)
    await hook.aget_settings()
    return hook


async def shared_hook(conn_id: str) -> OpenAIBatchHook:
    """The hook the running loop's triggers share for ``conn_id``, its connection already read.

    The connection is read again once the hook is ``SHARED_HOOK_SECONDS`` old.
    """
    hooks = _shared_hooks.setdefault(asyncio.get_running_loop(), {})
    created, entry = hooks.get(conn_id, (0.0, None))
    if isinstance(entry, OpenAIBatchHook) and time.monotonic() - created < SHARED_HOOK_SECONDS:
        return entry
    if not isinstance(entry, asyncio.Future):
        created, entry = hooks[conn_id] = (time.monotonic(), asyncio.ensure_future(_connected_hook(conn_id)))
    try:
        hook = await asyncio.shield(entry)
    except BaseException:
        if entry.done() and hooks.get(conn_id, (0.0, None))[1] is entry:
            del hooks[conn_id]  # the reading failed: the next call reads again
        raise
    # Keep the hook, not the future: a future would keep the loop (the weak key) alive.
    hooks[conn_id] = (created, hook)
    return hook


def is_transient(error: OpenAIBatchAPIError) -> bool:
    """True for errors that waiting can fix: no answer, 408, 429 and 5xx (the hook's retry rule)."""
    return error.status_code is None or is_retryable_status(error.status_code)


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_progress(batch: Batch, now: float | None = None) -> str:
    """One log line about where a batch stands, shared by the sensor's pokes and the trigger.

    ``batch_abc in_progress: 12,345/50,000 done (24.7%), 12 failed, 00:41:10 elapsed, ETA 02:05:00``

    "done" counts requests that finished either way; the elapsed time runs from the batch's
    creation; the ETA extrapolates the rate since the batch went ``in_progress``.
    """
    now = time.time() if now is None else now
    counts = batch.request_counts
    elapsed = f"{_clock(now - batch.created_at)} elapsed"
    if counts is None or counts.total == 0:
        return f"{batch.id} {batch.status}: {elapsed}"
    done = counts.completed + counts.failed
    parts = [f"{batch.id} {batch.status}: {done:,}/{counts.total:,} done ({done / counts.total:.1%})"]
    parts.append(f"{counts.failed:,} failed")
    parts.append(elapsed)
    if not batch.status.is_terminal and batch.in_progress_at and 0 < done < counts.total:
        rate = done / max(now - batch.in_progress_at, 1e-9)
        parts.append(f"ETA {_clock((counts.total - done) / rate)}")
    return ", ".join(parts)


class OpenAIBatchTrigger(BaseTrigger):
    """Poll a batch until it is terminal, then fire one event carrying the final batch.

    Only async I/O runs here (the hook's ``aget_batch``): the triggerer's event loop is
    never blocked. Transient errors (no answer, 408, 429, 5xx) are logged and the
    wait goes on, backing off up to ``poll_interval``; an error waiting cannot fix (401,
    403, 404, ...) ends the wait with an error event saying why.

    The event's payload is ``{"status": "terminal" | "error" | "timeout", "batch_id",
    "message", "batch"}`` where ``batch`` is the last batch seen as
    ``Batch.model_dump(mode="json")`` (None when none was read).

    Built for a triggerer running thousands of them: the triggers of one event loop share a
    hook per connection (the connection is read once, and again every
    ``SHARED_HOOK_SECONDS``) and the hook's pooled HTTP client; reads start every
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
                hook = await shared_hook(self.conn_id)
            except Exception as error:  # no such connection, or one the hook cannot use
                yield self._event(EVENT_ERROR, f"Cannot use connection {self.conn_id!r}: {error}", batch)
                return
            # Polls start every poll_interval, however long a read waits for its turn.
            poll_started = time.monotonic()
            try:
                batch = await hook.aget_batch(self.batch_id)
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
            hook = await shared_hook(self.conn_id)
            batch = await asyncio.wait_for(hook.acancel_batch(self.batch_id), CANCEL_TIMEOUT)
        except (OpenAIBatchAPIError, asyncio.TimeoutError) as error:
            # 409: the batch ended before the cancel arrived; nothing left to stop.
            self.log.warning("Could not cancel batch %s: %s", self.batch_id, error)
        else:
            self.log.info("Cancelled batch %s on kill: it is now %s.", self.batch_id, batch.status)
