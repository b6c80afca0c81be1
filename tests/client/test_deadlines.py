"""Each try is bounded end to end, however slowly the server answers; transfers by their progress."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from airflow_batch_provider.client import AsyncBatchClient, BatchClient, ClientSettings, OpenAIBatchAPIError
from airflow_batch_provider.client.deadline import MIN_TRANSFER_RATE, transfer_seconds
from tests.support.scripted_server import Reply, ScriptedServer, batch_json

API_KEY = "sk-deadline-secret-0123456789"
TIMEOUT = 1.0
#: Far above TIMEOUT: a try that is not cut at its deadline takes this long or more.
TRICKLE = Reply(json=batch_json("b1"), trickle=0.1)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def settings(server: ScriptedServer, **fields) -> ClientSettings:
    return ClientSettings.model_validate(
        {"base_url": server.base_url, "api_key": API_KEY, "timeout": TIMEOUT, "max_retries": 0, **fields}
    )


def timed(call) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.parametrize("head", [False, True], ids=["body", "head-and-body"])
def test_a_trickled_answer_is_cut_at_the_deadline_on_the_sync_path(server, head) -> None:
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1"), trickle=0.1, trickle_head=head))
    client = BatchClient(settings(server))

    took, error = timed(lambda: client.get_batch("b1"))

    assert isinstance(error, OpenAIBatchAPIError)
    assert "timed out" in str(error)
    assert f"within {TIMEOUT:g} s" in str(error)
    assert took < TIMEOUT + 1.0
    assert API_KEY not in str(error)


@pytest.mark.parametrize("head", [False, True], ids=["body", "head-and-body"])
def test_a_trickled_answer_is_cut_at_the_deadline_on_the_async_path(server, head) -> None:
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1"), trickle=0.1, trickle_head=head))
    client = AsyncBatchClient(settings(server))

    took, error = timed(lambda: asyncio.run(client.get_batch("b1")))

    assert isinstance(error, OpenAIBatchAPIError)
    assert "timed out" in str(error)
    assert took < TIMEOUT + 1.0


def test_each_retry_gets_its_own_deadline(server) -> None:
    server.script("GET", "/batches/b1", TRICKLE, Reply(json=batch_json("b1")))
    client = BatchClient(settings(server, max_retries=1))

    took, error = timed(lambda: client.get_batch("b1"))

    assert error is None
    assert len(server.received()) == 2
    assert took < TIMEOUT + 2.0  # one cut try, a backoff of at most 1 s, one quick try


def test_a_download_may_outlast_the_timeout_while_it_makes_progress(server, tmp_path) -> None:
    content = b'{"custom_id": "x"}\n' * 4_000  # 76 kB, sent in 19 pieces 0.1 s apart: 1.9 s
    server.script("GET", "/files/f/content", Reply(body=content, trickle=0.1, trickle_chunk=4_000))
    client = BatchClient(settings(server))

    took, error = timed(lambda: client.download_file("f", tmp_path, expected_bytes=len(content)))

    assert error is None
    assert took > TIMEOUT
    assert (tmp_path / "f.jsonl").read_bytes() == content


def test_a_download_slower_than_the_minimum_rate_is_cut(server, tmp_path) -> None:
    content = b"x" * 100 + b"\n"  # 101 bytes may take TIMEOUT + 1.5 ms; these take 10 s
    server.script("GET", "/files/f/content", Reply(body=content, trickle=0.1))
    client = BatchClient(settings(server))

    took, error = timed(lambda: client.download_file("f", tmp_path, expected_bytes=len(content)))

    assert isinstance(error, OpenAIBatchAPIError)
    assert "timed out" in str(error)
    assert took < TIMEOUT + transfer_seconds(len(content)) + 1.0
    assert list(tmp_path.iterdir()) == []


def test_a_stalled_download_fails_after_timeout_without_progress(server, tmp_path) -> None:
    # The file is announced large (a long transfer allowance), then nothing more comes.
    size = 50 * MIN_TRANSFER_RATE
    server.script("GET", "/files/f/content", Reply(body=b"x" * size, trickle=30, trickle_chunk=10))
    client = BatchClient(settings(server))

    took, error = timed(lambda: client.download_file("f", tmp_path, expected_bytes=size))

    assert isinstance(error, OpenAIBatchAPIError)
    assert took < TIMEOUT + 1.0
    assert list(tmp_path.iterdir()) == []


def test_the_transfer_allowance() -> None:
    assert transfer_seconds(200 * 1024 * 1024) == pytest.approx(3200)
    assert transfer_seconds(None) == transfer_seconds(200 * 1024 * 1024)
    assert transfer_seconds(0) == 0
