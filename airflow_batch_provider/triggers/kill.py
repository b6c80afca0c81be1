"""When a trigger is stopped, whether a user stopped its task, or only cleared or marked it.

Airflow 3.3 calls a trigger's ``on_kill`` when a user marks the deferred task failed, marks it
success, or clears it; Airflow 3.1 and 3.2 only cancel the trigger, as they also do when the
triggerer shuts down or hands the trigger to another triggerer. A paid batch must survive all
but the first: a clear means "wait again", a success mark means "go on with what is there".

So the trigger reads what its task instance became, through the Task SDK (the triggerer answers
``RuntimeTaskInstance.get_task_states``), and cancels its batches only when the task instance
ended :data:`STOPPED_STATES`. A task instance still deferred (a restart, a redistribution),
cleared (no state, scheduled, queued, running or deferred again) or marked success keeps them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger

TRIGGERER_CALLS_ON_KILL = "on_kill" in vars(BaseTrigger)
"""Airflow 3.3+: the triggerer calls ``on_kill`` on a user's action. Before, only cancellation
says the trigger is stopped (see :func:`stopped_by_user`, called then)."""

T = TypeVar("T")

STOPPED_STATES = frozenset({"failed", "upstream_failed", "skipped", "removed"})
"""Task instance states in which its live batches are cancelled: the user stopped it."""

STATE_TIMEOUT = 10.0
"""Seconds to wait for the task instance's state before keeping the batches running."""


async def task_state(trigger: BaseTrigger) -> str | None:
    """The state of the trigger's task instance now, as Airflow's metadata database holds it.

    :raises LookupError: the trigger knows no task instance, or Airflow none of that identity.
    """
    ti: Any = getattr(trigger, "task_instance", None)
    if ti is None:
        raise LookupError("the trigger was given no task instance")
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from asgiref.sync import sync_to_async

    # asgiref's thread, not asyncio's: the Task SDK's call to the triggerer then runs on the
    # triggerer's event loop, where its connection to the supervisor lives. From a thread asgiref
    # does not know, it starts a second loop that reads that connection too.
    states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
        dag_id=ti.dag_id,
        task_ids=[ti.task_id],
        run_ids=[ti.run_id],
        map_index=ti.map_index,
    )
    key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
    by_task = states.get(ti.run_id, {})
    if key not in by_task:
        raise LookupError(f"no task instance {ti.dag_id}.{key} in run {ti.run_id}")
    state = by_task[key]
    return None if state is None else str(getattr(state, "value", state))


async def stopped_by_user(trigger: BaseTrigger) -> bool:
    """Whether the trigger's task instance ended in one of :data:`STOPPED_STATES`.

    When its state cannot be read, the batches keep running (False), and the trigger's log says
    so: a batch cancelled by mistake is lost, one left running can still be cancelled by hand.
    """
    try:
        state = await asyncio.wait_for(task_state(trigger), STATE_TIMEOUT)
    except Exception as error:  # no task instance, no Task SDK connection, a timeout
        trigger.log.warning(
            "Could not read the state of the task instance (%s); its batches keep running. "
            "Cancel them on the batch page if they should stop.",
            error,
        )
        return False
    if state in STOPPED_STATES:
        return True
    trigger.log.info(
        "The task instance is %s (cleared, marked success, or moved): its batches keep running.",
        state or "cleared",
    )
    return False


async def finish_despite_cancellation(work: Awaitable[T]) -> T:
    """Await ``work`` to its end, even when the awaiting task is cancelled again meanwhile.

    Airflow 3.1 and 3.2 cancel a trigger that should stop again at every exchange between the
    trigger runner and its supervisor (about every second) until it has ended: the cancellation
    of a stopped task's batches must not be cut short by the next one. ``work`` bounds its own
    time (:data:`STATE_TIMEOUT`, the cancel's timeout). The first cancellation is re-raised by
    the caller once ``work`` is done.
    """
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # ``work`` itself was cancelled, not only its caller
                raise
