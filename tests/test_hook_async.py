"""The hook's async methods (used by triggers) over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hook_server import Reply, ScriptedServer, api_error, batch_json, file_json, set_connection

from airflow_batch_provider.client.errors import TransientError
from airflow_batch_provider.client.pool import MAX_CONNECTIONS, shared_http_client
from airflow_batch_provider.client.retry import RetryPolicy
from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.models import BatchStatus

API_KEY = "sk-async-secret-9876543210abcdef"


@pytest.fixture
def server(monkeypatch):
    with ScriptedServer() as running:
        set_connection(
            monkeypatch, "async_api", conn_type="openai_batch", host=running.base_url, password=API_KEY
        )
        yield running


def test_aget_batch_parses_and_retries_like_the_sync_path(server):
    server.script(
        "GET",
        "/batches/b1",
        Reply(429, headers={"retry-after-ms": "200"}),
        api_error(502, "bad gateway", "server_error"),
        Reply(json=batch_json("b1", status="completed", output_file_id="file-out")),
    )

    batch = asyncio.run(OpenAIBatchHook("async_api").aget_batch("b1"))

    assert batch.status is BatchStatus.COMPLETED
    assert batch.output_file_id == "file-out"
    first, second, _ = server.received()
    assert second.at - first.at >= 0.2
    assert first.headers["authorization"] == f"Bearer {API_KEY}"


def test_acancel_batch_does_not_retry_a_conflict(server):
    server.script(
        "POST",
        "/batches/b1/cancel",
        api_error(409, "Cannot cancel a batch with status 'completed'.", code="invalid_request"),
    )

    with pytest.raises(OpenAIBatchAPIError, match="Cannot cancel") as caught:
        asyncio.run(OpenAIBatchHook("async_api").acancel_batch("b1"))

    assert caught.value.status_code == 409
    assert len(server.received()) == 1


def test_aget_file(server):
    server.script("GET", "/files/f1", Reply(json=file_json("f1", purpose="batch_output")))

    assert asyncio.run(OpenAIBatchHook("async_api").aget_file("f1")).purpose == "batch_output"


def test_async_retries_stop_after_max_retries(server, monkeypatch):
    set_connection(
        monkeypatch, "one_retry", conn_type="openai_batch", host=server.base_url, password=API_KEY,
        extra={"max_retries": 1},
    )  # fmt: skip
    server.script("GET", "/batches/b1", api_error(503, "overloaded", "server_error"))

    with pytest.raises(OpenAIBatchAPIError, match="HTTP 503") as caught:
        asyncio.run(OpenAIBatchHook("one_retry").aget_batch("b1"))

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


def test_hooks_of_one_connection_share_one_client_and_one_socket(server):
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1")))

    async def poll_with_fresh_hooks():
        clients = set()
        for _ in range(5):
            hook = OpenAIBatchHook("async_api")
            await hook.aget_batch("b1")
            clients.add(id(await shared_http_client(await hook.aget_settings())))
        return clients

    clients = asyncio.run(poll_with_fresh_hooks())

    assert len(clients) == 1
    assert len({request.client_port for request in server.received()}) == 1


def test_many_concurrent_polls_stay_within_the_pool(server):
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1"), delay=0.05))

    async def poll_at_once():
        hooks = [OpenAIBatchHook("async_api") for _ in range(300)]
        return await asyncio.gather(*(hook.aget_batch("b1") for hook in hooks))

    batches = asyncio.run(poll_at_once())

    assert len(batches) == 300
    assert server.max_in_flight == MAX_CONNECTIONS


def test_clients_close_when_their_event_loop_shuts_down(server):
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1")))

    async def poll():
        hook = OpenAIBatchHook("async_api")
        await hook.aget_batch("b1")
        return await shared_http_client(await hook.aget_settings())

    first_loop_client = asyncio.run(poll())
    second_loop_client = asyncio.run(poll())

    assert first_loop_client.is_closed
    assert second_loop_client.is_closed
    assert first_loop_client is not second_loop_client


def test_aclose_closes_the_shared_client(server):
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1")))

    async def poll_close_poll():
        hook = OpenAIBatchHook("async_api")
        await hook.aget_batch("b1")
        before = await shared_http_client(await hook.aget_settings())
        await hook.aclose()
        await hook.aget_batch("b1")
        return before, await shared_http_client(await hook.aget_settings())

    before, after = asyncio.run(poll_close_poll())

    assert before.is_closed
    assert after is not before


def test_the_key_is_never_logged_on_the_async_path(server, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    server.script(
        "GET",
        "/batches/b1",
        api_error(500, "boom", "server_error"),
        api_error(401, f"Incorrect API key provided: {API_KEY}"),
    )

    with pytest.raises(OpenAIBatchAPIError) as caught:
        asyncio.run(OpenAIBatchHook("async_api").aget_batch("b1"))

    captured = capsys.readouterr()
    seen = "\n".join([str(caught.value), repr(caught.value), caplog.text, captured.out, captured.err])
    assert "Check the API key of connection 'async_api'" in seen
    assert "retry 1 of 5" in seen.lower()
    assert API_KEY not in seen
