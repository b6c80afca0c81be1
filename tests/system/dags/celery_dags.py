"""DAGs of the CeleryExecutor system tests (``tests/system/test_celery.py``).

``celery_scale``: ten chat batches through the granular operators mapped over ten request sets
(``submit`` then the deferrable ``wait``), beside ``one_task``, an :class:`OpenAIBatchOperator`
whose six requests go out as three parts of two. ``celery_worker_crash``: the same one-task
operator alone, with one retry two seconds after a failed try. Every wait polls the emulator
each second; the emulator the tests start holds batches in progress until a test releases them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_batch_provider.operators.batch import OpenAIBatchSubmitOperator
from airflow_batch_provider.operators.run import OpenAIBatchOperator
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor

START = datetime(2025, 1, 1)
MAPPED_BATCHES = 10
"""How many batches ``celery_scale`` maps over."""
PART_SIZE = 2
"""Requests per part of ``one_task``."""
PARTS = 3
"""Parts of ``one_task``: its requests, split ``PART_SIZE`` at a time."""


def chat(custom_id: str, prompt: str) -> dict[str, Any]:
    """One chat completion request."""
    return {
        "custom_id": custom_id,
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]},
    }


REQUEST_SETS = [
    [chat(f"set-{index}-request-{number}", f"Say {index}.{number}.") for number in range(2)]
    for index in range(MAPPED_BATCHES)
]
"""The mapped submit's input: one request set (two requests) per map index."""
ONE_TASK_REQUESTS = [
    chat(f"part-request-{number}", f"Count to {number}.") for number in range(PART_SIZE * PARTS)
]
"""``one_task``'s input, in the order its output must keep."""


def one_task_operator(**kwargs: Any) -> OpenAIBatchOperator:
    """``one_task``: the six requests in three parts, every part polled each second."""
    return OpenAIBatchOperator(
        task_id="one_task",
        requests=ONE_TASK_REQUESTS,
        max_requests_per_batch=PART_SIZE,
        poll_interval=1,
        **kwargs,
    )


with DAG(
    "celery_scale", schedule=None, start_date=START, catchup=False, tags=["system-test"]
) as celery_scale:
    submit = OpenAIBatchSubmitOperator.partial(task_id="submit").expand(requests=REQUEST_SETS)
    OpenAIBatchSensor.partial(task_id="wait", poll_interval=1, timeout=600).expand(batch_id=submit.output)
    one_task_operator()

with DAG(
    "celery_worker_crash", schedule=None, start_date=START, catchup=False, tags=["system-test"]
) as celery_worker_crash:
    one_task_operator(retries=1, retry_delay=timedelta(seconds=2))
