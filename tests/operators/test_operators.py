"""Argument checks of the submit and results operators, made when the DAG is parsed.

What the operators do against the API is tested in tests/dags/test_workflow.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import DAG

from airflow_batch_provider.operators.batch import OpenAIBatchResultsOperator, OpenAIBatchSubmitOperator
from airflow_batch_provider.utils import run_identity

REQUESTS = [{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}]


@pytest.mark.parametrize(
    ("inputs", "named"),
    [
        ({}, "got none"),
        ({"input_file_id": "file-1", "requests": REQUESTS}, "got input_file_id, requests"),
        ({"input_file_id": "file-1", "input_path": "a.jsonl", "requests": REQUESTS}, "input_path"),
    ],
)
def test_exactly_one_input(inputs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=f"exactly one of input_file_id, input_path or requests.*{named}"):
        OpenAIBatchSubmitOperator(task_id="submit", **inputs)


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"airflow_run_id": "x"}, r"keys \['airflow_run_id'\] are set by the operator"),
        ({f"k{n}": "v" for n in range(10)}, "10 keys, but at most 9 are free"),
        ({"k" * 65: "v"}, "is not a string of at most 64 characters"),
        ({"key": "v" * 513}, "value of 'key' is not a string of at most 512 characters"),
        ({"key": 3}, "value of 'key' is not a string"),
    ],
)
def test_metadata_the_api_would_refuse_is_an_error_at_parse_time(metadata: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        OpenAIBatchSubmitOperator(task_id="submit", input_file_id="file-1", metadata=metadata)


def test_templated_metadata_is_checked_at_run_time_only() -> None:
    operator = OpenAIBatchSubmitOperator(
        task_id="submit", input_file_id="file-1", metadata="{{ params.meta }}"
    )

    assert operator.metadata == "{{ params.meta }}"


def test_templated_fields() -> None:
    assert set(OpenAIBatchSubmitOperator.template_fields) >= {
        "input_file_id",
        "input_path",
        "requests",
        "endpoint",
        "metadata",
    }
    assert set(OpenAIBatchResultsOperator.template_fields) >= {
        "output_file_id",
        "error_file_id",
        "destination",
    }


def test_long_identity_values_are_hashed_within_the_limit() -> None:
    def identity(run_id: str) -> dict[str, str]:
        return run_identity(SimpleNamespace(dag_id="d", run_id=run_id, task_id="t", map_index=-1))

    assert identity("manual__2025")["airflow_run_id"] == "manual__2025"
    hashed = identity("r" * 600)["airflow_run_id"]
    assert hashed.startswith("sha256:")
    assert len(hashed) <= 512
    assert hashed == identity("r" * 600)["airflow_run_id"] != identity("r" * 601)["airflow_run_id"]
    assert identity("r")["airflow_map_index"] == "-1"


def test_results_operator_needs_a_sensor_or_file_ids() -> None:
    with DAG("results_without_sensor", schedule=None):
        results = OpenAIBatchResultsOperator(task_id="download")

    with pytest.raises(AirflowFailException, match="found 0 OpenAIBatchSensor"):
        results._upstream_sensor()


def test_on_kill_cancels_the_batch_the_task_created(make_emulator, emulator_conn, tmp_path) -> None:
    from airflow_batch_provider import jsonl
    from airflow_batch_provider.hooks.batch import OpenAIBatchHook

    emulator_conn(make_emulator(request_delay=2, concurrency=1))
    hook = OpenAIBatchHook()
    request = {
        **REQUESTS[0],
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    jsonl.write_requests([request], tmp_path / "in.jsonl")
    batch = hook.create_batch(hook.upload_file(tmp_path / "in.jsonl").id, "/v1/chat/completions")
    operator = OpenAIBatchSubmitOperator(task_id="submit", input_file_id=batch.input_file_id)
    operator.on_kill()  # killed before it created anything: nothing to cancel
    operator.batch_id = batch.id  # what execute() records once the batch exists

    operator.on_kill()

    assert hook.get_batch(batch.id).status in ("cancelling", "cancelled")
