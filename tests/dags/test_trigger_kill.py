"""A stopped trigger cancels its batches only when the user stopped the task; never on clear or mark success.

Real Airflow: a DAG run made by ``dag.test()``, whose task instance is then set to the state a
user's action leaves it in, and the trigger reading that state through the Task SDK, as it does
in the triggerer (here over Airflow's in-process supervisor and execution API).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
import structlog
from airflow.sdk import DAG, task

from airflow_batch_provider import jsonl
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.triggers import batch as triggers
from airflow_batch_provider.triggers.batch import OpenAIBatchesTrigger, OpenAIBatchTrigger
from tests.support.emulator import batch_status
from tests.support.requests import chat_requests

START = datetime(2025, 1, 1)
RUNNING = ("validating", "in_progress")
CANCELLED = ("cancelling", "cancelled")


@pytest.fixture
def task_instance(run_dag) -> Callable[[str | None, int], SimpleNamespace]:
    """A real task instance in Airflow's database, in the state given: ``task_instance("failed")``."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with DAG(f"trigger_kill_{uuid.uuid4().hex[:8]}", schedule=None, start_date=START) as dag:

        @task
        def wait() -> None:
            return None

        wait()

        @task
        def waits(x: int) -> None:
            return None

        waits.expand(x=[1, 2])

    run = run_dag(dag)
    assert run.state == "success"

    def make(state: str | None, map_index: int = -1) -> SimpleNamespace:
        task_id = "wait" if map_index < 0 else "waits"
        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter_by(dag_id=dag.dag_id, task_id=task_id, map_index=map_index)
                .one()
            )
            ti.state = state
            session.merge(ti)
            ids = SimpleNamespace(
                id=ti.id, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=map_index
            )
        return ids

    return make


@contextlib.contextmanager
def task_sdk_comms(ti_id: Any) -> Iterator[None]:
    """The Task SDK's connection to Airflow, as a triggerer gives its triggers (in process here)."""
    from airflow.sdk.execution_time.supervisor import (
        InProcessSupervisorComms,
        InProcessTestSupervisor,
        set_supervisor_comms,
    )

    supervisor = InProcessTestSupervisor(
        id=ti_id,
        pid=os.getpid(),
        process=psutil.Process(),
        process_log=structlog.get_logger(logger_name="task").bind(),
        client=InProcessTestSupervisor._api_client(),
    )
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
    with set_supervisor_comms(supervisor.comms):
        yield


def submit(tmp_path: Any, count: int = 1) -> list[str]:
    path = tmp_path / "requests.jsonl"
    jsonl.write_requests(chat_requests(4), path)
    hook = OpenAIBatchHook()
    file_id = hook.upload_file(path).id
    return [hook.create_batch(file_id, "/v1/chat/completions").id for _ in range(count)]


@pytest.fixture
def slow(make_emulator, emulator_conn) -> Any:
    """An emulator whose batches run for a long while, and the default connection pointing at it."""
    server = make_emulator(request_delay=5, concurrency=1, cancel_delay=0.05)
    emulator_conn(server)
    return server


# Airflow 3.3+: the triggerer calls on_kill on mark failed, mark success and clear.
@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("failed", CANCELLED),  # marked failed: the user stopped the task
        ("skipped", CANCELLED),
        ("success", RUNNING),  # marked success: go on with what is there
        (None, RUNNING),  # cleared
        ("scheduled", RUNNING),  # cleared, and on its way to run again
        ("deferred", RUNNING),  # cleared, and waiting again with a new trigger
    ],
    ids=["failed", "skipped", "success", "cleared", "cleared-scheduled", "cleared-deferred-again"],
)
@pytest.mark.parametrize("map_index", [-1, 1], ids=["unmapped", "mapped"])
def test_on_kill_cancels_only_a_stopped_task(
    slow, task_instance, tmp_path, state, expected, map_index
) -> None:
    ti = task_instance(state, map_index)
    (batch_id,) = submit(tmp_path)
    trigger = OpenAIBatchTrigger("openai_batch_default", batch_id)
    trigger.task_instance = ti

    with task_sdk_comms(ti.id):
        asyncio.run(trigger.on_kill())

    assert batch_status(slow, batch_id) in expected


