"""Batches that fail validation, expire, or run on the emulator's clock; with the official SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from airflow_batch_provider.jsonl import ProblemCode
from tests.support.requests import chat_request
from tests.support.sdk import client_for, read_lines, submit, submit_and_wait, wait_for


def _line(**changes: Any) -> dict[str, Any]:
    line = chat_request("r2")
    for key, value in changes.items():
        if value is None:
            line.pop(key)
        else:
            line[key] = value
    return line


@pytest.mark.parametrize(
    ("bad_line", "code", "param"),
    [
        ("{not json", ProblemCode.INVALID_JSON_LINE, None),
        (_line(custom_id=None), ProblemCode.MISSING_REQUIRED_PARAMETER, "custom_id"),
        (_line(method=None), ProblemCode.MISSING_REQUIRED_PARAMETER, "method"),
        (_line(url=None), ProblemCode.MISSING_REQUIRED_PARAMETER, "url"),
        (_line(body=None), ProblemCode.MISSING_REQUIRED_PARAMETER, "body"),
        (_line(url="/v1/embeddings"), ProblemCode.INVALID_URL, "url"),
        (_line(method="GET"), ProblemCode.INVALID_METHOD, "method"),
        (_line(custom_id="r1"), ProblemCode.DUPLICATE_CUSTOM_ID, "custom_id"),
        (chat_request("r2", model="gpt-4o"), ProblemCode.MODEL_MISMATCH, "body.model"),
        (chat_request("r2", stream=True), ProblemCode.STREAMING_UNSUPPORTED, "body.stream"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_input_problem_fails_the_batch_naming_line_code_and_param(
    client: openai.OpenAI, bad_line: dict[str, Any] | str, code: ProblemCode, param: str | None
) -> None:
    created = submit(client, [chat_request("r1"), bad_line, chat_request("r3")])
    assert created.status == "validating"

    batch = wait_for(client, created.id)

    assert batch.status == "failed"
    assert batch.failed_at is not None
    assert batch.errors is not None
    assert batch.errors.data is not None
    problems = [(error.line, error.code, error.param) for error in batch.errors.data]
    assert (2, code.value, param) in problems
    assert all(error.message for error in batch.errors.data)
    assert batch.output_file_id is None
    assert batch.error_file_id is None


def test_every_problem_is_reported(client: openai.OpenAI) -> None:
    batch = submit_and_wait(client, ["{oops", chat_request("a"), chat_request("a", stream=True)])

    assert batch.errors is not None
    assert batch.errors.data is not None
    assert {(error.line, error.code) for error in batch.errors.data} >= {
        (1, "invalid_json_line"),
        (3, "duplicate_custom_id"),
        (3, "streaming_unsupported"),
    }


def test_empty_input_file_fails(client: openai.OpenAI) -> None:
    file = client.files.create(file=("empty.jsonl", b""), purpose="batch")
    created = client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(client, created.id)

    assert batch.status == "failed"
    assert batch.errors is not None
    assert [error.code for error in batch.errors.data or []] == [ProblemCode.EMPTY_FILE.value]


def test_missing_input_file_fails_with_invalid_request(client: openai.OpenAI) -> None:
    created = client.batches.create(
        input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(client, created.id)

    assert batch.status == "failed"
    assert batch.errors is not None
    (error,) = batch.errors.data or []
    assert (error.code, error.param) == ("invalid_request", "file_id")
    assert error.message == "Cannot find file file-missing."


def test_line_url_must_match_the_batch_endpoint(client: openai.OpenAI) -> None:
    lines = [
        {
            **chat_request("e"),
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": "x"},
        }
    ]
    batch = submit_and_wait(client, lines, endpoint="/v1/chat/completions")

    assert batch.status == "failed"
    assert batch.errors is not None
    assert [(error.line, error.code) for error in batch.errors.data or []] == [(1, "invalid_url")]


def test_embeddings_batch(client: openai.OpenAI) -> None:
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": f"text {i}", "dimensions": 8},
        }
        for i in range(3)
    ]
    batch = submit_and_wait(client, lines, endpoint="/v1/embeddings")

    assert batch.status == "completed"
    assert batch.model == "text-embedding-3-small"
    results = read_lines(client, batch.output_file_id)
    assert [len(line["response"]["body"]["data"][0]["embedding"]) for line in results] == [8, 8, 8]
    assert batch.usage is not None
    assert batch.usage.input_tokens == sum(
        line["response"]["body"]["usage"]["prompt_tokens"] for line in results
    )


def test_expired_batch_keeps_finished_results_and_lists_the_rest(make_emulator) -> None:  # type: ignore[no-untyped-def]
    client = client_for(make_emulator(completion_window_seconds=1.0, request_delay=0.05, concurrency=2))
    total = 200
    created = submit(client, [chat_request(f"r{i}") for i in range(total)])
    assert created.expires_at is not None

    batch = wait_for(client, created.id, timeout=10)

    assert batch.status == "expired"
    assert batch.expired_at is not None
    assert batch.request_counts is not None
    finished = read_lines(client, batch.output_file_id)
    unfinished = read_lines(client, batch.error_file_id)
    assert 0 < len(finished) < total
    assert batch.request_counts.completed == len(finished)
    assert batch.request_counts.completed + batch.request_counts.failed == total
    assert all(line["response"]["status_code"] == 200 for line in finished)
    for line in unfinished:
        assert line["response"] is None
        assert line["error"]["code"] == "batch_expired"
        assert line["error"]["message"]
    custom_ids = [line["custom_id"] for line in finished + unfinished]
    assert sorted(custom_ids) == sorted(f"r{i}" for i in range(total))
    error_file = client.files.retrieve(str(batch.error_file_id))
    assert error_file.purpose == "batch_output"
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_counts_rise_while_in_progress(make_emulator) -> None:  # type: ignore[no-untyped-def]
    client = client_for(make_emulator(request_delay=0.02, concurrency=1))
    created = submit(client, [chat_request(f"r{i}") for i in range(60)])
    seen: set[int] = set()

    def record(batch: Any) -> bool:
        if batch.request_counts is not None and batch.status == "in_progress":
            seen.add(batch.request_counts.completed)
        return batch.status == "completed"

    wait_for(client, created.id, record)
    assert len(seen) >= 3, seen


def test_output_lines_are_json_with_the_live_keys(client: openai.OpenAI) -> None:
    batch = submit_and_wait(client, [chat_request("only")])
    raw = client.files.content(str(batch.output_file_id)).text
    assert raw.endswith("\n")
    assert list(json.loads(raw)) == ["id", "custom_id", "response", "error"]


def _embedding_line(custom_id: str, inputs: object) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small", "input": inputs},
    }


@pytest.mark.parametrize(
    ("content", "endpoint", "code"),
    [
        (b'{"custom_id": "\xff"}\n', "/v1/chat/completions", ProblemCode.INVALID_ENCODING),
        (
            json.dumps(_embedding_line("e", ["x"] * 50_001)).encode() + b"\n",
            "/v1/embeddings",
            ProblemCode.TOO_MANY_EMBEDDING_INPUTS,
        ),
        (
            b"".join(json.dumps(_embedding_line(str(i), "x")).encode() + b"\n" for i in range(50_001)),
            "/v1/embeddings",
            ProblemCode.TOO_MANY_TASKS,
        ),
    ],
    ids=["not utf-8", "too many embedding inputs", "too many requests"],
)
def test_file_wide_limits_fail_the_batch(
    client: openai.OpenAI, content: bytes, endpoint: str, code: ProblemCode
) -> None:
    file = client.files.create(file=("requests.jsonl", content), purpose="batch")
    created = client.batches.create(input_file_id=file.id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]

    batch = wait_for(client, created.id)

    assert batch.status == "failed"
    assert batch.errors is not None
    assert code.value in {error.code for error in batch.errors.data or []}
