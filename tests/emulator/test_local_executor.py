"""The local executor: SDK-parsable, deterministic answers and the live 400s."""

from __future__ import annotations

import asyncio
import base64
import copy
import math
import time
from array import array
from typing import Any

import pytest
from openai.types import Completion, CreateEmbeddingResponse, ModerationCreateResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel, SecretStr

from airflow_batch_provider.emulator.checks import FAIL_FIELD
from airflow_batch_provider.emulator.executors import (
    Execution,
    LocalExecutor,
    UpstreamExecutor,
    make_executor,
)
from airflow_batch_provider.rules import SUPPORTED_ENDPOINTS

CHAT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
}
RESPONSES = {"model": "gpt-4o-mini", "instructions": "Be brief.", "input": "Name a prime number."}
COMPLETIONS = {"model": "gpt-3.5-turbo-instruct", "prompt": ["Say hello", "Say goodbye"], "n": 2}
EMBEDDINGS = {"model": "text-embedding-3-small", "input": ["the quick brown fox", "a lazy dog"]}
MODERATIONS = {"input": ["a calm afternoon", "graphic violence everywhere"]}

VALID = [
    ("/v1/chat/completions", CHAT, ChatCompletion),
    ("/v1/responses", RESPONSES, Response),
    ("/v1/completions", COMPLETIONS, Completion),
    ("/v1/embeddings", EMBEDDINGS, CreateEmbeddingResponse),
    ("/v1/moderations", MODERATIONS, ModerationCreateResponse),
]


def execute(url: str, body: Any, executor: LocalExecutor | None = None) -> Execution:
    return (executor or LocalExecutor()).execute_sync(url, body)


def test_answers_every_supported_endpoint():
    assert set(LocalExecutor().endpoints) == set(SUPPORTED_ENDPOINTS)


@pytest.mark.parametrize(("url", "body", "sdk_type"), VALID, ids=[case[0] for case in VALID])
def test_answers_parse_as_the_sdk_types(url: str, body: dict, sdk_type: type[BaseModel]):
    execution = execute(url, body)

    assert execution.status_code == 200
    sdk_type.model_validate(execution.body)  # strict: every required field, right types
    assert execution.usage == execution.body.get("usage")


@pytest.mark.parametrize(("url", "body", "sdk_type"), VALID, ids=[case[0] for case in VALID])
def test_same_input_gives_the_same_answer(url: str, body: dict, sdk_type: type[BaseModel]):
    frozen = 1_700_000_000.0
    first = asyncio.run(LocalExecutor(clock=lambda: frozen).execute(url, body))
    second = asyncio.run(LocalExecutor(clock=lambda: frozen).execute(url, copy.deepcopy(body)))

    assert first == second


def test_different_prompts_give_different_answers():
    other = {**CHAT, "messages": [{"role": "user", "content": "What is the capital of Peru?"}]}
    first, second = (execute("/v1/chat/completions", body).body for body in (CHAT, other))

    assert first["id"] != second["id"]
    assert first["choices"][0]["message"]["content"] != second["choices"][0]["message"]["content"]


def test_chat_completion_content_and_usage():
    body = execute("/v1/chat/completions", CHAT).body

    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert "What is the capital of France?" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["created"] == pytest.approx(time.time(), abs=5)


def test_chat_completion_honours_max_tokens_and_n():
    body = execute("/v1/chat/completions", {**CHAT, "max_completion_tokens": 3, "n": 2}).body

    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    assert all(choice["finish_reason"] == "length" for choice in body["choices"])
    assert body["usage"]["completion_tokens"] == 2 * 3


def test_response_is_incomplete_past_max_output_tokens():
    full = Response.model_validate(execute("/v1/responses", RESPONSES).body)
    cut = Response.model_validate(
        execute("/v1/responses", {**RESPONSES, "input": "x " * 200, "max_output_tokens": 16}).body
    )

    assert full.status == "completed"
    assert "Name a prime number." in full.output_text
    assert full.usage is not None
    assert full.usage.total_tokens == full.usage.input_tokens + full.usage.output_tokens
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage is not None
    assert cut.usage.output_tokens == 16


