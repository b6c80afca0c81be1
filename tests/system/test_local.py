"""A real deployment with LocalExecutor: scheduler, triggerer(s), DAG processor and API server
as separate processes, on PostgreSQL when ``ABP_SYSTEM_POSTGRES_URL`` is set (else SQLite), the
emulator in a process of its own, every run driven through the REST API.

The emulator holds each batch in progress until a test releases it, so each test decides what
happens while the sensor waits in a triggerer. The tests share one deployment and run in file
order; the last one reads every log file the others made.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.support.airflow_rest import epoch
from tests.support.deployment import TRIGGERER_HEALTH_THRESHOLD, AirflowDeployment
from tests.support.emulator import EmulatorControl
from tests.support.processes import ManagedProcess, wait_until
from tests.system.conftest import API_KEY, record
from tests.system.dags.system_dags import DEADLINE_SECONDS

WAIT_DAG = "system_wait"
DEADLINE_DAG = "system_deadline"
STILL_RUNNING = "its batches keep running"
"""What the trigger logs when its task was cleared or marked success (and it cancels nothing)."""


def _in_a_triggerer(ti: dict[str, Any]) -> bool:
    return bool(ti.get("triggerer_job"))


@pytest.fixture
def airflow(local_airflow: AirflowDeployment) -> AirflowDeployment:
    """The module's deployment with its DAGs parsed and at least one triggerer running."""
    local_airflow.ensure_triggerers(1)
    local_airflow.rest.wait_for_dags([WAIT_DAG, DEADLINE_DAG])
    return local_airflow


def _deferred_run(
    airflow: AirflowDeployment, emulator: EmulatorControl, dag_id: str
) -> tuple[str, dict[str, Any]]:
    """Trigger a run and wait until its sensor is deferred in a triggerer; return the run id and batch.

    Also waits for the executor's report of the deferral (see
    :meth:`~tests.support.deployment.AirflowDeployment.wait_for_executor_event`), so that a test
    may end the batch at once.
    """
    run_id = airflow.rest.trigger_run(dag_id)
    airflow.rest.wait_for_task(dag_id, run_id, "wait", {"deferred"}, 120, condition=_in_a_triggerer)
    airflow.wait_for_executor_event(dag_id, run_id, "wait", try_number=1)
    (batch,) = emulator.batches_of(dag_id, run_id)
    assert batch["status"] == "in_progress"
    return run_id, batch


def _trigger_started(airflow: AirflowDeployment, dag_id: str, run_id: str, try_number: int) -> None:
    """Wait until the sensor's trigger of that try runs in a triggerer (its first line is logged)."""
    airflow.rest.wait_for_log(
        dag_id, run_id, "wait", try_number, f"trigger {dag_id}/{run_id}/wait/-1/{try_number} (ID"
    )


def _held_by(airflow: AirflowDeployment, dag_id: str, run_id: str, process: ManagedProcess) -> bool:
    """Whether the sensor's trigger is assigned to the triggerer ``process`` now."""
    ti = airflow.rest.task_instance(dag_id, run_id, "wait")
    return ti["state"] == "deferred" and airflow.triggerer_holding(ti) is process


def test_a_run_succeeds_with_the_sensor_deferred_and_its_trigger_in_the_triggerer(
    airflow: AirflowDeployment, emulator_held: EmulatorControl
) -> None:
    run_id, batch = _deferred_run(airflow, emulator_held, WAIT_DAG)
    ti = airflow.rest.task_instance(WAIT_DAG, run_id, "wait")
    assert ti["trigger"]["classpath"] == "airflow_batch_provider.triggers.batch.OpenAIBatchTrigger"
    triggerer = airflow.triggerer_holding(ti)
    assert triggerer is not None
    assert triggerer.name.startswith("triggerer-")
    # The trigger runs in the triggerer and logs each read to the task's log.
    _trigger_started(airflow, WAIT_DAG, run_id, 1)
    polls = f"{batch['id']} in_progress: 0/3 done"
    wait_until(
        lambda: airflow.rest.task_log(WAIT_DAG, run_id, "wait", 1).count(polls) >= 3,
        30,
        "the sensor's first look and two polls of its trigger",
    )

    emulator_held.release()
    run = airflow.rest.wait_for_run(WAIT_DAG, run_id, timeout=120)

    assert run["state"] == "success"
    batch = emulator_held.batch(batch["id"])
    assert batch["status"] == "completed"
    assert airflow.rest.xcom(WAIT_DAG, run_id, "submit") == batch["id"]
    assert airflow.rest.xcom(WAIT_DAG, run_id, "wait") == batch["output_file_id"]
    ti = airflow.rest.task_instance(WAIT_DAG, run_id, "wait")
    assert ti["try_number"] == 1
    record("fire delay (batch completed -> sensor success)", epoch(ti["end_date"]) - batch["completed_at"])


