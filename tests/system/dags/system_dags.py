"""DAGs of the system tests, copied into each deployment's DAGs folder.

Every DAG submits three chat requests and waits for their batch with the deferrable sensor,
polling every second. The emulator the tests start holds batches in progress until a test
releases them, so each test decides when a batch completes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_batch_provider.operators.batch import OpenAIBatchSubmitOperator
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor

START = datetime(2025, 1, 1)
DEADLINE_SECONDS = 45
"""The timeout of ``system_deadline``'s sensor."""
REQUESTS = [
    {
        "custom_id": f"request-{number}",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Say {number}."}]},
    }
    for number in range(3)
]


def submit_and_wait(dag_id: str, sensor_timeout: float) -> DAG:
    """``submit >> wait``: the submit operator (one retry, 2 s apart) and the deferrable sensor."""
    with DAG(dag_id, schedule=None, start_date=START, catchup=False, tags=["system-test"]) as dag:
        submit = OpenAIBatchSubmitOperator(
            task_id="submit", requests=REQUESTS, retries=1, retry_delay=timedelta(seconds=2)
        )
        OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=1, timeout=sensor_timeout)
    return dag


system_wait = submit_and_wait("system_wait", sensor_timeout=600)
system_deadline = submit_and_wait("system_deadline", sensor_timeout=DEADLINE_SECONDS)