def test_completions_give_n_choices_per_prompt():
    completion = Completion.model_validate(execute("/v1/completions", COMPLETIONS).body)

    assert [choice.index for choice in completion.choices] == [0, 1, 2, 3]
    assert "Say hello" in completion.choices[0].text
    assert "Say goodbye" in completion.choices[2].text


def vectors(body: dict) -> list[list[float]]:
    return [item["embedding"] for item in execute("/v1/embeddings", body).body["data"]]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("model", "dimensions", "expected"),
    [
        ("text-embedding-3-small", None, 1536),
        ("text-embedding-3-large", None, 3072),
        ("text-embedding-ada-002", None, 1536),
        ("text-embedding-3-large", 256, 256),
        ("some-self-hosted-model", 7, 7),
    ],
)
def test_embeddings_honour_dimensions_and_are_unit_vectors(model: str, dimensions: int | None, expected: int):
    body: dict[str, Any] = {"model": model, "input": ["hello world", "goodbye"]}
    if dimensions:
        body["dimensions"] = dimensions

    for vector in vectors(body):
        assert len(vector) == expected
        assert math.fsum(x * x for x in vector) == pytest.approx(1.0)


def test_embeddings_follow_the_text():
    fox, same_words, other = vectors(
        {
            "model": "text-embedding-3-small",
            "input": ["the quick brown fox", "The quick, brown fox!", "tax law"],
        }
    )

    assert fox != same_words
    assert cosine(fox, same_words) > 0.7
    assert abs(cosine(fox, other)) < 0.3


def test_embeddings_base64_is_little_endian_float32_of_the_float_answer():
    body = {"model": "text-embedding-3-small", "input": "encode me", "dimensions": 64}
    floats = vectors(body)[0]
    packed = vectors({**body, "encoding_format": "base64"})[0]

    decoded = array("f")
    decoded.frombytes(base64.b64decode(packed))
    assert list(decoded) == pytest.approx(floats, abs=1e-7)


def test_embeddings_accept_token_arrays():
    execution = execute("/v1/embeddings", {"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]]})

    assert execution.status_code == 200
    assert len(execution.body["data"]) == 2
    assert execution.body["usage"]["prompt_tokens"] == execution.body["usage"]["total_tokens"] > 0


def test_moderation_flags_the_named_category():
    response = ModerationCreateResponse.model_validate(execute("/v1/moderations", MODERATIONS).body)

    calm, violent = response.results
    assert response.model == "omni-moderation-latest"
    assert not calm.flagged
    assert violent.flagged
    assert violent.categories.violence
    assert not violent.categories.hate
    assert violent.category_scores.violence > 0.5 > violent.category_scores.hate


BAD_BODIES = [
    ("/v1/chat/completions", {"messages": CHAT["messages"]}, None, None),
    ("/v1/chat/completions", {"model": "gpt-4o-mini"}, "messages", "missing_required_parameter"),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}, "messages", "empty_array"),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": "hi"}, "messages", "invalid_type"),
    (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"content": "hi"}]},
        "messages[0].role",
        "missing_required_parameter",
    ),
    (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user"}]},
        "messages[0].content",
        "missing_required_parameter",
    ),
    (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "robot", "content": "hi"}]},
        "messages[0].role",
        "invalid_value",
    ),
    (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": 42}]},
        "messages[0].content",
        "invalid_type",
    ),
    ("/v1/chat/completions", {"model": 7, "messages": CHAT["messages"]}, "model", "invalid_type"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": "ten"}, "max_tokens", "invalid_type"),
    ("/v1/responses", {"model": "gpt-4o-mini"}, "input", "missing_required_parameter"),
    ("/v1/responses", {**RESPONSES, "max_output_tokens": 5}, "max_output_tokens", "integer_below_min_value"),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct"}, "prompt", "missing_required_parameter"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ""}, None, None),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": []}, None, None),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": 3.5}, "input", "invalid_type"),
    (
        "/v1/embeddings",
        {"model": "text-embedding-ada-002", "input": "x", "dimensions": 8},
        "dimensions",
        None,
    ),
    (
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "x", "dimensions": 4096},
        "dimensions",
        "invalid_value",
    ),
    (
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"},
        "encoding_format",
        "invalid_value",
    ),
    ("/v1/moderations", {"model": "omni-moderation-latest"}, "input", "missing_required_parameter"),
]


