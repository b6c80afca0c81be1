"""Models and request bodies, with the official SDK: the catalogue, unknown models, missing fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from airflow_batch_provider.emulator.catalogue import MODELS_BY_ENDPOINT
from airflow_batch_provider.emulator.server import EmulatorServer
from tests.support.requests import chat_request
from tests.support.sdk import client_for, read_lines, submit_and_wait

UNKNOWN = "nonexistent-model-xyz"


def line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def problems(batch: Any) -> list[tuple[int | None, str | None, str | None, str | None]]:
    assert batch.status == "failed", batch
    assert batch.failed_at is not None
    return [(error.line, error.code, error.param, error.message) for error in batch.errors.data]


def test_models_are_listed_and_retrieved_in_the_live_shapes(client: openai.OpenAI) -> None:
    listed = {model.id: model for model in client.models.list()}

    for name in ("gpt-4o-mini", "gpt-5", "text-embedding-3-small", "text-embedding-3-large", "o3"):
        assert name in listed
    for name in ("omni-moderation-latest", "gpt-3.5-turbo-instruct", "text-embedding-ada-002"):
        assert name in listed
    for model in listed.values():
        assert model.object == "model"
        assert isinstance(model.created, int)
        assert model.owned_by
    retrieved = client.models.retrieve("gpt-4o-mini")
    assert retrieved.model_dump() == listed["gpt-4o-mini"].model_dump()


def test_an_unknown_model_is_the_live_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve(UNKNOWN)

    assert raised.value.status_code == 404
    assert raised.value.body == {
        "message": f"The model '{UNKNOWN}' does not exist",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_a_batch_naming_an_unknown_model_fails_with_one_error_per_offending_line(
    client: openai.OpenAI,
) -> None:
    lines = [chat_request("a", model=UNKNOWN), chat_request("b", model=UNKNOWN), chat_request("c")]

    batch = submit_and_wait(client, lines)

    message = f"The provided model '{UNKNOWN}' is not supported by the Batch API."
    assert problems(batch) == [
        (1, "model_not_found", "body.model", message),
        (2, "model_not_found", "body.model", message),
    ]
    assert batch.output_file_id is None


@pytest.mark.parametrize(
    ("endpoint", "model"),
    [
        ("/v1/embeddings", "gpt-4o-mini"),
        ("/v1/chat/completions", "text-embedding-3-small"),
        ("/v1/completions", "gpt-4o"),
        ("/v1/moderations", "gpt-4o-mini"),
        ("/v1/chat/completions", "o3-pro"),  # a model of /v1/responses only
    ],
)
def test_each_endpoint_offers_its_own_models(client: openai.OpenAI, endpoint: str, model: str) -> None:
    body = {"model": model, "input": "x", "prompt": "x", "messages": [{"role": "user", "content": "x"}]}

    batch = submit_and_wait(client, [line("a", endpoint, body)], endpoint=endpoint)

    assert [(error.code, error.param) for error in batch.errors.data] == [("model_not_found", "body.model")]


@pytest.mark.parametrize("endpoint", list(MODELS_BY_ENDPOINT))
def test_every_model_of_the_catalogue_runs_on_its_endpoint(client: openai.OpenAI, endpoint: str) -> None:
    body = {"input": "x", "prompt": "x", "messages": [{"role": "user", "content": "x"}]}
    # One batch per model (a batch has one model); a few models of each endpoint keep it quick.
    for model in MODELS_BY_ENDPOINT[endpoint][:3]:
        lines = [line("a", endpoint, {**body, "model": model.id})]
        batch = submit_and_wait(client, lines, endpoint=endpoint)
        assert batch.status == "completed", (model, batch.errors)
        assert batch.model == model.id


REQUIRED = [
    ("/v1/chat/completions", {"model": "gpt-4o-mini"}, "messages", "Messages parameter is required."),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, "model", None),
    ("/v1/responses", {"model": "gpt-4o-mini"}, "input", "Input parameter is required."),
    ("/v1/embeddings", {"model": "text-embedding-3-small"}, "input", "Input parameter is required."),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct"}, "prompt", "Prompt parameter is required."),
    ("/v1/moderations", {"model": "omni-moderation-latest"}, "input", "Input parameter is required."),
]


@pytest.mark.parametrize(("endpoint", "body", "field", "message"), REQUIRED)
def test_a_body_missing_a_required_field_fails_the_batch_at_validation(
    client: openai.OpenAI, endpoint: str, body: dict[str, Any], field: str, message: str | None
) -> None:
    fields = {"model": "gpt-4o-mini", "input": "x", "prompt": "x", "messages": [{"role": "user"}]}
    good = {key: body.get(key, fields[key]) for key in (*body, field)}
    lines = [line("a", endpoint, body), line("b", endpoint, good), line("c", endpoint, body)]

    batch = submit_and_wait(client, lines, endpoint=endpoint)

    message = message or "Model parameter is required."
    assert problems(batch) == [
        (1, "invalid_request", f"body.{field}", message),
        (3, "invalid_request", f"body.{field}", message),
    ]


def test_a_moderation_without_a_model_runs_with_the_default_one(client: openai.OpenAI) -> None:
    lines = [line("a", "/v1/moderations", {"input": "x"})]
    batch = submit_and_wait(client, lines, endpoint="/v1/moderations")

    assert batch.status == "completed"
    (result,) = read_lines(client, batch.output_file_id)
    assert result["response"]["body"]["model"] == "omni-moderation-latest"


def test_emulator_fail_models_still_fail_every_request(client: openai.OpenAI) -> None:
    lines = [chat_request("a", model="emulator-fail-503"), chat_request("b", model="emulator-fail-503")]
    batch = submit_and_wait(client, lines)

    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert batch.request_counts.failed == 2
    assert {line["response"]["status_code"] for line in read_lines(client, batch.error_file_id)} == {503}


def test_added_models_are_offered_on_every_endpoint(make_emulator: Callable[..., EmulatorServer]) -> None:
    client = client_for(make_emulator(models=("ft:gpt-4o-mini:acme::abc123", "my-embedder")))

    assert client.models.retrieve("my-embedder").owned_by == "org-emulator"
    chat = submit_and_wait(client, [chat_request("a", model="ft:gpt-4o-mini:acme::abc123")])
    embeddings = submit_and_wait(
        client,
        [line("a", "/v1/embeddings", {"model": "my-embedder", "input": "x"})],
        endpoint="/v1/embeddings",
    )
    assert (chat.status, embeddings.status) == ("completed", "completed")


def test_any_model_turns_the_check_off(make_emulator: Callable[..., EmulatorServer]) -> None:
    client = client_for(make_emulator(any_model=True))

    batch = submit_and_wait(client, [chat_request("a", model=UNKNOWN)])

    assert batch.status == "completed"
    assert client.chat.completions.create(model=UNKNOWN, messages=[{"role": "user", "content": "x"}]).choices


def test_answering_at_once_an_unknown_model_is_the_live_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model=UNKNOWN, messages=[{"role": "user", "content": "x"}])

    assert raised.value.code == "model_not_found"
    assert raised.value.body == {
        "message": f"The model `{UNKNOWN}` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


def test_the_upstream_mode_lets_the_upstream_server_decide(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    upstream = make_emulator(models=("local-llama",))
    relay = client_for(make_emulator(upstream_url=upstream.base_url, upstream_api_key=upstream.api_key))

    assert "local-llama" in {model.id for model in relay.models.list()}
    assert relay.models.retrieve("local-llama").owned_by == "org-emulator"
    with pytest.raises(openai.NotFoundError):
        relay.models.retrieve(UNKNOWN)
    # Not refused at validation: each request reaches the upstream server, which refuses the model.
    batch = submit_and_wait(relay, [chat_request("a", model=UNKNOWN), chat_request("b", model=UNKNOWN)])
    assert batch.status == "completed"
    errors = read_lines(relay, batch.error_file_id)
    assert [error["response"]["status_code"] for error in errors] == [404, 404]
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"
