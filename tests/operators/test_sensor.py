"""OpenAIBatchSensor's parts: the progress line, arguments, trigger events, and on_kill (poke mode).

The sensor's outcomes against real batches are tested in tests/dags/test_workflow.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, AirflowSensorTimeout

from airflow_batch_provider.models import Batch
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor
from airflow_batch_provider.utils import elapsed_and_eta, format_progress

NOW = 1_800_000_000.0


def batch(status: str, created_ago: int, in_progress_ago: int | None = None, **counts: int) -> Batch:
    fields: dict[str, Any] = {
        "id": "batch_abc",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-1",
        "completion_window": "24h",
        "status": status,
        "created_at": int(NOW - created_ago),
    }
    if in_progress_ago is not None:
        fields["in_progress_at"] = int(NOW - in_progress_ago)
    if counts:
        fields["request_counts"] = counts
    return Batch.model_validate(fields)


def test_progress_line_with_eta() -> None:
    running = batch("in_progress", 2470, 2459, total=50_000, completed=12_333, failed=12)

    assert format_progress(running, NOW) == (
        "batch_abc in_progress: 12,345/50,000 done (24.7%), 12 failed, 00:41:10 elapsed, ETA 02:05:00"
    )


def test_progress_line_before_any_request_ran() -> None:
    assert format_progress(batch("validating", 5), NOW) == "batch_abc validating: 00:00:05 elapsed"
    started = batch("in_progress", 65, 60, total=10, completed=0, failed=0)
    assert (
        format_progress(started, NOW) == "batch_abc in_progress: 0/10 done (0.0%), 0 failed, 00:01:05 elapsed"
    )


def test_progress_line_of_a_finished_batch_has_no_eta() -> None:
    done = batch("completed", 90_000, 89_000, total=3, completed=2, failed=1)

    assert format_progress(done, NOW) == "batch_abc completed: 3/3 done (100.0%), 1 failed, 25:00:00 elapsed"


def test_elapsed_and_eta_in_seconds() -> None:
    running = batch("in_progress", 110, 100, total=400, completed=90, failed=10)
    assert elapsed_and_eta(running, NOW) == (110, 300)
    assert elapsed_and_eta(batch("validating", 5), NOW) == (5, None)
    assert elapsed_and_eta(batch("cancelled", 50, 40, total=4, completed=1, failed=0), NOW) == (50, None)
    ended = batch("completed", 3600, 3590, total=1, completed=1, failed=0).model_copy(
        update={"completed_at": int(NOW - 3000)}
    )
    assert elapsed_and_eta(ended, NOW) == (600, None)


def test_defaults() -> None:
    sensor = OpenAIBatchSensor(task_id="wait", batch_id="batch_abc")

    assert sensor.deferrable is True
    assert sensor.poll_interval == sensor.poke_interval == 60
    assert sensor.conn_id == "openai_batch_default"
    assert (sensor.allow_partial, sensor.cancel_on_kill) == (False, True)
    assert set(sensor.template_fields) == {"batch_id", "conn_id"}


def test_poll_interval_sets_the_poke_interval() -> None:
    sensor = OpenAIBatchSensor(
        task_id="wait", batch_id="b", poll_interval=7, deferrable=False, mode="reschedule"
    )

    assert sensor.poke_interval == 7


def test_trigger_error_event_fails_with_its_reason() -> None:
    sensor = OpenAIBatchSensor(task_id="wait", batch_id="b")
    event = {
        "status": "error",
        "batch_id": "b",
        "message": "GET /batches/b failed with HTTP 404",
        "batch": None,
    }

    with pytest.raises(AirflowException, match="HTTP 404"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]


def test_trigger_event_of_a_batch_gone_fails_without_retry() -> None:
    sensor = OpenAIBatchSensor(task_id="wait", batch_id="b")
    event = {"status": "error", "batch_id": "b", "message": "Batch b is not found", "status_code": 404}

    with pytest.raises(AirflowFailException, match="Batch b is not found"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]


def test_trigger_timeout_event_is_a_sensor_timeout() -> None:
    sensor = OpenAIBatchSensor(task_id="wait", batch_id="b", cancel_on_timeout=False)
    event = {"status": "timeout", "batch_id": "b", "message": "still in_progress", "batch": None}

    with pytest.raises(AirflowSensorTimeout, match=r"still in_progress The batch keeps running"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_on_kill_cancels_the_batch_unless_told_not_to(
    make_emulator, emulator_conn, tmp_path, cancel_on_kill: bool
) -> None:
    from airflow_batch_provider import jsonl
    from airflow_batch_provider.hooks.batch import OpenAIBatchHook

    emulator_conn(make_emulator(request_delay=2, concurrency=1))
    hook = OpenAIBatchHook()
    request = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    jsonl.write_requests([request], tmp_path / "in.jsonl")
    batch = hook.create_batch(hook.upload_file(tmp_path / "in.jsonl").id, "/v1/chat/completions")
    sensor = OpenAIBatchSensor(
        task_id="wait", batch_id=batch.id, deferrable=False, cancel_on_kill=cancel_on_kill
    )

    sensor.on_kill()

    cancelled = hook.get_batch(batch.id).status in ("cancelling", "cancelled")
    assert cancelled is cancel_on_kill
