"""submit >> wait >> download in real Airflow (``dag.test()``) against the emulator, outcome by outcome."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.operators.batch import OpenAIBatchResultsOperator, OpenAIBatchSubmitOperator
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor
from airflow_batch_provider.submission import STATE_KEY_PREFIX
from tests.support.emulator import api, batches_of, set_faults
from tests.support.requests import chat_request, rejected_request

START = datetime(2025, 1, 1)


#: Requests one after the other, so a batch of a few runs long enough for the sensor to defer.
SLOW = {"validation_delay": 0.3, "request_delay": 0.25, "concurrency": 1, "finalizing_delay": 0.1}
#: "24h" lasts 1.5 s, and each request 0.4 s: batches of a few requests expire.
EXPIRING = {"completion_window_seconds": 1.5, "request_delay": 0.4, "concurrency": 1}


def test_deferred_success(run_dag, make_emulator, emulator_conn, assert_no_secret) -> None:
    server = make_emulator(**SLOW)
    emulator_conn(server)
    requests = [chat_request(f"ok-{n}") for n in range(5)]
    requests.append(rejected_request("no-messages"))  # the endpoint answers 400
    with DAG("wf_deferred_success", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(task_id="submit", requests=requests, metadata={"team": "ml"})
        wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.3)
        wait >> OpenAIBatchResultsOperator(task_id="download")

    result = run_dag(dag)

    assert result.state == "success", result.states
    assert "Pausing task as DEFERRED" in result.output  # the sensor deferred
    assert " in_progress: " in result.output  # progress lines
    assert " done (" in result.output
    batch = result.xcom("wait", "batch")
    assert batch["id"] == result.xcom("submit")
    assert batch["metadata"] == {
        "team": "ml",
        "airflow_dag_id": "wf_deferred_success",
        "airflow_run_id": batch["metadata"]["airflow_run_id"],
        "airflow_task_id": "submit",
        "airflow_map_index": "-1",
        "airflow_input_sha256": batch["metadata"]["airflow_input_sha256"],
        "batch_create_token": batch["metadata"]["batch_create_token"],  # the client's, for its retries
    }
    # The user's key, the run identity (4) and fingerprint (no part slot for a lone batch), the token.
    assert len(batch["metadata"]) == 1 + 5 + 1
    assert batch["metadata"]["airflow_input_sha256"].startswith("sha256:")
    assert result.xcom("submit", "input_file_id") == batch["input_file_id"]
    assert result.xcom("wait") == batch["output_file_id"]
    assert result.xcom("wait", "error_file_id") == batch["error_file_id"] is not None
    assert result.xcom("wait", "request_counts") == {"total": 6, "completed": 5, "failed": 1}
    summary = result.xcom("download")
    assert (summary["succeeded"], summary["failed"]) == (5, 1)
    assert summary["errors"][0]["custom_id"] == "no-messages"
    assert summary["errors"][0]["status_code"] == 400
    assert Path(summary["output_path"]).is_file()
    assert Path(summary["error_path"]).is_file()
    assert_no_secret(result, server)


def test_invalid_requests_fail_before_upload(run_dag, emulator, emulator_conn, assert_no_secret) -> None:
    emulator_conn(emulator)
    files_before = len(api(emulator, "GET", "/v1/files")["data"])
    requests = [
        chat_request("a"),
        {"method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini"}},
        {**chat_request("c"), "url": "/v1/embeddings"},
    ]
    with DAG("wf_invalid_requests", schedule=None, start_date=START) as dag:
        OpenAIBatchSubmitOperator(task_id="submit", requests=requests, retries=2, retry_delay=timedelta(0))

    result = run_dag(dag)

    assert result.states == {"submit": "failed"}  # bad input is not retried
    assert "line 2, custom_id: missing_required_parameter" in result.output
    assert "line 2, body.messages: invalid_request: Messages parameter is required." in result.output
    assert "line 3, url: invalid_url" in result.output
    assert "XCom not found" not in result.output  # the extra link does not look for a URL
    assert len(api(emulator, "GET", "/v1/files")["data"]) == files_before
    assert_no_secret(result, emulator)


def test_batch_failed_by_the_api_lists_every_error(
    run_dag, emulator, emulator_conn, assert_no_secret, tmp_path: Path
) -> None:
    emulator_conn(emulator)
    path = tmp_path / "requests.jsonl"
    path.write_text(
        '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
        "this is not json\n"
        '{"method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    )
    with DAG("wf_api_validation", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(task_id="submit", input_path=str(path), validate=False)
        OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.2)

    result = run_dag(dag)

    assert result.states == {"submit": "success", "wait": "failed"}
    assert "failed with 4 error(s)" in result.output
    assert "line 1, body.model: invalid_request: Model parameter is required." in result.output
    assert "line 2: invalid_json_line" in result.output
    assert "line 3, custom_id: missing_required_parameter" in result.output
    assert "line 3, body.model: invalid_request" in result.output
    assert_no_secret(result, emulator)


def test_expired_fails_unless_partial_results_are_allowed(
    run_dag, make_emulator, emulator_conn, assert_no_secret
) -> None:
    server = make_emulator(**EXPIRING)
    emulator_conn(server)
    with DAG("wf_expired", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(
            task_id="submit", requests=[chat_request(f"r{n}") for n in range(8)]
        )
        strict = OpenAIBatchSensor(task_id="strict", batch_id=submit.output, poll_interval=0.3)
        partial = OpenAIBatchSensor(
            task_id="partial", batch_id=submit.output, poll_interval=0.3, allow_partial=True
        )
        submit >> strict
        partial >> OpenAIBatchResultsOperator(task_id="download", sensor_task_id="partial")

    result = run_dag(dag)

    assert result.states == {
        "submit": "success",
        "strict": "failed",
        "partial": "success",
        "download": "success",
    }
    assert "is expired" in result.output
    assert "allow_partial=True" in result.output
    counts = result.xcom("partial", "request_counts")
    assert 0 < counts["completed"] < 8
    summary = result.xcom("download")
    assert summary["succeeded"] == counts["completed"]
    assert summary["succeeded"] + summary["failed"] == 8
    assert {error["code"] for error in summary["errors"]} == {"batch_expired"}
    assert_no_secret(result, server)


@task
def cancel(batch_id: str) -> None:
    OpenAIBatchHook().cancel_batch(batch_id)


def test_cancelled_fails_unless_partial_results_are_allowed(
    run_dag, make_emulator, emulator_conn, assert_no_secret
) -> None:
    server = make_emulator(**SLOW)
    emulator_conn(server)
    with DAG("wf_cancelled", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(
            task_id="submit", requests=[chat_request(f"r{n}") for n in range(20)]
        )
        cancelled = cancel(submit.output)
        for task_id, allow_partial in (("strict", False), ("partial", True)):
            sensor = OpenAIBatchSensor(
                task_id=task_id, batch_id=submit.output, poll_interval=0.2, allow_partial=allow_partial
            )
            cancelled >> sensor

    result = run_dag(dag)

    assert result.states == {
        "submit": "success",
        "cancel": "success",
        "strict": "failed",
        "partial": "success",
    }
    assert "is cancelled" in result.output
    assert result.xcom("partial", "batch")["status"] == "cancelled"
    assert_no_secret(result, server)


def test_sensor_rides_out_429s_and_5xx(run_dag, make_emulator, emulator_conn, assert_no_secret) -> None:
    # One retry in the hook, so that the faults reach the sensor and the trigger too.
    server = make_emulator(**SLOW, enable_admin=True)
    emulator_conn(server, max_retries=1)
    rules = [
        {"method": "GET", "path": "/v1/batches/*", "status": 503, "count": 3},
        {"method": "GET", "path": "/v1/batches/*", "status": 429, "retry_after": 0.1, "count": 3},
        {"method": "GET", "path": "/v1/batches/*", "status": 500, "count": 2},
    ]

    @task
    def inject_faults() -> None:
        set_faults(server, rules)

    with DAG("wf_faults", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(
            task_id="submit", requests=[chat_request(f"r{n}") for n in range(8)]
        )
        wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.2)
        submit >> inject_faults() >> wait >> OpenAIBatchResultsOperator(task_id="download")

    try:
        result = run_dag(dag)
        left = api(server, "GET", "/_emulator/faults")["rules"]
    finally:
        api(server, "DELETE", "/_emulator/faults")

    assert result.state == "success", result.states
    assert [rule["count"] for rule in left] == [0, 0, 0]  # every injected fault was met
    assert "will retry" in result.output or "will look again" in result.output
    assert result.xcom("download")["succeeded"] == 8
    assert_no_secret(result, server)


class CrashingSubmit(OpenAIBatchSubmitOperator):
    """Loses its first try right after creating the batch, like a worker that died."""

    def __init__(self, *, forget_state: str | None = None, cancel: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.forget_state = forget_state
        self.cancel = cancel

    def execute(self, context: Any) -> str:
        batch_id = super().execute(context)
        if context["ti"].try_number == 1:
            store = context.get("task_state_store")  # Airflow 3.3+; 3.1 and 3.2 look up the metadata
            if store is None:
                pass
            elif self.forget_state == "id":  # died after the paid call, before recording the batch id
                record = store.get(STATE_KEY_PREFIX)
                store.set(
                    STATE_KEY_PREFIX, {"intent_at": time.time() - 1, "fingerprint": record["fingerprint"]}
                )
            elif self.forget_state == "all":  # as on Airflow < 3.3: no durable state at all
                store.delete(STATE_KEY_PREFIX)
            if self.cancel:  # and someone cancelled its batch meanwhile
                self.hook.cancel_batch(batch_id)
            raise RuntimeError(f"simulated crash after creating {batch_id}")
        return batch_id


@pytest.mark.parametrize(
    "forget_state", [None, "id", "all"], ids=["task_state_store", "intent_recorded", "metadata_lookup"]
)
def test_retry_reattaches_to_the_batch_of_the_failed_try(
    run_dag, emulator, emulator_conn, assert_no_secret, forget_state: str | None
) -> None:
    emulator_conn(emulator)
    dag_id = f"wf_retry_{forget_state or 'state'}"
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        submit = CrashingSubmit(
            task_id="submit",
            requests=[chat_request("a"), chat_request("b")],
            forget_state=forget_state,
            retries=1,
            retry_delay=timedelta(0),
        )
        OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.2)

    result = run_dag(dag)

    assert result.state == "success", result.states
    assert "simulated crash after creating" in result.output
    assert "Reattaching to batch" in result.output
    batches = batches_of(emulator, dag_id)
    assert [batch["id"] for batch in batches] == [result.xcom("submit")]
    assert_no_secret(result, emulator)


def test_poke_and_reschedule_modes(run_dag, make_emulator, emulator_conn, assert_no_secret) -> None:
    server = make_emulator(**SLOW)
    emulator_conn(server)
    with DAG("wf_modes", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(
            task_id="submit", requests=[chat_request(f"r{n}") for n in range(6)]
        )
        for mode in ("poke", "reschedule"):
            OpenAIBatchSensor(
                task_id=mode, batch_id=submit.output, deferrable=False, mode=mode, poll_interval=0.5
            )

    result = run_dag(dag)

    assert result.states == {"submit": "success", "poke": "success", "reschedule": "success"}
    assert "Pausing task as DEFERRED" not in result.output
    assert result.xcom("poke") == result.xcom("reschedule") is not None
    assert " in_progress: " in result.output
    assert_no_secret(result, server)


def test_object_storage_input_and_destination(
    run_dag, emulator, emulator_conn, assert_no_secret, tmp_path: Path
) -> None:
    from airflow.sdk import ObjectStoragePath

    emulator_conn(emulator)
    source = ObjectStoragePath(f"file://{tmp_path}/in/requests.jsonl")
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("".join(json.dumps(chat_request(f"r{n}")) + "\n" for n in range(3)))
    with DAG("wf_object_storage", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(task_id="submit", input_path=source)
        wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.2)
        wait >> OpenAIBatchResultsOperator(task_id="download", destination=f"file://{tmp_path}/out")

    result = run_dag(dag)

    assert result.state == "success", result.states
    summary = result.xcom("download")
    output = tmp_path / "out" / f"{result.xcom('wait')}.jsonl"
    assert summary["output_path"] == str(output)
    assert len(output.read_text().splitlines()) == summary["succeeded"] == 3
    assert_no_secret(result, emulator)


def test_results_that_disagree_with_the_counts_fail(
    run_dag, emulator, emulator_conn, assert_no_secret
) -> None:
    emulator_conn(emulator)
    with DAG("wf_count_check", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(task_id="submit", requests=[chat_request("a"), chat_request("b")])
        wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.2)
        OpenAIBatchResultsOperator(
            task_id="download",
            output_file_id=wait.output,
            request_counts={"total": 3, "completed": 3, "failed": 0},  # one line more than the file
        )

    result = run_dag(dag)

    assert result.states == {"submit": "success", "wait": "success", "download": "failed"}
    assert "2 succeeded line(s), 3 completed request(s)" in result.output
    assert_no_secret(result, emulator)


@pytest.mark.parametrize("forget_state", [False, True], ids=["task_state_store", "metadata_lookup"])
def test_retry_does_not_reattach_to_a_cancelled_batch(
    run_dag, emulator, emulator_conn, assert_no_secret, forget_state: bool
) -> None:
    emulator_conn(emulator)
    dag_id = f"wf_retry_cancelled_{'metadata' if forget_state else 'state'}"
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        CrashingSubmit(
            task_id="submit",
            requests=[chat_request("a")],
            forget_state=forget_state,
            cancel=True,
            retries=1,
            retry_delay=timedelta(0),
        )

    result = run_dag(dag)

    assert result.states == {"submit": "success"}
    assert "submitting anew" in result.output
    second, first = batches_of(emulator, dag_id)  # newest first
    assert first["status"] in ("cancelling", "cancelled")
    assert second["id"] == result.xcom("submit")
    assert_no_secret(result, emulator)


def test_completed_batch_in_which_every_request_failed_fails(
    run_dag, emulator, emulator_conn, assert_no_secret
) -> None:
    emulator_conn(emulator)
    rejected = [rejected_request(f"r{n}") for n in range(3)]
    with DAG("wf_all_failed", schedule=None, start_date=START) as dag:
        submit = OpenAIBatchSubmitOperator(task_id="submit", requests=rejected)
        OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=0.2)

    result = run_dag(dag)

    assert result.states == {"submit": "success", "wait": "failed"}
    batch = result.xcom("wait", "batch")
    assert (batch["status"], batch["output_file_id"]) == ("completed", None)
    assert (
        f"Batch {batch['id']}: 3 of 3 request(s) failed (every one); commonest reasons: "
        "empty_array (3): Invalid 'messages': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead. "
        f"See its error file {batch['error_file_id']}."
    ) in result.output
    assert result.xcom("wait", "request_counts") == {"total": 3, "completed": 0, "failed": 3}
    assert_no_secret(result, emulator)
