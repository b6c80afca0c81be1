"""The hook end to end against the emulator: the whole sync path, the async path, faults."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from airflow_batch_provider.emulator.faults import FaultRule, FaultSettings
from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.jsonl import read_results, write_requests
from airflow_batch_provider.models import Batch, BatchStatus
from tests.support.connections import set_connection
from tests.support.requests import chat_requests


def wait_until_terminal(hook: OpenAIBatchHook, batch_id: str, timeout: float = 20.0) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = hook.get_batch(batch_id)
        if batch.status.is_terminal or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def test_the_whole_sync_path(emulator, emulator_conn, tmp_path):
    hook = OpenAIBatchHook(emulator_conn(emulator, "emu"))
    source = tmp_path / "requests.jsonl"
    write_requests(chat_requests(5), source)

    uploaded = hook.upload_file(source)
    assert (uploaded.purpose, uploaded.bytes, uploaded.filename) == (
        "batch",
        source.stat().st_size,
        "requests.jsonl",
    )
    created = hook.create_batch(uploaded.id, "/v1/chat/completions", metadata={"case": "sync-path"})
    assert created.status is BatchStatus.VALIDATING

    batch = wait_until_terminal(hook, created.id)
    assert batch.status is BatchStatus.COMPLETED
    assert batch.request_counts is not None
    assert batch.request_counts.completed == 5
    assert batch.output_file_id is not None
    assert created.id in [listed.id for listed in hook.list_batches(limit=1)]

    output = hook.get_file(batch.output_file_id)
    assert output.purpose == "batch_output"
    written = hook.download_file(batch.output_file_id, tmp_path / "out.jsonl")
    results = list(read_results(written))
    assert sorted(result.custom_id for result in results) == [f"r{i}" for i in range(5)]
    assert all(result.succeeded for result in results)

    assert hook.delete_file(uploaded.id).deleted
    with pytest.raises(OpenAIBatchAPIError) as caught:
        hook.get_file(uploaded.id)
    assert caught.value.status_code == 404


@pytest.mark.parametrize(
    ("path", "extra"),
    [("/openai/v1", {}), ("/openai", {"api_version": "2024-10-21"})],
    ids=["v1 paths", "older paths with api-version"],
)
def test_the_azure_mode_end_to_end(emulator, monkeypatch, tmp_path, path, extra):
    set_connection(
        monkeypatch,
        "azure",
        conn_type="openai_batch",
        host=f"{emulator.url}{path}",
        password=emulator.api_key,
        extra={"api_type": "azure", **extra},
    )
    hook = OpenAIBatchHook("azure")
    assert "api-key" in hook.settings.secret_headers  # the key goes as Azure sends it
    source = tmp_path / "requests.jsonl"
    write_requests(chat_requests(3), source)

    created = hook.create_batch(hook.upload_file(source).id, "/v1/chat/completions")
    batch = wait_until_terminal(hook, created.id)
    polled = asyncio.run(hook.aget_batch(created.id))
    written = hook.download_file(batch.output_file_id or "", tmp_path / "out.jsonl")

    assert batch.status is BatchStatus.COMPLETED
    assert polled.status is BatchStatus.COMPLETED
    assert [result.custom_id for result in read_results(written)] == ["r0", "r1", "r2"]
    assert hook.batch_page_url(batch.id) == f"{emulator.url}/batches/{batch.id}"


def test_list_batches_pages_through_the_emulator(emulator, emulator_conn, tmp_path):
    hook = OpenAIBatchHook(emulator_conn(emulator, "emu_list"))
    source = tmp_path / "one.jsonl"
    write_requests(chat_requests(1), source)
    file_id = hook.upload_file(source).id
    created = [hook.create_batch(file_id, "/v1/chat/completions").id for _ in range(3)]

    listed = [batch.id for batch in hook.list_batches(limit=2)]

    assert listed[:3] == created[::-1]  # newest first, across pages
    assert len(listed) == len(set(listed))


def test_aget_and_acancel_against_the_emulator(make_emulator, emulator_conn, tmp_path):
    slow = make_emulator(request_delay=0.5, concurrency=1)
    hook = OpenAIBatchHook(emulator_conn(slow, "emu_async"))
    source = tmp_path / "requests.jsonl"
    write_requests(chat_requests(20), source)
    batch_id = hook.create_batch(hook.upload_file(source).id, "/v1/chat/completions").id

    async def poll_then_cancel() -> tuple[Batch, Batch]:
        seen = await OpenAIBatchHook("emu_async").aget_batch(batch_id)
        cancelling = await OpenAIBatchHook("emu_async").acancel_batch(batch_id)
        return seen, cancelling

    seen, cancelling = asyncio.run(poll_then_cancel())

    assert seen.id == batch_id
    assert seen.status.is_in_progress
    assert cancelling.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED)
    assert wait_until_terminal(hook, batch_id).status is BatchStatus.CANCELLED


def test_injected_429s_and_503s_are_ridden_out(make_emulator, emulator_conn, capsys):
    faulty = make_emulator(
        faults=FaultSettings(
            rules=[
                FaultRule(method="GET", path="/v1/batches", status=429, retry_after=0.2, count=1),
                FaultRule(method="GET", path="/v1/batches", status=503, count=1),
            ]
        )
    )
    hook = OpenAIBatchHook(emulator_conn(faulty, "emu_faulty"))

    started = time.monotonic()
    assert list(hook.list_batches()) == []

    assert time.monotonic() - started >= 0.2  # the 429's retry-after-ms was waited for
    retries = [line for line in capsys.readouterr().out.splitlines() if "Retry" in line]
    assert len(retries) == 2
    assert "HTTP 429" in retries[0]
    assert "HTTP 503" in retries[1]


def test_a_drop_mid_download_leaves_nothing(make_emulator, emulator_conn, tmp_path):
    faulty = make_emulator(faults=FaultSettings(rules=[FaultRule(path="/v1/files/*/content", drop=True)]))
    hook = OpenAIBatchHook(emulator_conn(faulty, "emu_drop", max_retries=1))
    source = tmp_path / "requests.jsonl"
    write_requests(chat_requests(3), source)
    file_id = hook.upload_file(source).id
    download_dir = tmp_path / "downloads"
    download_dir.mkdir()

    with pytest.raises(OpenAIBatchAPIError):
        hook.download_file(file_id, download_dir / "copy.jsonl")

    assert list(download_dir.iterdir()) == []


def test_a_wrong_key_and_the_batch_page(emulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_EMU_WRONG_KEY",
        f'{{"conn_type": "openai_batch", "host": "{emulator.base_url}", "password": "sk-wrong-key-123"}}',
    )
    hook = OpenAIBatchHook("emu_wrong_key")

    ok, message = hook.test_connection()

    assert not ok
    assert "Check the API key of this connection" in message
    assert "sk-wrong-key-123" not in message
    page = hook.batch_page_url("batch_x")
    assert page is not None
    assert page == emulator.base_url.removesuffix("/v1") + "/batches/batch_x"


def test_the_batch_page_link_opens(emulator, emulator_conn, tmp_path):
    hook = OpenAIBatchHook(emulator_conn(emulator, "emu_page"))
    assert hook.test_connection()[0]
    source = tmp_path / "one.jsonl"
    write_requests(chat_requests(1), source)
    batch_id = hook.create_batch(hook.upload_file(source).id, "/v1/chat/completions").id

    page = hook.batch_page_url(batch_id)

    assert page is not None
    answer = httpx.get(page, auth=("airflow", emulator.api_key))  # a browser asks for the key
    assert answer.status_code == 200
    assert batch_id in answer.text
