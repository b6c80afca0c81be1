"""Azure OpenAI's path shapes and key header, with the official SDK's Azure client and plain HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from airflow_batch_provider.emulator.server import EmulatorServer
from tests.support.requests import chat_request, jsonl_bytes
from tests.support.sdk import TERMINAL, client_for, read_lines, submit_and_wait, wait_for

API_VERSION = "2024-10-21"


def test_the_azure_client_runs_a_batch_on_the_older_paths(emulator: EmulatorServer) -> None:
    # AzureOpenAI sends the key as "api-key" and calls /openai/files?api-version=..., /openai/batches...
    client = openai.AzureOpenAI(
        azure_endpoint=emulator.url, api_key=emulator.api_key, api_version=API_VERSION, max_retries=0
    )
    file = client.files.create(file=("in.jsonl", jsonl_bytes([chat_request("a")])), purpose="batch")
    created = client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    batch = wait_for(client, created.id)  # type: ignore[arg-type]

    assert batch.status == "completed"
    assert batch.output_file_id is not None
    assert [line["custom_id"] for line in read_lines(client, batch.output_file_id)] == ["a"]
    assert "gpt-4o-mini" in {model.id for model in client.models.list()}


def test_the_v1_paths_answer_as_the_openai_ones(emulator: EmulatorServer) -> None:
    client = openai.OpenAI(base_url=f"{emulator.url}/openai/v1", api_key=emulator.api_key, max_retries=0)

    batch = submit_and_wait(client, [chat_request("a"), chat_request("b")])

    assert batch.status == "completed"
    assert [line["custom_id"] for line in read_lines(client, batch.output_file_id)] == ["a", "b"]
    same = client_for(emulator).batches.retrieve(batch.id)  # one emulator, two spellings of its paths
    assert same.status in TERMINAL


@pytest.mark.parametrize("path", ["/openai/v1/batches", f"/openai/batches?api-version={API_VERSION}"])
def test_the_api_key_header_is_accepted_and_checked(emulator: EmulatorServer, path: str) -> None:
    assert httpx.get(f"{emulator.url}{path}", headers={"api-key": str(emulator.api_key)}).status_code == 200
    refused = httpx.get(f"{emulator.url}{path}", headers={"api-key": "sk-wrong"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"


def test_the_older_paths_need_an_api_version(emulator: EmulatorServer) -> None:
    response = httpx.get(f"{emulator.url}/openai/batches", headers={"api-key": str(emulator.api_key)})

    assert response.status_code == 400
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        "api-version",
        "missing_required_parameter",
        "invalid_request_error",
    )
    assert error["message"].startswith("Missing required query parameter: 'api-version'.")
    client = openai.OpenAI(base_url=f"{emulator.url}/openai", api_key=emulator.api_key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.batches.list()
    assert raised.value.param == "api-version"


def test_an_unknown_azure_path_is_the_live_404(emulator: EmulatorServer) -> None:
    response = httpx.get(
        f"{emulator.url}/openai/v1/no-such-thing", headers={"api-key": str(emulator.api_key)}
    )

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/no-such-thing)"
