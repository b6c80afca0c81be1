"""An empty-string output_file_id or error_file_id (some gateways send it) means no file, on every path."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from airflow_batch_provider.operators.batch import OpenAIBatchOperator, OpenAIBatchResultsOperator
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor
from tests.support.connections import set_connection
from tests.support.scripted_server import Reply, ScriptedServer, batch_json, file_json

START = datetime(2025, 1, 1)
COUNTS_OK = {"total": 2, "completed": 2, "failed": 0}
COUNTS_FAILED = {"total": 2, "completed": 0, "failed": 2}


def result_lines(ok: bool, *custom_ids: str) -> bytes:
    def line(custom_id: str) -> dict[str, Any]:
        if ok:
            body = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [],
                "usage": {"total_tokens": 3},
            }
            return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}
        body = {"error": {"message": "Bad request.", "type": "invalid_request_error", "code": "empty_array"}}
        return {"custom_id": custom_id, "response": {"status_code": 400, "body": body}, "error": None}

    return b"".join(json.dumps(line(custom_id)).encode() + b"\n" for custom_id in custom_ids)


def completed(batch_id: str, output: str, error: str, counts: dict[str, int]) -> Reply:
    fields = {"output_file_id": output, "error_file_id": error, "request_counts": counts}
    return Reply(json=batch_json(batch_id, "completed", **fields))


def test_every_path_treats_an_empty_file_id_as_absent(run_dag, monkeypatch) -> None:
    with ScriptedServer() as server:
        server.script("GET", "/batches/batch_ok", completed("batch_ok", "file-out", "", COUNTS_OK))
        server.script(
            "GET", "/batches/batch_failed", completed("batch_failed", "", "file-err", COUNTS_FAILED)
        )
        # OpenAIBatchOperator uploads, creates, polls, then downloads what the batch names.
        server.script("POST", "/files", Reply(json=file_json("file-in")))
        server.script("POST", "/batches", Reply(json=batch_json("batch_run", "validating")))
        server.script("GET", "/batches/batch_run", completed("batch_run", "file-run", "", COUNTS_OK))
        for file_id, content in (
            ("file-out", result_lines(True, "a", "b")),
            ("file-err", result_lines(False, "a", "b")),
            ("file-run", result_lines(True, "r0", "r1")),
        ):  # a download reads the file's size first, then its content
            server.script("GET", f"/files/{file_id}", Reply(json=file_json(file_id, bytes=len(content))))
            server.script("GET", f"/files/{file_id}/content", Reply(body=content))
        set_connection(
            monkeypatch, "scripted", conn_type="openai_batch", host=server.base_url, password="sk-scripted"
        )
        common = {"conn_id": "scripted"}
        with DAG("empty_file_ids", schedule=None, start_date=START) as dag:
            ok = OpenAIBatchSensor(task_id="ok", batch_id="batch_ok", poll_interval=0.1, **common)
            ok >> OpenAIBatchResultsOperator(task_id="ok_results", **common)
            failed = OpenAIBatchSensor(
                task_id="failed", batch_id="batch_failed", poll_interval=0.1, failure_threshold=1.0, **common
            )
            failed >> OpenAIBatchResultsOperator(task_id="failed_results", failure_threshold=1.0, **common)
            OpenAIBatchOperator(
                task_id="run",
                requests=[
                    {"custom_id": f"r{n}", "body": {"model": "m", "messages": [{"role": "user"}]}}
                    for n in range(2)
                ],
                poll_interval=0.1,
                **common,
            )

        result = run_dag(dag)

        downloads = [request.path for request in server.received("GET") if request.path.endswith("/content")]

    assert result.state == "success", result.states
    assert result.xcom("ok") == "file-out"
    assert result.xcom("ok", "error_file_id") is None
    assert result.xcom("failed") is None
    assert result.xcom("failed", "error_file_id") == "file-err"
    ok_summary, failed_summary = result.xcom("ok_results"), result.xcom("failed_results")
    assert (ok_summary["error_file_id"], ok_summary["error_path"], ok_summary["succeeded"]) == (None, None, 2)
    assert (failed_summary["output_file_id"], failed_summary["output_path"]) == (None, None)
    assert failed_summary["failed"] == 2
    assert result.xcom("run")["succeeded"] == 2
    assert sorted(downloads) == [
        "/files/file-err/content",
        "/files/file-out/content",
        "/files/file-run/content",
    ]