def test_a_sigkilled_triggerers_wait_resumes_on_a_new_one_and_the_sensors_deadline_still_holds(
    airflow: AirflowDeployment, emulator_held: EmulatorControl
) -> None:
    for extra in airflow.running_triggerers()[1:]:
        extra.terminate()
    run_id, batch = _deferred_run(airflow, emulator_held, DEADLINE_DAG)
    first = airflow.rest.task_instance(DEADLINE_DAG, run_id, "wait")
    holder = airflow.triggerer_holding(first)
    assert holder is not None

    holder.kill()
    assert holder.signalled_at is not None
    successor = airflow.start_triggerer()
    wait_until(
        lambda: _held_by(airflow, DEADLINE_DAG, run_id, successor),
        TRIGGERER_HEALTH_THRESHOLD + 60,
        "the new triggerer to take the trigger over",
    )
    record(
        "triggerer takeover after SIGKILL (new triggerer started at once)",
        time.monotonic() - holder.signalled_at,
    )

    # The batch never completes: the sensor fails at its deadline, counted from its first start.
    ti = airflow.rest.wait_for_task(DEADLINE_DAG, run_id, "wait", {"failed"}, DEADLINE_SECONDS + 60)
    started = epoch(first["start_date"])
    assert DEADLINE_SECONDS <= epoch(ti["end_date"]) - started <= DEADLINE_SECONDS + 15
    assert ti["try_number"] == 1
    log = airflow.rest.task_log(DEADLINE_DAG, run_id, "wait", 1)
    assert f"Cancelled batch {batch['id']} at the sensor's timeout" in log
    assert emulator_held.batch(batch["id"])["status"] in {"cancelling", "cancelled"}


def test_a_triggerer_stopped_while_it_holds_the_trigger_hands_it_to_the_other(
    airflow: AirflowDeployment, emulator_held: EmulatorControl
) -> None:
    airflow.ensure_triggerers(2)
    run_id, batch = _deferred_run(airflow, emulator_held, WAIT_DAG)
    holder = airflow.triggerer_holding(airflow.rest.task_instance(WAIT_DAG, run_id, "wait"))
    assert holder is not None
    (other,) = [process for process in airflow.running_triggerers() if process is not holder]

    holder.terminate()  # SIGTERM: a graceful stop, as in a rolling restart
    assert holder.signalled_at is not None
    wait_until(
        lambda: _held_by(airflow, WAIT_DAG, run_id, other), 60, f"{other.name} to take the trigger over"
    )
    record(
        "triggerer takeover after SIGTERM (another triggerer running)", time.monotonic() - holder.signalled_at
    )
    assert emulator_held.batch(batch["id"])["status"] == "in_progress"

    emulator_held.release()
    assert airflow.rest.wait_for_run(WAIT_DAG, run_id, timeout=120)["state"] == "success"
    assert airflow.rest.xcom(WAIT_DAG, run_id, "wait") == emulator_held.batch(batch["id"])["output_file_id"]


def test_marking_the_deferred_sensor_failed_cancels_its_batch(
    airflow: AirflowDeployment, emulator_held: EmulatorControl
) -> None:
    run_id, batch = _deferred_run(airflow, emulator_held, WAIT_DAG)

    airflow.rest.set_task_state(WAIT_DAG, run_id, "wait", "failed")

    wait_until(
        lambda: emulator_held.batch(batch["id"])["status"] in {"cancelling", "cancelled"},
        60,
        f"batch {batch['id']} to be cancelled",
    )
    airflow.rest.wait_for_log(
        WAIT_DAG, run_id, "wait", 1, f"Cancelled batch {batch['id']}: the task was stopped"
    )
    assert airflow.rest.task_instance(WAIT_DAG, run_id, "wait")["state"] == "failed"


