"""A later try reattaches only to a batch made from the same input; otherwise it resubmits or fails."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_batch_provider.operators.batch import (
    OpenAIBatchOperator,
    OpenAIBatchResultsOperator,
    OpenAIBatchSubmitOperator,
)
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor
from tests.support.emulator import batches_of
from tests.support.requests import chat_request, chat_requests

START = datetime(2025, 1, 1)
SLOW = {"request_delay": 3.0, "concurrency": 1}  # the first batch still runs when the next try starts


class SubmitThenChange(OpenAIBatchSubmitOperator):
    """Dies after its first try created a batch; the next try's requests differ (a fixed prompt)."""

    def execute(self, context: Any) -> str:
        if context["ti"].try_number > 1:
            self.requests = [chat_request("a", "the fixed prompt"), chat_request("b")]
            return super().execute(context)
        batch_id = super().execute(context)
        raise RuntimeError(f"simulated crash after creating {batch_id}")


@pytest.mark.parametrize("on_input_change", ["resubmit", "fail"])
def test_changed_input_resubmits_or_fails(
    run_dag, make_emulator, emulator_conn, assert_no_secret, on_input_change: str
) -> None:
    server = make_emulator(**SLOW)
    emulator_conn(server)
    dag_id = f"reattach_changed_{on_input_change}"
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        submit = SubmitThenChange(
            task_id="submit",
            requests=[chat_request("a", "the first prompt"), chat_request("b")],
            on_input_change=on_input_change,
            retries=1,
            retry_delay=timedelta(0),
        )
        wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.1)
        wait >> OpenAIBatchResultsOperator(task_id="download")

    result = run_dag(dag)

    # The emulator lists newest first, in creation order; created_at (whole seconds) may tie.
    first, *others = reversed(batches_of(server, dag_id))
    if on_input_change == "fail":
        assert result.states["submit"] == "failed"
        assert "was made from other input" in result.output
        assert "set on_input_change='resubmit'" in result.output
        assert others == []
        assert first["status"] not in ("cancelling", "cancelled")  # left for the user to decide
        return
    assert result.state == "success", result.states
    assert "was made from other input; on_input_change='resubmit'" in result.output
    (second,) = others
    assert result.xcom("submit") == second["id"]
    assert first["status"] in ("cancelling", "cancelled")
    assert first["metadata"]["airflow_input_sha256"] != second["metadata"]["airflow_input_sha256"]
    from airflow_batch_provider.jsonl import read_results

    answers = {
        item.custom_id: item.response.body["choices"][0]["message"]["content"]
        for item in read_results(result.xcom("download")["output_path"])
        if item.response is not None
    }
    assert answers["a"] == "Emulated reply to: the fixed prompt"  # the new input's results
    assert_no_secret(result, server)


class RunThenChangeOnePart(OpenAIBatchOperator):
    """Dies after creating its parts; the next try's input differs in its second part only."""

    def execute(self, context: Any) -> Any:
        self._try_number = context["ti"].try_number
        if self._try_number > 1:
            requests = chat_requests(9)
            requests[4] = chat_request("r4", "a changed question")
            self.requests = requests
        return super().execute(context)

    def _wait(self, run: Any) -> None:
        if self._try_number == 1:
            raise RuntimeError("simulated crash after creating the parts")
        super()._wait(run)


def test_a_retried_one_task_run_reattaches_to_unchanged_parts_and_resubmits_changed_ones(
    run_dag, make_emulator, emulator_conn, assert_no_secret
) -> None:
    server = make_emulator()
    emulator_conn(server)
    with DAG("reattach_parts", schedule=None, start_date=START) as dag:
        RunThenChangeOnePart(
            task_id="run",
            requests=chat_requests(9),
            max_requests_per_batch=3,
            poll_interval=0.1,
            retries=1,
            retry_delay=timedelta(0),
        )

    result = run_dag(dag)

    assert result.state == "success", result.states
    assert result.output.count("reattached to batch") == 2
    assert "(part 1) was made from other input" in result.output
    batches = batches_of(server, "reattach_parts")
    assert len(batches) == 4  # three parts, and the changed one again
    assert result.xcom("run")["succeeded"] == 9
    assert_no_secret(result, server)
