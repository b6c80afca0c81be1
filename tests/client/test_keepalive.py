"""Kept-alive connections: a stale one is replaced quietly, and idle ones are let go before the server's.

The scripted server's ``no_answer`` reply reads a request and closes the connection without a
byte of answer: what a request meets when the server closes an idle connection as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from airflow_batch_provider.client import AsyncBatchClient, BatchClient, ClientSettings, OpenAIBatchAPIError
from tests.support.scripted_server import Reply, ScriptedServer, batch_json

OK = Reply(json=batch_json("b1"))
CLOSED = Reply(no_answer=True)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def settings(base_url: str, api_key: str | None = "sk-keepalive-0123", **fields) -> ClientSettings:
    return ClientSettings.model_validate(
        {"base_url": base_url, "api_key": api_key, "max_retries": 0, **fields}
    )


def test_a_stale_connection_is_replaced_quietly_on_the_sync_path(server, caplog) -> None:
    server.script("GET", "/batches/b1", OK, CLOSED, OK)
    client = BatchClient(settings(server.base_url))

    with caplog.at_level(logging.INFO):
        client.get_batch("b1")
        client.get_batch("b1")  # max_retries=0: succeeds only because this is no retry

    first, stale, fresh = server.received()
    assert stale.client_port == first.client_port  # the kept-alive connection
    assert fresh.client_port != stale.client_port  # a new one
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_stale_connection_is_replaced_quietly_on_the_async_path(server, caplog) -> None:
    server.script("GET", "/batches/b1", OK, CLOSED, OK)
    client = AsyncBatchClient(settings(server.base_url))

    async def twice() -> None:
        await client.get_batch("b1")
        await client.get_batch("b1")

    with caplog.at_level(logging.INFO):
        asyncio.run(twice())

    first, stale, fresh = server.received()
    assert stale.client_port == first.client_port
    assert fresh.client_port != stale.client_port
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_new_connection_closed_without_answer_is_a_real_failure(server, path) -> None:
    server.script("GET", "/batches/b1", CLOSED)
    if path == "sync":
        call = BatchClient(settings(server.base_url)).get_batch
    else:
        client = AsyncBatchClient(settings(server.base_url))

        def call(batch_id: str):
            return asyncio.run(client.get_batch(batch_id))

    with pytest.raises(OpenAIBatchAPIError, match="got no answer"):
        call("b1")
    assert len(server.received()) == 1


def test_a_second_stale_connection_counts_as_a_retry(server, caplog) -> None:
    server.script("GET", "/batches/b1", OK, CLOSED, CLOSED, OK)
    client = BatchClient(settings(server.base_url, max_retries=1))

    with caplog.at_level(logging.WARNING):
        client.get_batch("b1")
        client.get_batch("b1")

    assert len(server.received()) == 4
    assert "Retry 1 of 1" in caplog.text


@pytest.mark.parametrize("path", ["sync", "async"])
def test_idle_connections_are_let_go_after_keepalive_expiry(server, path) -> None:
    server.script("GET", "/batches/b1", OK)
    calls = 3

    if path == "sync":
        client = BatchClient(settings(server.base_url, keepalive_expiry=0.2))
        for _ in range(calls):
            client.get_batch("b1")
            time.sleep(0.4)  # twice the expiry: the next request must open a new connection
    else:
        async_client = AsyncBatchClient(settings(server.base_url, keepalive_expiry=0.2))

        async def poll() -> None:
            for _ in range(calls):
                await async_client.get_batch("b1")
                await asyncio.sleep(0.4)

        asyncio.run(poll())

    ports = [request.client_port for request in server.received()]
    assert len(set(ports)) == calls


def test_connections_are_kept_within_keepalive_expiry(server) -> None:
    server.script("GET", "/batches/b1", OK)
    client = BatchClient(settings(server.base_url, keepalive_expiry=30))

    for _ in range(3):
        client.get_batch("b1")

    assert len({request.client_port for request in server.received()}) == 1


@pytest.mark.parametrize(
    ("server_keep_alive", "client_expiry"),
    [(0.6, 0.4), (0.6, 4.0)],
    ids=["client-lets-go-first", "server-closes-first"],
)
def test_polling_at_the_servers_keep_alive_logs_no_warning(
    make_emulator, caplog, server_keep_alive, client_expiry
) -> None:
    """The example DAG's case, scaled down: polls as far apart as the server keeps connections.

    With the client's expiry below the server's keep-alive, no request meets a closing connection;
    above it, some do, and are replaced quietly. Either way: no warning, no retry.
    """
    emulator = make_emulator(keep_alive_timeout=server_keep_alive)
    config = settings(emulator.base_url, emulator.api_key, keepalive_expiry=client_expiry)
    sync_client, async_client = BatchClient(config), AsyncBatchClient(config)
    batch_id = "batch_unknown"

    async def poll_async() -> None:
        for _ in range(4):
            with pytest.raises(OpenAIBatchAPIError, match="404"):
                await async_client.get_batch(batch_id)
            await asyncio.sleep(server_keep_alive)

    with caplog.at_level(logging.INFO):
        for _ in range(4):
            with pytest.raises(OpenAIBatchAPIError, match="404"):
                sync_client.get_batch(batch_id)
            time.sleep(server_keep_alive)
        asyncio.run(poll_async())

    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
