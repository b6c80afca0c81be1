"""One ``create_batch`` call leaves exactly one batch, however many of its answers are lost."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_batch_provider.client import BatchClient, ClientSettings, OpenAIBatchAPIError
from airflow_batch_provider.client.create_token import CREATE_TOKEN_KEY
from tests.support.emulator import api, set_faults
from tests.support.requests import CHAT_ENDPOINT, chat_requests, jsonl_bytes
from tests.support.scripted_server import Recorded, Reply, ScriptedServer, api_error, batch_json

API_KEY = "sk-create-once-0123456789"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def client_of(base_url: str, api_key: str | None = API_KEY, **fields: Any) -> BatchClient:
    settings = {"name": "connection 'once'", "base_url": base_url, "api_key": api_key, "timeout": 2, **fields}
    return BatchClient(ClientSettings.model_validate(settings))


# -- against the emulator: its "drop" fault cuts the answer after the batch was made --


@pytest.mark.parametrize("lost", [1, 2, 3])
def test_lost_answers_leave_one_batch(make_emulator, lost) -> None:
    server = make_emulator(enable_admin=True)
    client = client_of(server.base_url, server.api_key)
    input_file = client.upload_file(io.BytesIO(jsonl_bytes(chat_requests(2))), filename="in.jsonl")
    set_faults(server, [{"method": "POST", "path": "/v1/batches", "drop": True, "count": lost}])

    batch = client.create_batch(input_file.id, CHAT_ENDPOINT, metadata={"run": "r1"})

    batches = api(server, "GET", "/v1/batches", params={"limit": 100})["data"]
    assert [made["id"] for made in batches] == [batch.id]
    assert batch.metadata is not None
    assert batch.metadata["run"] == "r1"
    assert len(batch.metadata[CREATE_TOKEN_KEY]) == 32


def test_every_call_makes_its_own_batch(emulator) -> None:
    client = client_of(emulator.base_url, emulator.api_key)
    input_file = client.upload_file(io.BytesIO(jsonl_bytes(chat_requests(1))), filename="in.jsonl")

    first = client.create_batch(input_file.id, CHAT_ENDPOINT)
    second = client.create_batch(input_file.id, CHAT_ENDPOINT)

    assert first.id != second.id


# -- against a scripted server: the losses the emulator cannot produce --


def listing_the_batch_of(server: ScriptedServer) -> Reply:
    """``GET /batches`` answering with the batch the last ``POST /batches`` asked for."""
    (sent, *_) = server.received("POST", "/batches")[-1:]
    metadata = json.loads(sent.body)["metadata"]
    made = batch_json("b_made", metadata=metadata, created_at=int(time.time()))
    older = batch_json("b_old", created_at=1)
    return Reply(json={"data": [made, older], "has_more": False})


def made_by_the_lost_try(server: ScriptedServer):
    return lambda request: listing_the_batch_of(server)


@pytest.mark.parametrize(
    "loss",
    [
        Reply(json=batch_json("b_made"), cut_after=20),
        Reply(json=batch_json("b_made"), framing="close", cut_after=20),
        api_error(500, "The server had an error"),
        api_error(502, "Bad gateway"),
        Reply(json=batch_json("b_made"), delay=3),  # past the 2 s timeout
    ],
    ids=["cut", "cut-close-framed", "500", "502", "read-timeout"],
)
def test_a_retry_finds_the_batch_its_lost_try_made(server, loss, caplog) -> None:
    server.script("POST", "/batches", loss, Reply(json=batch_json("b_second")))
    server.script("GET", "/batches", made_by_the_lost_try(server))
    client = client_of(server.base_url)

    with caplog.at_level(logging.INFO):
        batch = client.create_batch("file-1", CHAT_ENDPOINT)

    assert batch.id == "b_made"
    assert len(server.received("POST", "/batches")) == 1
    assert "Found batch b_made, made by a try whose answer was lost" in caplog.text


def test_a_retry_sends_again_with_the_same_token_when_nothing_was_made(server) -> None:
    server.script("POST", "/batches", api_error(503, "Overloaded"), Reply(json=batch_json("b_new")))
    server.script(
        "GET", "/batches", Reply(json={"data": [batch_json("b_old", created_at=1)], "has_more": True})
    )

    batch = client_of(server.base_url).create_batch("file-1", CHAT_ENDPOINT)

    assert batch.id == "b_new"
    first, second = (json.loads(r.body)["metadata"][CREATE_TOKEN_KEY] for r in server.received("POST"))
    assert first == second
    # The look stopped at the first batch older than the call: one page, not every page.
    assert len(server.received("GET", "/batches")) == 1


def test_the_look_pages_back_until_the_call_started(server) -> None:
    def pages(request: Recorded) -> Reply:
        now = int(time.time())
        if "after" not in request.query:
            other = batch_json("b_other", created_at=now)
            return Reply(json={"data": [other], "last_id": "b_other", "has_more": True})
        return listing_the_batch_of(server)

    server.script("POST", "/batches", api_error(500, "oops"))
    server.script("GET", "/batches", pages)

    batch = client_of(server.base_url).create_batch("file-1", CHAT_ENDPOINT)

    assert batch.id == "b_made"
    assert len(server.received("GET", "/batches")) == 2
    assert len(server.received("POST", "/batches")) == 1


def test_with_all_16_metadata_keys_there_is_no_token_and_no_retry(server) -> None:
    server.script("POST", "/batches", api_error(500, "oops"), Reply(json=batch_json("b_second")))
    metadata = {f"k{n}": "v" for n in range(16)}

    with pytest.raises(OpenAIBatchAPIError, match="HTTP 500"):
        client_of(server.base_url).create_batch("file-1", CHAT_ENDPOINT, metadata=metadata)

    (sent,) = server.received("POST", "/batches")
    assert json.loads(sent.body)["metadata"] == metadata


def test_the_token_key_is_the_clients(server) -> None:
    with pytest.raises(ValueError, match="reserved by the client"):
        client_of(server.base_url).create_batch("file-1", CHAT_ENDPOINT, metadata={CREATE_TOKEN_KEY: "x"})
    assert server.received() == []


def test_when_the_batches_cannot_be_listed_the_create_is_not_sent_again(server) -> None:
    server.script("POST", "/batches", api_error(500, "oops"), Reply(json=batch_json("b_second")))
    server.script("GET", "/batches", api_error(404, "Invalid URL (GET /v1/batches)"))

    with pytest.raises(OpenAIBatchAPIError, match="could not be listed") as caught:
        client_of(server.base_url).create_batch("file-1", CHAT_ENDPOINT)

    assert "so as not to pay twice" in str(caught.value)
    assert len(server.received("POST", "/batches")) == 1
