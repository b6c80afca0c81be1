"""The batch endpoints answered synchronously, driven over real HTTP by the official SDK."""

from __future__ import annotations

import base64
from array import array
from collections.abc import Iterator

import httpx
import openai
import pytest

from airflow_batch_provider.emulator.checks import FAIL_FIELD
from airflow_batch_provider.emulator.executors import LocalExecutor
from airflow_batch_provider.emulator.server import EmulatorServer

MESSAGES = [{"role": "user", "content": "Tell me about the Eiffel tower."}]


@pytest.fixture
def server(emulator: EmulatorServer) -> EmulatorServer:
    return emulator


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0) as client:
        yield client


def local(url: str, body: dict) -> dict:
    return LocalExecutor().execute_sync(url, body).body


def without_timestamps(body: dict) -> dict:
    return {key: value for key, value in body.items() if key not in ("created", "created_at", "completed_at")}


def test_chat_completion_is_the_local_executor_answer(client: openai.OpenAI):
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    assert "Eiffel tower" in (completion.choices[0].message.content or "")
    expected = local("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES})
    assert without_timestamps(completion.model_dump(exclude_unset=True)) == without_timestamps(expected)


def test_response(client: openai.OpenAI):
    response = client.responses.create(model="gpt-4o-mini", input="Tell me about the Eiffel tower.")

    assert response.status == "completed"
    assert "Eiffel tower" in response.output_text
    assert response.usage is not None
    assert response.usage.total_tokens > 0


def test_completion(client: openai.OpenAI):
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Once upon a time", max_tokens=4
    )

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_embeddings_in_every_encoding(client: openai.OpenAI, encoding_format: str | None):
    extra = {} if encoding_format is None else {"encoding_format": encoding_format}
    response = client.embeddings.create(
        model="text-embedding-3-small",
        input=["first text", "second text"],
        dimensions=32,
        **extra,  # type: ignore[arg-type]
    )

    expected = local(
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": ["first text", "second text"], "dimensions": 32},
    )
    assert [item.index for item in response.data] == [0, 1]
    for item, want in zip(response.data, expected["data"], strict=True):
        vector = item.embedding
        if encoding_format == "base64":  # asked for explicitly, the SDK leaves it encoded
            assert isinstance(vector, str)
            vector = array("f", base64.b64decode(vector)).tolist()
        assert vector == pytest.approx(want["embedding"], abs=1e-7)


def test_moderation(client: openai.OpenAI):
    response = client.moderations.create(input="a text about hate")

    assert response.results[0].flagged
    assert response.results[0].categories.hate


def test_bad_request_raises_the_sdk_error(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"content": "no role"}])  # type: ignore[list-item,typeddict-item]

    assert raised.value.code == "missing_required_parameter"
    assert raised.value.param == "messages[0].role"
    assert raised.value.request_id


def test_forced_failure_raises_the_sdk_error(client: openai.OpenAI):
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="emulator-fail-500", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_body={FAIL_FIELD: 429},
        )


def test_wrong_key_is_refused(server: EmulatorServer):
    with (
        openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "could not parse the JSON body"),
        (b'{"model": "gpt-4o-mini", "messages": [], "stream": true}', "does not stream"),
    ],
)
def test_unparseable_or_streaming_requests_get_400(server: EmulatorServer, content: bytes, message: str):
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
