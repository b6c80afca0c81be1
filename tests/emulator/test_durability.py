"""Restarts mid-batch (the CLI in a subprocess, killed or stopped) and concurrent clients."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from airflow_batch_provider.emulator.server import EmulatorProcess
from tests.support.requests import chat_request, jsonl_bytes
from tests.support.sdk import client_for, read_lines, submit, wait_for

TOTAL = 400


@pytest.fixture
def process() -> EmulatorProcess:
    emulator = EmulatorProcess("--api-key", "sk-restart", "--request-delay", "0.01", "--concurrency", "2")
    emulator.start()
    yield emulator  # type: ignore[misc]
    emulator.stop()


@pytest.mark.parametrize("kill", [True, False], ids=["killed", "stopped"])
def test_batch_continues_after_a_restart_without_loss_or_duplicates(
    process: EmulatorProcess, kill: bool
) -> None:
    assert process.base_url == f"http://127.0.0.1:{process.port}/v1"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=process.base_url, api_key="sk-other", max_retries=0).batches.list()
    client = client_for(process)
    created = submit(client, [chat_request(f"r{i:03d}") for i in range(TOTAL)])
    before = wait_for(
        client,
        created.id,
        lambda batch: batch.request_counts is not None and batch.request_counts.completed >= 40,
    )
    assert before.status == "in_progress"
    assert before.request_counts is not None
    assert before.request_counts.completed < TOTAL
    port = process.port

    process.restart(kill=kill)

    assert process.port == port
    batch = wait_for(client, created.id, timeout=30)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (TOTAL, 0)
    lines = read_lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in lines] == [f"r{i:03d}" for i in range(TOTAL)]
    assert len({line["id"] for line in lines}) == TOTAL
    usage = sum(line["response"]["body"]["usage"]["total_tokens"] for line in lines)
    assert batch.usage is not None
    assert batch.usage.total_tokens == usage


def test_concurrent_clients(emulator) -> None:  # type: ignore[no-untyped-def]
    client = client_for(emulator)
    file_id = client.files.create(file=("r.jsonl", jsonl_bytes([chat_request("r")])), purpose="batch").id
    headers = {"Authorization": f"Bearer {emulator.api_key}"}

    def work(worker: int) -> list[str]:
        created = []
        with httpx.Client(base_url=emulator.base_url, headers=headers) as http:
            for _ in range(10):
                response = http.post(
                    "/batches",
                    json={
                        "input_file_id": file_id,
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "24h",
                    },
                )
                response.raise_for_status()
                batch_id = response.json()["id"]
                created.append(batch_id)
                assert http.get(f"/batches/{batch_id}").json()["id"] == batch_id
                assert http.get("/batches", params={"limit": 5}).status_code == 200
                if worker % 2:
                    assert http.post(f"/batches/{batch_id}/cancel").status_code in (200, 409)
        return created

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = [batch_id for ids in pool.map(work, range(8)) for batch_id in ids]

    assert len(set(created)) == 80
    listed = {batch.id for batch in client.batches.list(limit=100)}
    assert set(created) <= listed
    for batch_id in created:
        assert wait_for(client, batch_id).status in ("completed", "cancelled")
