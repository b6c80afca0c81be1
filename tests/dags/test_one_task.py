"""OpenAIBatchOperator and @task.openai_batch in real Airflow (``dag.test()``) against the emulator."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task
from pydantic import BaseModel, ConfigDict, Field

from airflow_batch_provider.jsonl import read_results
from airflow_batch_provider.operators.batch import OpenAIBatchOperator
from tests.support.emulator import batch_status, batches_of
from tests.support.requests import REJECTED_CODE, chat_request, chat_requests, rejected_request

START = datetime(2025, 1, 1)
#: Quick polls and pauses, so that rounds take a fraction of a second.
QUICK = {"poll_interval": 0.1, "retry_round_delay": 0.05}


def custom_ids(path: str) -> list[str]:
    return [result.custom_id for result in read_results(path)]


def test_parts_run_in_one_task_and_merge_in_input_order(
    run_dag, emulator, emulator_conn, assert_no_secret, tmp_path: Path
) -> None:
    emulator_conn(emulator)
    requests = chat_requests(25)
    for n in (3, 17):  # the endpoint answers 400: final, never retried
        requests[n] = rejected_request(f"r{n}")
    with DAG("one_task_parts", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(
            task_id="run",
            requests=requests,
            max_requests_per_batch=10,
            destination=str(tmp_path),
            prices={"gpt-4o-mini": {"input": 0.075, "output": 0.30}},
            **QUICK,
        )

    result = run_dag(dag)

    assert result.state == "success", result.states
    summary = result.xcom("run")
    assert (summary["requests"], summary["succeeded"], summary["failed"]) == (25, 23, 2)
    assert summary["error_codes"] == {REJECTED_CODE: 2}
    assert len(summary["batches"]["0"]) == 3
    assert "1" not in summary["batches"]  # 400s are not retried
    assert [batch["request_counts"]["total"] for batch in batches_of(emulator, "one_task_parts")] == [
        5,
        10,
        10,
    ]
    expected = [f"r{n}" for n in range(25)]
    assert custom_ids(summary["output_path"]) == [cid for cid in expected if cid not in ("r3", "r17")]
    assert custom_ids(summary["error_path"]) == ["r3", "r17"]
    assert summary["output_path"] == str(tmp_path / "output.jsonl")
    assert summary["tokens"]["total"] > 0
    assert summary["estimated_cost"] > 0
    assert "3 batch(es)" in result.output  # one trigger watched them all
    assert result.xcom("run", "batch_url").startswith(emulator.url)
    assert result.xcom("run", "_link_OpenAIBatchLink") == result.xcom("run", "batch_url")  # the button
    assert len(result.xcom("run", "batch_urls")) == 3
    assert_no_secret(result, emulator)


def test_a_run_where_every_request_failed_fails_unless_the_threshold_allows(
    run_dag, emulator, emulator_conn, assert_no_secret
) -> None:
    emulator_conn(emulator)
    broken = [rejected_request(f"r{n}") for n in range(3)]
    with DAG("one_task_all_failed", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(task_id="strict", requests=broken, **QUICK)
        OpenAIBatchOperator(task_id="lenient", requests=broken, failure_threshold=1.0, **QUICK)

    result = run_dag(dag)

    assert result.states == {"strict": "failed", "lenient": "success"}
    assert "3 of 3 request(s) failed (100.0%): every request failed" in result.output
    assert f"{REJECTED_CODE} (3)" in result.output
    assert result.xcom("lenient")["failed"] == 3
    assert_no_secret(result, emulator)


class CrashAfterSubmitting(OpenAIBatchOperator):
    """Loses its first try right after creating its batches, before deferring: a worker that died."""

    def _wait(self, run: Any) -> None:
        if self._try_number == 1:
            raise RuntimeError(f"simulated crash after creating {len(run.live)} batch(es)")
        super()._wait(run)

    def execute(self, context: Any) -> Any:
        self._try_number = context["ti"].try_number
        return super().execute(context)


def test_a_retried_task_reattaches_to_every_part(run_dag, emulator, emulator_conn, assert_no_secret) -> None:
    emulator_conn(emulator)
    with DAG("one_task_reattach", schedule=None, start_date=START) as dag:
        CrashAfterSubmitting(
            task_id="run",
            requests=chat_requests(12),
            max_requests_per_batch=5,
            retries=1,
            retry_delay=timedelta(0),
            **QUICK,
        )

    result = run_dag(dag)

    assert result.state == "success", result.states
    assert "simulated crash after creating 3 batch(es)" in result.output
    assert result.output.count("reattached to batch") == 3
    assert len(batches_of(emulator, "one_task_reattach")) == 3  # not six
    assert result.xcom("run")["succeeded"] == 12
    assert_no_secret(result, emulator)


def test_the_timeout_cancels_every_live_part(run_dag, make_emulator, emulator_conn, assert_no_secret) -> None:
    server = make_emulator(request_delay=1.0, concurrency=1)
    emulator_conn(server)
    with DAG("one_task_timeout", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(
            task_id="run", requests=chat_requests(20), max_requests_per_batch=10, timeout=1.0, **QUICK
        )

    result = run_dag(dag)

    assert result.states == {"run": "failed"}
    assert "still running at the deadline" in result.output
    batches = batches_of(server, "one_task_timeout")
    assert len(batches) == 2
    assert {batch_status(server, batch["id"]) for batch in batches} <= {"cancelling", "cancelled"}
    assert_no_secret(result, server)


def test_an_empty_request_list_skips(run_dag, emulator, emulator_conn) -> None:
    emulator_conn(emulator)
    with DAG("one_task_empty", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(task_id="run", requests=[], **QUICK)

    assert run_dag(dag).states == {"run": "skipped"}


def test_bad_input_fails_once_naming_the_line(run_dag, emulator, emulator_conn) -> None:
    emulator_conn(emulator)
    requests = [chat_request("a"), chat_request("a"), {"custom_id": "c", "body": "not an object"}]
    with DAG("one_task_bad_input", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(task_id="run", requests=requests, retries=2, retry_delay=timedelta(0), **QUICK)

    result = run_dag(dag)

    assert result.states == {"run": "failed"}
    assert "line 2, custom_id: duplicate_custom_id" in result.output
    assert "line 3, body: invalid_type" in result.output
    assert result.output.count("duplicate_custom_id") == 1  # failed once, not retried
    assert batches_of(emulator, "one_task_bad_input") == []


def test_the_decorator_takes_prompt_strings_and_returns_results(
    run_dag, emulator, emulator_conn, assert_no_secret
) -> None:
    emulator_conn(emulator)
    with DAG("one_task_decorator", schedule=None, start_date=START) as dag:

        @task.openai_batch(model="gpt-4o-mini", return_results=True, **QUICK)
        def ask(questions: list[str]) -> list[str]:
            return [f"Answer briefly: {question}" for question in questions]

        @task
        def read(answers: dict[str, Any]) -> int:
            return len(answers)

        read(ask(["one?", "two?", "three?"]))

    result = run_dag(dag)

    assert result.state == "success", result.states
    answers = result.xcom("ask")
    assert list(answers) == ["request-0", "request-1", "request-2"]
    assert answers["request-1"] == "Emulated reply to: Answer briefly: two?"
    assert result.xcom("read") == 3
    assert_no_secret(result, emulator)


def test_return_results_refuses_results_above_the_cap(run_dag, emulator, emulator_conn) -> None:
    emulator_conn(emulator)
    with DAG("one_task_cap", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(
            task_id="run", requests=chat_requests(20), return_results=True, max_returned_bytes=200, **QUICK
        )

    result = run_dag(dag)

    assert result.states == {"run": "failed"}
    assert "larger than max_returned_bytes=200" in result.output


def test_120000_requests_become_three_parts_and_one_merged_result(
    run_dag, make_emulator, emulator_conn, tmp_path: Path
) -> None:
    server = make_emulator(request_delay=0, validation_delay=0, finalizing_delay=0, concurrency=64)
    emulator_conn(server)
    source = tmp_path / "requests.jsonl"
    with source.open("w") as out:
        for n in range(120_000):
            out.write(json.dumps(chat_request(f"q{n}", f"q {n}")) + "\n")
    with DAG("one_task_120k", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(
            task_id="run", input_path=str(source), destination=str(tmp_path / "out"), poll_interval=1
        )

    result = run_dag(dag)

    assert result.state == "success", result.states
    summary = result.xcom("run")
    assert (summary["requests"], summary["succeeded"], summary["failed"]) == (120_000, 120_000, 0)
    assert len(summary["batches"]["0"]) == 3
    totals = sorted(batch["request_counts"]["total"] for batch in batches_of(server, "one_task_120k"))
    assert totals == [20_000, 50_000, 50_000]
    ids = custom_ids(summary["output_path"])
    assert ids == [f"q{n}" for n in range(120_000)]  # every custom_id once, in input order


def test_a_retry_round_fixes_transient_failures_and_leaves_400s_failed(
    run_dag, make_emulator, emulator_conn, assert_no_secret
) -> None:
    server = make_emulator()
    emulator_conn(server)
    requests = chat_requests(10)
    for n in (1, 4, 7):  # fail once with a 500: the first retry round answers them
        requests[n]["body"]["emulator_fail"] = {"status": 500, "times": 1}
    requests[8]["body"]["emulator_fail"] = {"status": 429, "times": 2}  # needs the second round
    for n in (2, 5):  # a request error: never retried
        requests[n] = rejected_request(f"r{n}")
    with DAG("one_task_retry_rounds", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(
            task_id="run", requests=requests, max_retry_rounds=2, failure_threshold=0.5, **QUICK
        )

    result = run_dag(dag)

    assert result.state == "success", result.states
    summary = result.xcom("run")
    assert (summary["succeeded"], summary["failed"]) == (8, 2)
    assert summary["error_codes"] == {REJECTED_CODE: 2}
    assert [len(summary["batches"][round_]) for round_ in ("0", "1", "2")] == [1, 1, 1]
    retried = sorted(
        batch["request_counts"]["total"] for batch in batches_of(server, "one_task_retry_rounds")
    )
    assert retried == [1, 4, 10]  # round 1: the four transient failures; round 2: the 429 once more
    assert custom_ids(summary["output_path"]) == [f"r{n}" for n in range(10) if n not in (2, 5)]
    assert "Retry round 1 of 2: 4 request(s)" in result.output
    assert_no_secret(result, server)


def test_parts_refused_for_the_enqueued_token_limit_are_submitted_again(
    run_dag, make_emulator, emulator_conn, assert_no_secret, tmp_path: Path
) -> None:
    requests = chat_requests(9)
    part_bytes = sum(len(json.dumps(request)) + 1 for request in requests[:3])
    # Room for one part of three requests at a time (a quarter of its bytes, plus a little).
    server = make_emulator(enqueued_token_limit=part_bytes // 4 + 20, request_delay=0.05, concurrency=1)
    emulator_conn(server)
    with DAG("one_task_token_limit", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(task_id="run", requests=requests, max_requests_per_batch=3, **QUICK)

    result = run_dag(dag)

    assert result.state == "success", result.states
    summary = result.xcom("run")
    assert (summary["succeeded"], summary["failed"]) == (9, 0)
    refused = [batch for batch in batches_of(server, "one_task_token_limit") if batch["status"] == "failed"]
    assert refused
    assert {batch["errors"]["data"][0]["code"] for batch in refused} == {"token_limit_exceeded"}
    assert "refused for the enqueued-token limit; submitting them again" in result.output
    assert custom_ids(summary["output_path"]) == [f"r{n}" for n in range(9)]
    assert_no_secret(result, server)


class Forecast(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str
    days: int = Field(ge=1, le=7)


def test_output_type_validates_structured_answers_and_tool_call_arguments(
    run_dag, emulator, emulator_conn
) -> None:
    emulator_conn(emulator)
    schema = {"name": "forecast", "strict": True, "schema": Forecast.model_json_schema()}
    tool = {"type": "function", "function": {"name": "forecast", "parameters": Forecast.model_json_schema()}}
    asked = [{"role": "user", "content": "Forecast for Lyon, in JSON"}]
    requests = [
        {
            "custom_id": "json",
            "body": {
                "model": "gpt-4o-mini",
                "messages": asked,
                "response_format": {"type": "json_schema", "json_schema": schema},
            },
        },
        {
            "custom_id": "tool",
            "body": {"model": "gpt-4o-mini", "messages": asked, "tools": [tool], "tool_choice": "required"},
        },
    ]
    with DAG("one_task_output_type", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(
            task_id="run", requests=requests, output_type=Forecast, return_results=True, **QUICK
        )

    result = run_dag(dag)

    assert result.state == "success", result.states
    answers = result.xcom("run")
    assert set(answers) == {"json", "tool"}
    for answer in answers.values():
        forecast = Forecast.model_validate(answer)
        assert 1 <= forecast.days <= 7
