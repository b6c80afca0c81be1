"""A real deployment with LocalExecutor: scheduler, triggerer(s), DAG processor and API server
as separate processes, on PostgreSQL when ``ABP_SYSTEM_POSTGRES_URL`` is set (else SQLite), the
emulator in a process of its own, every run driven through the REST API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.support.deployment import AirflowDeployment
from tests.support.emulator import EmulatorControl
from tests.system.conftest import record

WAIT_DAG = "system_wait"


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _deferred_in_a_triggerer(ti: dict[str, Any]) -> bool:
    return bool(ti.get("triggerer_job"))


def test_a_run_succeeds_with_the_sensor_deferred_and_its_trigger_in_the_triggerer(
    local_airflow: AirflowDeployment, emulator_held: EmulatorControl
) -> None:
    rest = local_airflow.rest
    rest.wait_for_dags([WAIT_DAG])
    run_id = rest.trigger_run(WAIT_DAG)

    ti = rest.wait_for_task(WAIT_DAG, run_id, "wait", {"deferred"}, 120, condition=_deferred_in_a_triggerer)
    assert ti["trigger"]["classpath"] == "airflow_batch_provider.triggers.batch.OpenAIBatchTrigger"
    triggerer = local_airflow.triggerer_holding(ti)
    assert triggerer is not None
    assert triggerer.name.startswith("triggerer-")
    (batch,) = emulator_held.batches_of(WAIT_DAG, run_id)
    assert batch["status"] == "in_progress"

    emulator_held.release()
    run = rest.wait_for_run(WAIT_DAG, run_id, timeout=120)

    assert run["state"] == "success"
    batch = emulator_held.batch(batch["id"])
    assert batch["status"] == "completed"
    assert rest.xcom(WAIT_DAG, run_id, "submit") == batch["id"]
    assert rest.xcom(WAIT_DAG, run_id, "wait") == batch["output_file_id"]
    ti = rest.task_instance(WAIT_DAG, run_id, "wait")
    assert ti["try_number"] == 1
    record("fire delay (batch completed -> sensor success)", _epoch(ti["end_date"]) - batch["completed_at"])
