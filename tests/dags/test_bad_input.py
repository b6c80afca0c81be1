"""Bad input fails the task once, without retries, after one upload at most (real Airflow, ``dag.test()``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_batch_provider.operators.batch import OpenAIBatchOperator, OpenAIBatchSubmitOperator
from tests.support.emulator import api
from tests.support.requests import chat_request

START = datetime(2025, 1, 1)
OPERATORS = {"submit": OpenAIBatchSubmitOperator, "one_task": OpenAIBatchOperator}


def files_on(server: Any) -> int:
    return len(api(server, "GET", "/v1/files", params={"limit": 10_000})["data"])


CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    # name: (operator arguments, uploads allowed, what the failure says)
    "nan": (
        {"requests": [chat_request("a"), chat_request("b", temperature=float("nan"))]},
        0,
        "line 2: invalid_json_line: This request cannot be written as JSON: it holds NaN",
    ),
    "infinity": (
        {"requests": [chat_request("a", temperature=float("inf"))]},
        0,
        "line 1: invalid_json_line",
    ),
    "lone-surrogate": (
        {"requests": [chat_request("a", text="\ud800")]},
        0,
        "half of a surrogate pair",
    ),
    "48h-window": (
        {"requests": [chat_request("a")], "completion_window": "48h"},
        1,
        "Invalid value: '48h'. Supported values are: '24h'.",
    ),
    "missing-input-path": (
        {"input_path": "/nonexistent/dir/input.jsonl"},
        0,
        "The input file /nonexistent/dir/input.jsonl does not exist",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("operator", list(OPERATORS))
def test_bad_input_fails_once_after_one_upload_at_most(
    run_dag, emulator, emulator_conn, assert_no_secret, operator, case
) -> None:
    emulator_conn(emulator)
    arguments, uploads, says = CASES[case]
    before = files_on(emulator)
    with DAG(f"bad_input_{operator}_{case.replace('-', '_')}", schedule=None, start_date=START) as dag:
        OPERATORS[operator](task_id="run", retries=2, retry_delay=timedelta(0), **arguments)

    result = run_dag(dag)

    assert result.states == {"run": "failed"}
    assert result.tries == {"run": 1}, "retried"
    assert files_on(emulator) - before <= uploads
    assert says in result.output
    assert_no_secret(result, emulator)


@pytest.mark.parametrize("operator", list(OPERATORS))
def test_a_mapped_task_with_bad_input_fails_once(run_dag, emulator, emulator_conn, operator) -> None:
    emulator_conn(emulator)
    bad = [chat_request("a", temperature=float("nan"))]
    fast = {"poll_interval": 0.2} if operator == "one_task" else {}
    with DAG(f"bad_input_mapped_{operator}", schedule=None, start_date=START) as dag:
        OPERATORS[operator].partial(task_id="run", retries=2, retry_delay=timedelta(0), **fast).expand(
            requests=[bad, [chat_request("ok")]]
        )

    result = run_dag(dag)

    assert result.tries["run"] == 1
    assert "it holds NaN" in result.output


def test_the_decorator_fails_once_on_requests_that_are_not_json(run_dag, emulator, emulator_conn) -> None:
    from airflow.sdk import task

    emulator_conn(emulator)
    before = files_on(emulator)
    with DAG("bad_input_decorator", schedule=None, start_date=START) as dag:

        @task.openai_batch(retries=2, retry_delay=timedelta(0))
        def ask() -> list[dict[str, Any]]:
            return [chat_request("a"), chat_request("b", top_p=float("nan"))]

        ask()

    result = run_dag(dag)

    assert result.tries == {"ask": 1}
    assert "line 2: invalid_json_line" in result.output
    assert files_on(emulator) == before
