"""What the API no longer keeps, in real Airflow (``dag.test()``): one clear failure, never a retry loop."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_batch_provider.expiry import BatchFacts, file_gone
from airflow_batch_provider.operators.batch import (
    OpenAIBatchOperator,
    OpenAIBatchResultsOperator,
    OpenAIBatchSubmitOperator,
)
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor
from tests.support.emulator import set_faults
from tests.support.requests import chat_request
from tests.support.sdk import client_for, gone, submit_and_wait

START = datetime(2025, 1, 1)
RETRIES: dict[str, Any] = {"retries": 3, "retry_delay": timedelta(0)}
#: Every download waits this long before the emulator looks the file up: with a retention of one
#: second, the file has expired by then, whenever the batch ended.
SLOW_DOWNLOAD = 2.5
DOWNLOADS = 10


def slow_downloads(server: Any) -> Any:
    """Delay every read of a file (its size, then its content); return a function that says how many
    were tried."""
    rules = set_faults(
        server,
        [{"method": "GET", "path": "/v1/files/*", "latency": SLOW_DOWNLOAD, "count": DOWNLOADS}],
    )
    return lambda: DOWNLOADS - rules()[0]["count"]


def test_the_results_operator_fails_once_when_the_files_expired(
    run_dag, make_emulator, emulator_conn, assert_no_secret
) -> None:
    server = make_emulator(retention_seconds=1, enable_admin=True)
    emulator_conn(server)
    downloads = slow_downloads(server)
    with DAG("retention_results", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(task_id="submit", requests=[chat_request("a")])
        wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.2)
        wait >> OpenAIBatchResultsOperator(task_id="download", **RETRIES)

    result = run_dag(dag)

    assert result.states == {"submit": "success", "wait": "success", "download": "failed"}
    batch = result.xcom("wait", "batch")
    assert (
        f"The output file {batch['output_file_id']} of batch {batch['id']} is gone (HTTP 404): the API "
        "deletes a batch's output and error files when they expire: 30 days after they were made, by "
        "default (output_expires_after changes it); the batch ended at "
    ) in result.output
    assert "It cannot be downloaded again; retrying will not help." in result.output
    assert downloads() == 1  # no retry, by Airflow or by the client
    assert_no_secret(result, server)


def test_the_one_task_operator_fails_once_when_the_files_expired(
    run_dag, make_emulator, emulator_conn, assert_no_secret
) -> None:
    server = make_emulator(retention_seconds=1, enable_admin=True)
    emulator_conn(server)
    requests = [chat_request("a"), chat_request("b")]
    with DAG("retention_one_task", schedule=None, start_date=START) as dag:
        # output_expires_after keeps this batch's files an hour, past the emulator's retention.
        OpenAIBatchOperator(task_id="kept", requests=requests, output_expires_after=3600, poll_interval=0.1)
        OpenAIBatchOperator(task_id="run", requests=requests, poll_interval=0.1, **RETRIES)
    downloads = slow_downloads(server)

    result = run_dag(dag)

    assert result.states == {"kept": "success", "run": "failed"}
    assert result.xcom("kept")["succeeded"] == 2
    assert "Task 'run': The output file file-" in result.output
    assert " of batch batch_" in result.output
    assert "is gone (HTTP 404)" in result.output
    assert "by default (output_expires_after changes it); the batch ended at " in result.output
    assert (
        downloads() == 3
    )  # the kept batch's output (its size, then its content), then one try of the other's
    assert_no_secret(result, server)


def test_a_batch_past_the_retention_fails_the_sensor_and_the_results_operator_once(
    run_dag, make_emulator, emulator_conn, assert_no_secret
) -> None:
    server = make_emulator(batch_retention_seconds=1)
    emulator_conn(server)
    client = client_for(server)
    batch = submit_and_wait(client, [chat_request("a")])
    gone(lambda: client.batches.retrieve(batch.id))
    with DAG("retention_batch", schedule=None, start_date=START) as dag:
        OpenAIBatchSensor(task_id="wait", batch_id=batch.id, poll_interval=0.2, **RETRIES)
        OpenAIBatchResultsOperator(task_id="download", batch_id=batch.id, **RETRIES)

    result = run_dag(dag)

    assert result.states == {"wait": "failed", "download": "failed"}
    message = f"Batch {batch.id} is not found (HTTP 404): it is past the API's retention"
    assert f"Task 'wait': {message}" in result.output
    assert f"Task 'download': {message}" in result.output
    assert "Waiting or retrying will not bring it back" in result.output
    assert "up_for_retry" not in result.output.lower()
    assert_no_secret(result, server)


@pytest.mark.parametrize(
    ("batch", "lifetime"),
    [
        (None, "30 days after they were made, by default (output_expires_after changes it). "),
        (
            BatchFacts("batch_1", ended_at=1_767_225_600),
            "30 days after they were made, by default (output_expires_after changes it); the batch "
            "ended at 2026-01-01 00:00:00 UTC. ",
        ),
        (
            BatchFacts("batch_1", ended_at=1_767_225_600, expires_after_seconds=7200),
            "7,200 s after they were made (the batch's output_expires_after), about "
            "2026-01-01 02:00:00 UTC. ",
        ),
    ],
)
def test_a_gone_file_says_when_it_expired(batch: BatchFacts | None, lifetime: str) -> None:
    message = str(file_gone("error", "file-x", batch, None))

    assert message.startswith("The error file file-x")
    assert (
        f"is gone (HTTP 404): the API deletes a batch's output and error files when they expire: {lifetime}"
    )
    assert lifetime in message
    assert message.endswith("Submit the requests again to get new results.")