def test_clearing_the_deferred_sensor_or_marking_it_success_keeps_its_batch(
    airflow: AirflowDeployment, emulator_held: EmulatorControl
) -> None:
    run_id, batch = _deferred_run(airflow, emulator_held, WAIT_DAG)

    airflow.rest.clear_task(WAIT_DAG, run_id, "wait")
    # The first try's trigger was told, read the task's state, and left the batch alone.
    airflow.rest.wait_for_log(WAIT_DAG, run_id, "wait", 1, STILL_RUNNING)
    ti = airflow.rest.wait_for_task(
        WAIT_DAG,
        run_id,
        "wait",
        {"deferred"},
        120,
        condition=lambda ti: ti["try_number"] == 2 and _in_a_triggerer(ti),
    )
    assert ti["rendered_fields"]["batch_id"] == batch["id"]  # the new try waits for the same batch
    assert emulator_held.batch(batch["id"])["status"] == "in_progress"
    _trigger_started(airflow, WAIT_DAG, run_id, 2)

    airflow.rest.set_task_state(WAIT_DAG, run_id, "wait", "success")
    airflow.rest.wait_for_log(WAIT_DAG, run_id, "wait", 2, STILL_RUNNING)
    assert emulator_held.batch(batch["id"])["status"] == "in_progress"
    assert emulator_held.batches_of(WAIT_DAG, run_id) == [emulator_held.batch(batch["id"])]


def test_a_task_retried_after_its_process_was_killed_reattaches_to_the_batch_it_created(
    airflow: AirflowDeployment, emulator_held: EmulatorControl
) -> None:
    # The batch is created but its answer is lost; while the client looks for it among the
    # batches (a listing that takes two minutes), the task's process is SIGKILLed.
    emulator_held.set_faults(
        [
            {"method": "POST", "path": "/v1/batches", "drop": True, "count": 1},
            {"method": "GET", "path": "/v1/batches", "latency": 120, "count": 1},
        ]
    )
    run_id = airflow.rest.trigger_run(WAIT_DAG)
    wait_until(
        lambda: all(rule["count"] == 0 for rule in emulator_held.faults()),
        120,
        "the batch to be created and the client to look for it",
    )
    ti = airflow.rest.task_instance(WAIT_DAG, run_id, "submit")
    assert ti["state"] == "running"
    assert ti["try_number"] == 1
    own = {process.pid for process in airflow.processes["scheduler"].descendants()}
    assert ti["pid"] in own  # a task process of this deployment's LocalExecutor, nobody else's
    os.kill(ti["pid"], signal.SIGKILL)

    ti = airflow.rest.wait_for_task(WAIT_DAG, run_id, "submit", {"success", "failed"}, 120)

    assert ti["state"] == "success"
    assert ti["try_number"] == 2
    (batch,) = emulator_held.batches_of(WAIT_DAG, run_id)  # one batch: none paid twice
    assert airflow.rest.xcom(WAIT_DAG, run_id, "submit") == batch["id"]
    assert f"Reattaching to batch {batch['id']}" in airflow.rest.task_log(WAIT_DAG, run_id, "submit", 2)
    airflow.rest.wait_for_task(WAIT_DAG, run_id, "wait", {"deferred"}, 120, condition=_in_a_triggerer)
    airflow.wait_for_executor_event(WAIT_DAG, run_id, "wait", try_number=1)
    emulator_held.release()
    assert airflow.rest.wait_for_run(WAIT_DAG, run_id, timeout=120)["state"] == "success"


def test_the_api_key_is_in_no_log_file_of_any_component(local_airflow: AirflowDeployment) -> None:
    files = list(local_airflow.log_files())
    names = {path.name for path in files}
    assert {"api-server.log", "scheduler.log", "dag-processor.log", "triggerer-1.log"} <= names
    task_logs = [path for path in files if local_airflow.task_logs in path.parents]
    assert any(".trigger." in path.name for path in task_logs), "no trigger log to read"
    assert any("Batch page: http://127.0.0.1:" in path.read_text(errors="replace") for path in task_logs)
    leaking = [str(path) for path in files if API_KEY in path.read_text(errors="replace")]
    assert not leaking
