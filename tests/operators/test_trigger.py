"""OpenAIBatchTrigger against the emulator: events, errors, deadline, on_kill, serialization."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest

from airflow_batch_provider import jsonl

try:  # Airflow 3.2+
    from airflow.sdk.serde import deserialize, serialize
except ImportError:  # Airflow 3.1
    from airflow.serialization.serde import deserialize, serialize
from airflow_batch_provider.client.pool import shared_http_client
from airflow_batch_provider.emulator.server import EmulatorServer
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.triggers.batch import OpenAIBatchesTrigger, OpenAIBatchTrigger
from tests.support.connections import set_connection
from tests.support.emulator import batch_status, set_faults
from tests.support.requests import chat_requests
from tests.support.scripted_server import Reply, ScriptedServer
from tests.support.sdk import client_for, gone, wait_for


def submit(server: EmulatorServer, tmp_path: Any, requests: int = 5) -> str:
    """Create a batch of chat requests on ``server`` (through the connection pointing at it)."""
    path = tmp_path / "requests.jsonl"
    jsonl.write_requests(chat_requests(requests), path)
    hook = OpenAIBatchHook()
    return hook.create_batch(hook.upload_file(path).id, "/v1/chat/completions").id


def run(trigger: OpenAIBatchTrigger) -> list[dict[str, Any]]:
    """Every event the trigger fires until its run() returns."""

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_serialize_round_trips_without_secret(emulator, emulator_conn) -> None:
    emulator_conn(emulator)
    trigger = OpenAIBatchTrigger("openai_batch_default", "batch_1", poll_interval=5, deadline=1e9)

    classpath, kwargs = trigger.serialize()

    assert classpath == "airflow_batch_provider.triggers.batch.OpenAIBatchTrigger"
    assert kwargs == {
        "conn_id": "openai_batch_default",
        "batch_id": "batch_1",
        "poll_interval": 5.0,
        "deadline": 1e9,
        "cancel_on_kill": True,
    }
    # The way Airflow stores it while the task is deferred, and rebuilds it in the triggerer.
    rebuilt = OpenAIBatchTrigger(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert emulator.api_key not in json.dumps(kwargs)
    assert emulator.api_key not in repr(trigger)


def test_run_fires_one_event_with_the_final_batch(make_emulator, emulator_conn, tmp_path) -> None:
    server = make_emulator(request_delay=0.05, concurrency=1)
    emulator_conn(server)
    batch_id = submit(server, tmp_path, requests=8)

    events = run(OpenAIBatchTrigger("openai_batch_default", batch_id, poll_interval=0.1))

    assert len(events) == 1
    event = events[0]
    assert event["status"] == "terminal"
    assert event["batch_id"] == batch_id
    assert event["batch"]["status"] == "completed"
    assert event["batch"]["request_counts"] == {"total": 8, "completed": 8, "failed": 0}
    json.dumps(event)  # JSON-safe, as a trigger event must be


def test_run_keeps_waiting_through_transient_errors(make_emulator, emulator_conn, tmp_path) -> None:
    server = make_emulator(request_delay=0.05, enable_admin=True)
    emulator_conn(server, max_retries=0)  # every fault reaches the trigger itself
    batch_id = submit(server, tmp_path)
    rules_left = set_faults(
        server,
        [
            {"method": "GET", "path": "/v1/batches/*", "status": 503, "count": 2},
            {"method": "GET", "path": "/v1/batches/*", "status": 429, "retry_after": 0.1, "count": 2},
            {"method": "GET", "path": "/v1/batches/*", "drop": True, "count": 1},
            {"method": "GET", "path": "/v1/batches/*", "status": 500, "count": 1},
        ],
    )

    events = run(OpenAIBatchTrigger("openai_batch_default", batch_id, poll_interval=0.2))

    assert [event["status"] for event in events] == ["terminal"]
    assert events[0]["batch"]["status"] == "completed"
    assert [rule["count"] for rule in rules_left()] == [0, 0, 0, 0]


def test_unknown_batch_ends_the_wait_with_an_error(emulator, emulator_conn) -> None:
    emulator_conn(emulator)

    events = run(OpenAIBatchTrigger("openai_batch_default", "batch_does_not_exist", poll_interval=0.1))

    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert "404" in events[0]["message"]
    assert "batch_does_not_exist" in events[0]["message"]
    assert events[0]["batch"] is None


def test_a_batch_past_the_retention_ends_the_wait_saying_so(make_emulator, emulator_conn, tmp_path) -> None:
    server = make_emulator(batch_retention_seconds=1)
    emulator_conn(server)
    batch_id = submit(server, tmp_path, requests=1)
    client = client_for(server)
    wait_for(client, batch_id)
    gone(lambda: client.batches.retrieve(batch_id))

    (event,) = run(OpenAIBatchTrigger("openai_batch_default", batch_id, poll_interval=0.1))
    (several,) = [
        event.payload
        for event in asyncio.run(
            _collect(OpenAIBatchesTrigger("openai_batch_default", [batch_id], poll_interval=0.1))
        )
    ]

    for payload in (event, several):
        assert (payload["status"], payload["status_code"]) == ("error", 404)
        assert payload["message"].startswith(
            f"Stopped waiting for batch {batch_id}: Batch {batch_id} is not found (HTTP 404): "
            "it is past the API's retention"
        )


async def _collect(trigger: Any) -> list[Any]:
    return [event async for event in trigger.run()]


def test_rejected_key_ends_the_wait_with_an_error_that_hides_it(emulator, emulator_conn, monkeypatch) -> None:
    emulator_conn(emulator)
    wrong_key = "sk-wrong-key-0123456789"
    conn = json.loads(os.environ["AIRFLOW_CONN_OPENAI_BATCH_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_BATCH_DEFAULT", json.dumps({**conn, "password": wrong_key}))

    events = run(OpenAIBatchTrigger("openai_batch_default", "batch_x", poll_interval=0.1))

    assert [event["status"] for event in events] == ["error"]
    assert "401" in events[0]["message"]
    assert wrong_key not in json.dumps(events)


def test_an_answer_that_is_not_a_batch_ends_the_wait(monkeypatch) -> None:
    # A proxy's login page answers 200: waiting will not turn it into a batch.
    with ScriptedServer() as server:
        server.script("GET", "/batches/b1", Reply(body=b"<html>login</html>"))
        set_connection(monkeypatch, "behind_proxy", conn_type="openai_batch", host=server.base_url)

        events = run(OpenAIBatchTrigger("behind_proxy", "b1", poll_interval=0.1, deadline=time.time() + 10))

        assert [event["status"] for event in events] == ["error"]
        assert "not a Batch" in events[0]["message"]
        assert len(server.received("GET", "/batches/b1")) == 1


def test_deadline_ends_the_wait_with_a_timeout(make_emulator, emulator_conn, tmp_path) -> None:
    server = make_emulator(request_delay=2, concurrency=1)
    emulator_conn(server)
    batch_id = submit(server, tmp_path)
    started = time.monotonic()

    events = run(
        OpenAIBatchTrigger("openai_batch_default", batch_id, poll_interval=10, deadline=time.time() + 0.5)
    )

    assert time.monotonic() - started < 5  # the deadline cut the 10 s poll short
    assert [event["status"] for event in events] == ["timeout"]
    assert events[0]["batch"]["status"] in ("validating", "in_progress")
    assert "deadline" in events[0]["message"]


def test_triggers_of_one_loop_share_a_connection_reading_and_a_client(
    emulator, emulator_conn, monkeypatch
) -> None:
    emulator_conn(emulator)
    readings = []
    read = OpenAIBatchHook._read_settings

    async def counted_read(self):
        readings.append(self.conn_id)
        return await read(self)

    monkeypatch.setattr(OpenAIBatchHook, "_read_settings", counted_read)

    async def settings_and_clients() -> list[tuple[object, object]]:
        # Started together, before any has read the connection: one reading serves them all.
        triggers = [OpenAIBatchTrigger("openai_batch_default", "b") for _ in range(6)]
        settings = await asyncio.gather(*(trigger.hook.aget_settings() for trigger in triggers))
        return [(each, await shared_http_client(each)) for each in settings]

    first_loop, second_loop = asyncio.run(settings_and_clients()), asyncio.run(settings_and_clients())

    assert readings == ["openai_batch_default"] * 2  # once per loop
    assert all(pair[0] is first_loop[0][0] and pair[1] is first_loop[0][1] for pair in first_loop)
    assert all(pair[1] is second_loop[0][1] for pair in second_loop)
    assert first_loop[0][1] is not second_loop[0][1]  # clients cannot outlive their loop


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_on_kill_without_a_task_instance_keeps_the_batch(
    make_emulator, emulator_conn, tmp_path, cancel_on_kill: bool
) -> None:
    """Only a task instance the user stopped cancels (tests/dags/test_trigger_kill.py); none, none does."""
    server = make_emulator(request_delay=2, concurrency=1, cancel_delay=0.05)
    emulator_conn(server)
    batch_id = submit(server, tmp_path)
    trigger = OpenAIBatchTrigger("openai_batch_default", batch_id, cancel_on_kill=cancel_on_kill)

    asyncio.run(trigger.on_kill())

    assert batch_status(server, batch_id) in ("validating", "in_progress")


def test_on_kill_of_a_finished_batch_does_not_raise(emulator, emulator_conn, tmp_path) -> None:
    emulator_conn(emulator)
    batch_id = submit(emulator, tmp_path, requests=1)
    run(OpenAIBatchTrigger("openai_batch_default", batch_id, poll_interval=0.05))

    asyncio.run(OpenAIBatchTrigger("openai_batch_default", batch_id).on_kill())  # the API answers 409

    assert batch_status(emulator, batch_id) == "completed"


def test_run_does_not_block_the_event_loop(make_emulator, emulator_conn, tmp_path) -> None:
    # Each status read takes 1 s; a blocking call would stall every other task that long. The
    # bound leaves room for a busy machine (first imports, a loaded CPU), not for a blocked read.
    server = make_emulator(request_delay=0.1, concurrency=1, enable_admin=True)
    emulator_conn(server)
    batch_id = submit(server, tmp_path)
    set_faults(server, [{"method": "GET", "path": "/v1/batches/*", "latency": 1.0}])

    async def main() -> float:
        longest_gap = 0.0
        trigger_task = asyncio.ensure_future(
            anext(OpenAIBatchTrigger("openai_batch_default", batch_id, poll_interval=0.05).run())
        )
        last = time.monotonic()
        while not trigger_task.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            longest_gap, last = max(longest_gap, now - last), now
        assert (await trigger_task).payload["status"] == "terminal"
        return longest_gap

    assert asyncio.run(main()) < 0.5
