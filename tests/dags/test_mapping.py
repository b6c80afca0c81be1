"""The granular operators under dynamic task mapping, and what a sensor does at its timeout."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task, task_group

from airflow_batch_provider.operators.batch import OpenAIBatchResultsOperator, OpenAIBatchSubmitOperator
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor
from tests.support.emulator import batch_status, batches_of
from tests.support.requests import chat_request, rejected_request

START = datetime(2025, 1, 1)
DOCUMENT_SETS = [["alpha", "beta"], ["gamma", "delta", "epsilon"], ["zeta"]]


def embedding_requests(texts: list[str]) -> list[dict[str, Any]]:
    return [
        {"custom_id": text, "body": {"model": "text-embedding-3-small", "input": text, "dimensions": 8}}
        for text in texts
    ]


def test_expand_over_submit_sensor_and_results(run_dag, emulator, emulator_conn, assert_no_secret) -> None:
    emulator_conn(emulator)
    with DAG("mapping_expand", schedule=None, start_date=START) as dag:

        @task
        def request_sets() -> list[list[dict[str, Any]]]:
            return [embedding_requests(texts) for texts in DOCUMENT_SETS]

        submit = OpenAIBatchSubmitOperator.partial(task_id="submit", endpoint="/v1/embeddings").expand(
            requests=request_sets()
        )
        wait = OpenAIBatchSensor.partial(task_id="wait", poll_interval=0.1).expand(batch_id=submit.output)
        download = OpenAIBatchResultsOperator.partial(task_id="download").expand(batch_id=submit.output)
        wait >> download

    result = run_dag(dag)

    assert result.state == "success", result.states
    summaries = result.xcoms_by_map_index("download")
    assert [summary["succeeded"] for summary in summaries] == [2, 3, 1]
    assert len(batches_of(emulator, "mapping_expand")) == 3
    assert_no_secret(result, emulator)


def test_results_without_arguments_in_a_mapped_task_group_read_their_own_map_index(
    run_dag, emulator, emulator_conn, assert_no_secret
) -> None:
    emulator_conn(emulator)
    with DAG("mapping_group", schedule=None, start_date=START) as dag:

        @task_group
        def embed(requests: list[dict[str, Any]]) -> None:
            submit = OpenAIBatchSubmitOperator(task_id="submit", requests=requests, endpoint="/v1/embeddings")
            wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.1)
            wait >> OpenAIBatchResultsOperator(task_id="download")

        embed.expand(requests=[embedding_requests(texts) for texts in DOCUMENT_SETS])

    result = run_dag(dag)

    assert result.state == "success", result.states
    summaries = result.xcoms_by_map_index("embed.download")
    assert [summary["succeeded"] for summary in summaries] == [2, 3, 1]
    batches = result.xcoms_by_map_index("embed.submit")
    assert [summary["batch_id"] for summary in summaries] == batches  # each read its own map index's batch
    assert_no_secret(result, emulator)


def test_an_unmapped_download_after_a_mapped_sensor_says_what_to_do(run_dag, emulator, emulator_conn) -> None:
    emulator_conn(emulator)
    with DAG("mapping_unmapped_download", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator.partial(task_id="submit").expand(
            requests=[[chat_request("a")], [chat_request("b")]]
        )
        wait = OpenAIBatchSensor.partial(task_id="wait", poll_interval=0.1).expand(batch_id=submit.output)
        wait >> OpenAIBatchResultsOperator(task_id="download")

    result = run_dag(dag)

    assert result.states["download"] == "failed"
    assert "sensor 'wait' left no batch for map index -1" in result.output
    assert "expand(batch_id=submit.output)" in result.output


def test_the_sensor_cancels_its_batch_at_the_timeout(run_dag, make_emulator, emulator_conn) -> None:
    server = make_emulator(request_delay=1.0, concurrency=1)
    emulator_conn(server)
    with DAG("mapping_timeout", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(
            task_id="submit", requests=[chat_request(f"r{n}") for n in range(10)]
        )
        OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.1, timeout=1)

    result = run_dag(dag)

    assert result.states == {"submit": "success", "wait": "failed"}
    assert "The batch was cancelled" in result.output
    assert batch_status(server, result.xcom("submit")) in ("cancelling", "cancelled")


def test_failure_threshold_on_the_sensor_and_the_results(run_dag, emulator, emulator_conn) -> None:
    emulator_conn(emulator)
    requests = [chat_request(f"ok{n}") for n in range(3)] + [rejected_request("bad")]
    with DAG("mapping_threshold", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(task_id="submit", requests=requests)
        lenient = OpenAIBatchSensor(
            task_id="lenient", batch_id=submit.output, poll_interval=0.1, failure_threshold=0.5
        )
        strict = OpenAIBatchSensor(
            task_id="strict", batch_id=submit.output, poll_interval=0.1, failure_threshold=0.0
        )
        lenient >> OpenAIBatchResultsOperator(task_id="download", failure_threshold=0.1)
        strict  # noqa: B018 - fails on its own

    result = run_dag(dag)

    assert result.states == {
        "submit": "success",
        "lenient": "success",
        "strict": "failed",
        "download": "failed",
    }
    assert "1 of 4 request(s) failed (above 0%)" in result.output
    assert "empty_array (1)" in result.output
    assert "1 of 4 request(s) failed (25.0%): more than failure_threshold=0.1" in result.output


def test_an_empty_request_list_skips_the_submit(run_dag, emulator, emulator_conn) -> None:
    emulator_conn(emulator)
    with DAG("mapping_empty", schedule=None, start_date=START) as dag:
        OpenAIBatchSubmitOperator(task_id="submit", requests=[])

    assert run_dag(dag).states == {"submit": "skipped"}