@pytest.mark.parametrize(("url", "body", "param", "code"), BAD_BODIES)
def test_bodies_the_live_endpoint_rejects_get_400(url: str, body: dict, param: str | None, code: str | None):
    execution = execute(url, body)

    assert execution.status_code == 400
    assert execution.usage is None
    error = execution.body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert error["message"]


def test_a_body_that_is_not_an_object_gets_400():
    execution = execute("/v1/chat/completions", ["not", "an", "object"])

    assert execution.status_code == 400
    assert "an array" in execution.body["error"]["message"]


def test_an_unknown_endpoint_gets_the_live_404():
    execution = execute("/v1/images/generations", {"model": "dall-e-3", "prompt": "a cat"})

    assert execution.status_code == 404
    assert execution.body["error"]["message"] == "Invalid URL (POST /v1/images/generations)"


@pytest.mark.parametrize(
    ("body", "status", "type_", "code"),
    [
        ({**CHAT, "model": "emulator-fail-500"}, 500, "server_error", None),
        ({**CHAT, "model": "emulator-fail-503"}, 503, "server_error", None),
        ({**CHAT, FAIL_FIELD: 429}, 429, "requests", "rate_limit_exceeded"),
        ({**CHAT, FAIL_FIELD: "404"}, 404, "invalid_request_error", None),
        ({**CHAT, FAIL_FIELD: 200}, 400, "invalid_request_error", "invalid_value"),
        ({**CHAT, "model": "emulator-fail-soon"}, 400, "invalid_request_error", "invalid_value"),
    ],
)
def test_a_request_can_be_forced_to_fail(body: dict, status: int, type_: str, code: str | None):
    execution = execute("/v1/chat/completions", body)

    assert execution.status_code == status
    assert execution.body["error"]["type"] == type_
    assert execution.body["error"]["code"] == code


def test_is_fast_enough_for_a_50000_request_batch():
    executor = LocalExecutor()
    bodies = [{**CHAT, "user": f"user-{index}"} for index in range(5_000)]

    started = time.perf_counter()
    for body in bodies:
        executor.execute_sync("/v1/chat/completions", body)
    elapsed = time.perf_counter() - started

    # 50,000 requests must leave most of the 30 s batch budget to the worker (measured: 20-40 us each).
    assert elapsed * 10 < 10.0


class Settings(BaseModel):
    upstream_url: str | None = None
    upstream_api_key: SecretStr | None = None


def test_make_executor_picks_local_or_upstream():
    assert isinstance(make_executor(Settings()), LocalExecutor)

    upstream = make_executor(
        Settings(upstream_url="http://127.0.0.1:9/v1/", upstream_api_key=SecretStr("sk-upstream-secret"))
    )

    assert isinstance(upstream, UpstreamExecutor)
    assert upstream.target("/v1/embeddings") == "http://127.0.0.1:9/v1/embeddings"
    assert "sk-upstream-secret" not in repr(upstream)


@pytest.mark.parametrize(("url", "body", "sdk_type"), VALID, ids=[case[0] for case in VALID])
def test_token_counts_whatever_the_usage_shape(url: str, body: dict, sdk_type: type[BaseModel]):
    execution = execute(url, body)
    usage = execution.usage or {}

    assert execution.ok
    assert execution.input_tokens == usage.get("input_tokens", usage.get("prompt_tokens", 0))
    assert execution.output_tokens == usage.get("output_tokens", usage.get("completion_tokens", 0))
    assert (execution.input_tokens > 0) == (url != "/v1/moderations")
    assert not execute(url, {}).ok
