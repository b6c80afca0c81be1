"""What the emulator keeps, and for how long, with the official SDK: result files and finished batches."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest

from airflow_batch_provider.emulator.server import EmulatorServer
from tests.support.requests import chat_request, rejected_request
from tests.support.sdk import client_for, gone, submit_and_wait


def test_result_files_expire_after_the_retention(make_emulator: Callable[..., EmulatorServer]) -> None:
    client = client_for(make_emulator(retention_seconds=2))
    batch = submit_and_wait(client, [chat_request("a"), rejected_request("b")])
    assert batch.output_file_id is not None
    assert batch.error_file_id is not None
    output = client.files.retrieve(batch.output_file_id)
    assert output.expires_at == output.created_at + 2
    assert client.files.content(batch.output_file_id).text  # kept until then

    error = gone(lambda: client.files.content(batch.output_file_id))

    assert error.body == {
        "message": f"No such File object: {batch.output_file_id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    for call in (client.files.retrieve, client.files.content):
        with pytest.raises(openai.NotFoundError):
            call(batch.error_file_id)
    listed = {file.id for file in client.files.list(purpose="batch_output")}
    assert not {batch.output_file_id, batch.error_file_id} & listed
    assert client.batches.retrieve(batch.id).output_file_id == batch.output_file_id  # the batch stays


def test_output_expires_after_wins_over_the_retention(make_emulator: Callable[..., EmulatorServer]) -> None:
    client = client_for(make_emulator(retention_seconds=1))
    policy = {"anchor": "created_at", "seconds": 3600}
    kept = submit_and_wait(client, [chat_request("a")], output_expires_after=policy)
    dropped = submit_and_wait(client, [chat_request("a")])
    assert kept.output_file_id is not None
    assert dropped.output_file_id is not None

    gone(lambda: client.files.retrieve(dropped.output_file_id))

    output = client.files.retrieve(kept.output_file_id)
    assert output.expires_at == output.created_at + 3600
    assert client.files.content(kept.output_file_id).text


def test_finished_batches_are_forgotten_after_the_batch_retention(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    client = client_for(make_emulator(batch_retention_seconds=1))
    batch = submit_and_wait(client, [chat_request("a")])
    assert client.batches.retrieve(batch.id).status == "completed"

    error = gone(lambda: client.batches.retrieve(batch.id))

    assert error.body == {
        "message": f"No batch found with id '{batch.id}'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel(batch.id)
    assert batch.id not in {listed.id for listed in client.batches.list()}
    assert batch.output_file_id is not None
    assert client.files.content(batch.output_file_id).text  # its files keep their own expiry


def test_a_running_batch_is_not_forgotten(make_emulator: Callable[..., EmulatorServer]) -> None:
    client = client_for(make_emulator(batch_retention_seconds=1, request_delay=0.5, concurrency=1))
    batch = submit_and_wait(client, [chat_request(f"r{n}") for n in range(5)])

    assert batch.status == "completed"  # it ran for more than the retention, and was kept meanwhile
