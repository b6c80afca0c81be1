"""The hooks of one event loop share one reading of a connection and one pool of connections."""

from __future__ import annotations

import asyncio

import pytest

from airflow_batch_provider.client.pool import MAX_CONNECTIONS, shared_http_client
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from tests.support.connections import set_connection
from tests.support.scripted_server import Reply, ScriptedServer, batch_json

API_KEY = "sk-async-secret-9876543210abcdef"


@pytest.fixture
def server(monkeypatch):
    with ScriptedServer() as running:
        set_connection(
            monkeypatch, "async_api", conn_type="openai_batch", host=running.base_url, password=API_KEY
        )
        yield running


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
