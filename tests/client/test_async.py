"""The async client (used by triggers) over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import pytest

from airflow_batch_provider.client import AsyncBatchClient, ClientSettings, OpenAIBatchAPIError, RetryPolicy
from airflow_batch_provider.client.errors import TransientError
from airflow_batch_provider.models import BatchStatus
from tests.support.scripted_server import Reply, ScriptedServer, api_error, batch_json, file_json

API_KEY = "sk-async-secret-9876543210abcdef"


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def make_client(server: ScriptedServer, **fields) -> AsyncBatchClient:
    settings = {"name": "connection 'async_api'", "base_url": server.base_url, "api_key": API_KEY, **fields}
    return AsyncBatchClient(ClientSettings.model_validate(settings))


def test_get_batch_parses_and_retries_like_the_sync_path(server):
    server.script(
        "GET",
        "/batches/b1",
        Reply(429, headers={"retry-after-ms": "200"}),
        api_error(502, "bad gateway", "server_error"),
        Reply(json=batch_json("b1", status="completed", output_file_id="file-out")),
    )

    batch = asyncio.run(make_client(server).get_batch("b1"))

    assert batch.status is BatchStatus.COMPLETED
    assert batch.output_file_id == "file-out"
    first, second, _ = server.received()
    assert second.at - first.at >= 0.2
    assert first.headers["authorization"] == f"Bearer {API_KEY}"


def test_cancel_batch_does_not_retry_a_conflict(server):
    server.script(
        "POST",
        "/batches/b1/cancel",
        api_error(409, "Cannot cancel a batch with status 'completed'.", code="invalid_request"),
    )

    with pytest.raises(OpenAIBatchAPIError, match="Cannot cancel") as caught:
        asyncio.run(make_client(server).cancel_batch("b1"))

    assert caught.value.status_code == 409
    assert len(server.received()) == 1


def test_get_file(server):
    server.script("GET", "/files/f1", Reply(json=file_json("f1", purpose="batch_output")))

    assert asyncio.run(make_client(server).get_file("f1")).purpose == "batch_output"


def test_async_retries_stop_after_max_retries(server):
    server.script("GET", "/batches/b1", api_error(503, "overloaded", "server_error"))

    with pytest.raises(OpenAIBatchAPIError, match="HTTP 503") as caught:
        asyncio.run(make_client(server, max_retries=1).get_batch("b1"))

    assert caught.value.status_code == 503
    assert len(server.received()) == 2


def test_a_slow_first_try_counts_against_the_retry_time_budget():
    policy = RetryPolicy(max_retries=5, total_seconds=0.5, backoff_initial=0.05)
    tries = 0

    async def slow_then_failing() -> None:
        nonlocal tries
        tries += 1
        if tries == 1:
            await asyncio.sleep(0.5)  # the slow try under test, e.g. one that timed out
        raise TransientError(OpenAIBatchAPIError("GET /batches/b1 got no answer."))

    with pytest.raises(OpenAIBatchAPIError, match="got no answer"):
        asyncio.run(policy.acall(slow_then_failing, logging.getLogger(__name__)))

    assert tries == 1


def test_the_key_is_never_logged_on_the_async_path(server, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    server.script(
        "GET",
        "/batches/b1",
        api_error(500, "boom", "server_error"),
        api_error(401, f"Incorrect API key provided: {API_KEY}"),
    )

    with pytest.raises(OpenAIBatchAPIError) as caught:
        asyncio.run(make_client(server).get_batch("b1"))

    captured = capsys.readouterr()
    seen = "\n".join([str(caught.value), repr(caught.value), caplog.text, captured.out, captured.err])
    assert "Check the API key of connection 'async_api'" in seen
    assert "retry 1 of 5" in seen.lower()
    assert API_KEY not in seen


def test_list_batches_page_sends_limit_and_after(server):
    page = {"object": "list", "data": [batch_json("b2")], "first_id": "b2", "last_id": "b2", "has_more": True}
    server.script("GET", "/batches", Reply(json=page))

    listed = asyncio.run(make_client(server).list_batches_page(limit=1, after="b1"))

    assert [batch.id for batch in listed.data] == ["b2"]
    assert listed.has_more
    assert server.received()[0].query == {"limit": ["1"], "after": ["b1"]}


def test_read_file_head_stops_at_max_bytes_and_retries_the_opening(server):
    content = b"".join(b'{"custom_id": "r%d"}\n' % number for number in range(10_000))
    server.script(
        "GET", "/files/file-err/content", api_error(503, "busy", "server_error"), Reply(body=content)
    )

    head = asyncio.run(make_client(server).read_file_head("file-err", max_bytes=100))

    assert head == content[:100]
    assert len(server.received()) == 2


def test_iter_file_content_streams_the_whole_file(server):
    content = bytes(range(256)) * 5_000
    server.script("GET", "/files/file-out/content", Reply(body=content))

    async def read_all() -> bytes:
        return b"".join([chunk async for chunk in make_client(server).iter_file_content("file-out", 4096)])

    assert asyncio.run(read_all()) == content


def test_iter_file_content_raises_the_api_error_of_a_missing_file(server):
    server.script("GET", "/files/nope/content", api_error(404, "No such File object: nope"))

    async def read_all() -> bytes:
        return b"".join([chunk async for chunk in make_client(server).iter_file_content("nope")])

    with pytest.raises(OpenAIBatchAPIError, match="No such File") as caught:
        asyncio.run(read_all())
    assert caught.value.status_code == 404
