"""Requests as DAGs give them, made into input files: normalized, split within limits, fingerprinted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_batch_provider.exceptions import BatchInputError
from airflow_batch_provider.inputs import (
    Limits,
    fingerprint,
    infer_endpoint,
    normalize,
    split_file,
    write_requests_file,
)
from airflow_batch_provider.jsonl import validate_file
from airflow_batch_provider.models import BatchRequest
from tests.support.requests import chat_request, chat_requests


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dicts_may_leave_out_method_and_url() -> None:
    (request,) = normalize([{"custom_id": "a", "body": {"model": "m", "input": "x"}}], "/v1/embeddings")

    assert request == {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "m", "input": "x"},
    }


@pytest.mark.parametrize(
    ("endpoint", "field", "value"),
    [
        ("/v1/chat/completions", "messages", [{"role": "user", "content": "hello"}]),
        ("/v1/responses", "input", "hello"),
        ("/v1/embeddings", "input", "hello"),
        ("/v1/completions", "prompt", "hello"),
        ("/v1/moderations", "input", "hello"),
    ],
)
def test_prompt_strings_become_requests_of_the_model(endpoint: str, field: str, value: Any) -> None:
    first, second = normalize(["hello", "again"], endpoint, model="some-model")

    assert first == {
        "custom_id": "request-0",
        "method": "POST",
        "url": endpoint,
        "body": {"model": "some-model", field: value},
    }
    assert second["custom_id"] == "request-1"


def test_batch_requests_and_dicts_mix() -> None:
    requests = list(normalize([BatchRequest(**chat_request("a")), chat_request("b")], "/v1/chat/completions"))

    assert [request["custom_id"] for request in requests] == ["a", "b"]


def test_an_item_of_another_type_is_named() -> None:
    with pytest.raises(TypeError, match="Request 2 is int"):
        list(normalize([chat_request("a"), 7], "/v1/chat/completions"))  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("nan"), "it holds NaN or an infinity"),
        (float("inf"), "it holds NaN or an infinity"),
        ("\ud800", "half of a surrogate pair"),
        (object(), "is not JSON serializable"),
        ("deep", "nested too deeply"),
    ],
    ids=["nan", "infinity", "lone-surrogate", "object", "deep"],
)
def test_requests_that_are_not_json_are_named_by_their_line(tmp_path: Path, value: Any, why: str) -> None:
    if value == "deep":
        value = []
        for _ in range(100_000):
            value = [value]
    requests = [chat_request("a"), chat_request("b", temperature=value), 7, chat_request("d")]

    with pytest.raises(BatchInputError) as caught:
        write_requests_file(requests, tmp_path / "x.jsonl", "/v1/chat/completions", None)  # type: ignore[arg-type]

    (bad, wrong_type) = caught.value.errors
    assert (bad.line, bad.code) == (2, "invalid_json_line")
    assert why in bad.message
    assert (wrong_type.line, wrong_type.code) == (3, "invalid_type")
    assert "Request 3 is int" in wrong_type.message


def test_the_endpoint_comes_from_the_first_request() -> None:
    assert infer_endpoint({"url": "/v1/embeddings"}) == "/v1/embeddings"
    assert infer_endpoint("a prompt") == "/v1/chat/completions"
    assert infer_endpoint(None) == "/v1/chat/completions"
    assert infer_endpoint({"url": "/v1/unknown"}) == "/v1/chat/completions"


def test_split_by_requests_keeps_order_and_every_request_once(tmp_path: Path) -> None:
    source = tmp_path / "all.jsonl"
    write_requests_file(chat_requests(25), source, "/v1/chat/completions", None)

    parts = split_file(source, tmp_path, "/v1/chat/completions", Limits(requests=10))

    assert [part.requests for part in parts] == [10, 10, 5]
    ids = [line["custom_id"] for part in parts for line in lines(part.path)]
    assert ids == [f"r{n}" for n in range(25)]
    for part in parts:
        assert validate_file(part.path, "/v1/chat/completions") == part.requests


def test_split_by_bytes_and_by_embedding_inputs(tmp_path: Path) -> None:
    source = tmp_path / "all.jsonl"
    requests = [
        {"custom_id": f"e{n}", "body": {"model": "text-embedding-3-small", "input": ["a", "b", "c"]}}
        for n in range(6)
    ]
    write_requests_file(requests, source, "/v1/embeddings", None)
    line_size = len(source.read_bytes().splitlines()[0]) + 1

    (tmp_path / "inputs").mkdir()
    (tmp_path / "bytes").mkdir()

    by_inputs = split_file(source, tmp_path / "inputs", "/v1/embeddings", Limits(embedding_inputs=7))
    by_bytes = split_file(source, tmp_path / "bytes", "/v1/embeddings", Limits(bytes=line_size * 4))

    assert [part.requests for part in by_inputs] == [2, 2, 2]  # 3 inputs each: two fit under 7
    assert [part.requests for part in by_bytes] == [4, 2]


def test_a_part_digest_changes_with_its_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_requests_file(chat_requests(3), tmp_path / "a.jsonl", "/v1/chat/completions", None)
    write_requests_file(chat_requests(3, model="gpt-4o"), tmp_path / "b.jsonl", "/v1/chat/completions", None)

    (first,) = split_file(tmp_path / "a.jsonl", tmp_path / "a", "/v1/chat/completions")
    (second,) = split_file(tmp_path / "b.jsonl", tmp_path / "b", "/v1/chat/completions")

    assert first.digest != second.digest


def test_the_fingerprint_covers_content_and_settings() -> None:
    base = fingerprint("abc", endpoint="/v1/chat/completions", conn_id="c", completion_window="24h")

    assert base.startswith("sha256:")
    assert len(base) == 71
    assert base == fingerprint("abc", conn_id="c", endpoint="/v1/chat/completions", completion_window="24h")
    assert base != fingerprint("abd", endpoint="/v1/chat/completions", conn_id="c", completion_window="24h")
    assert base != fingerprint(
        "abc", endpoint="/v1/chat/completions", conn_id="other", completion_window="24h"
    )