@pytest.mark.parametrize(
    ("state", "expected"), [("failed", CANCELLED), ("success", RUNNING), (None, RUNNING)]
)
def test_the_one_task_trigger_follows_the_same_rule(slow, task_instance, tmp_path, state, expected) -> None:
    ti = task_instance(state)
    batch_ids = submit(tmp_path, count=2)
    trigger = OpenAIBatchesTrigger("openai_batch_default", batch_ids)
    trigger.task_instance = ti

    with task_sdk_comms(ti.id):
        asyncio.run(trigger.on_kill())

    assert [batch_status(slow, batch_id) in expected for batch_id in batch_ids] == [True, True]


def test_without_a_readable_state_the_batch_keeps_running(slow, tmp_path, capfd, caplog) -> None:
    (batch_id,) = submit(tmp_path)
    trigger = OpenAIBatchTrigger("openai_batch_default", batch_id)  # no task instance given

    with caplog.at_level(logging.WARNING):
        asyncio.run(trigger.on_kill())

    assert batch_status(slow, batch_id) in RUNNING
    assert "its batches keep running" in capfd.readouterr().out + caplog.text


def test_cancel_on_kill_false_keeps_even_a_stopped_tasks_batch(slow, task_instance, tmp_path) -> None:
    ti = task_instance("failed")
    (batch_id,) = submit(tmp_path)
    trigger = OpenAIBatchTrigger("openai_batch_default", batch_id, cancel_on_kill=False)
    trigger.task_instance = ti

    with task_sdk_comms(ti.id):
        asyncio.run(trigger.on_kill())

    assert batch_status(slow, batch_id) in RUNNING


# Airflow 3.1 and 3.2: no on_kill; the triggerer only cancels the trigger, for a user's action as
# for its own shutdown. The trigger reads the state when cancelled.


def cancel_while_waiting(trigger: Any, again: bool = False) -> None:
    """Run the trigger, and cancel it once it waits between two reads, as a triggerer does.

    :param again: cancel it again at every turn until it has ended, as Airflow 3.1's trigger
        runner does at every exchange with its supervisor.
    """

    async def main() -> None:
        waiting = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(0.5)  # cancelled while reading or waiting: the outcome is the same
        waiting.cancel()
        while again and not waiting.done():
            await asyncio.sleep(0)  # the next turn of the loop: as soon as Airflow could
            waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting

    asyncio.run(main())


@pytest.mark.parametrize("again", [False, True], ids=["cancelled-once", "cancelled-again-and-again"])
@pytest.mark.parametrize(
    ("state", "expected"),
    [("failed", CANCELLED), ("deferred", RUNNING), ("success", RUNNING), (None, RUNNING)],
    ids=["marked-failed", "triggerer-restart", "marked-success", "cleared"],
)
@pytest.mark.parametrize("trigger_class", [OpenAIBatchTrigger, OpenAIBatchesTrigger])
def test_before_airflow_3_3_a_cancelled_trigger_reads_the_state(
    slow, task_instance, tmp_path, monkeypatch, state, expected, trigger_class, again
) -> None:
    monkeypatch.setattr(triggers, "TRIGGERER_CALLS_ON_KILL", False)
    ti = task_instance(state)
    (batch_id,) = submit(tmp_path)
    ids: Any = batch_id if trigger_class is OpenAIBatchTrigger else [batch_id]
    trigger = trigger_class("openai_batch_default", ids, poll_interval=0.1)
    trigger.task_instance = ti

    with task_sdk_comms(ti.id):
        cancel_while_waiting(trigger, again)

    assert batch_status(slow, batch_id) in expected


@pytest.mark.skipif(not triggers.TRIGGERER_CALLS_ON_KILL, reason="Airflow before 3.3 has no trigger on_kill")
def test_on_airflow_3_3_cancellation_alone_never_cancels(slow, task_instance, tmp_path) -> None:
    """On 3.3+ on_kill decides; the cancellation that precedes it must not cancel on its own."""
    ti = task_instance("failed")
    (batch_id,) = submit(tmp_path)
    trigger = OpenAIBatchTrigger("openai_batch_default", batch_id, poll_interval=0.1)
    trigger.task_instance = ti

    with task_sdk_comms(ti.id):
        cancel_while_waiting(trigger)

    assert batch_status(slow, batch_id) in RUNNING
