"""Putting results back beside their requests, and reading result lines fast."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from airflow_batch_provider.jsonl import (
    answer_text,
    iter_heads,
    join_results,
    read_results,
    tally_results,
    typed_output_checker,
)
from tests.support.requests import chat_requests


def ok(custom_id: str, text: str = "fine", model: str = "gpt-4o-mini", **usage: int) -> dict[str, Any]:
    body = {
        "model": model,
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, **usage},
    }
    return {"id": f"req-{custom_id}", "custom_id": custom_id, "response": {"status_code": 200, "body": body}}


def http_error(custom_id: str, status: int, code: str | None = None) -> dict[str, Any]:
    body = {"error": {"message": f"status {status}", "type": "x", "code": code}}
    return {"custom_id": custom_id, "response": {"status_code": status, "body": body}, "error": None}


def expired(custom_id: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "response": None, "error": {"code": "batch_expired", "message": "late"}}


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_every_request_once_in_input_order_and_a_later_file_wins(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", chat_requests(5))
    first_output = write(tmp_path / "o1.jsonl", [ok("r3"), ok("r0")])
    first_errors = write(tmp_path / "e1.jsonl", [http_error("r1", 500), http_error("r4", 400), expired("r2")])
    retry_output = write(tmp_path / "o2.jsonl", [ok("r1", "second try")])
    output, errors = io.BytesIO(), io.BytesIO()

    tally = join_results(requests, [first_output, first_errors, retry_output], output, errors)

    succeeded = [json.loads(line) for line in output.getvalue().splitlines()]
    failed = [json.loads(line) for line in errors.getvalue().splitlines()]
    assert [line["custom_id"] for line in succeeded] == ["r0", "r1", "r3"]
    assert succeeded[1]["response"]["body"]["choices"][0]["message"]["content"] == "second try"
    assert [line["custom_id"] for line in failed] == ["r2", "r4"]
    assert (tally.succeeded, tally.failed) == (3, 2)
    assert tally.error_codes == {"batch_expired": 1, "http_400": 1}
    assert tally.total_tokens == {"input": 30, "output": 15, "cached": 0, "total": 45}


def test_a_request_nothing_answered_gets_a_no_result_line(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", chat_requests(2))
    output, errors = io.BytesIO(), io.BytesIO()

    tally = join_results(requests, [write(tmp_path / "o.jsonl", [ok("r1")])], output, errors)

    (missing,) = [json.loads(line) for line in errors.getvalue().splitlines()]
    assert missing["custom_id"] == "r0"
    assert missing["error"]["code"] == "no_result"
    assert tally.error_codes == {"no_result": 1}


class Verdict(BaseModel):
    sentiment: str
    stars: int


def test_typed_output_is_validated_and_a_bad_answer_counts_as_failed(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", chat_requests(3))
    answers = [
        ok("r0", json.dumps({"sentiment": "positive", "stars": 5})),
        ok("r1", "not json at all"),
        ok("r2", json.dumps({"sentiment": "negative", "stars": "many"})),
    ]
    output, errors = io.BytesIO(), io.BytesIO()

    tally = join_results(
        requests,
        [write(tmp_path / "o.jsonl", answers)],
        output,
        errors,
        check_output=typed_output_checker(Verdict),
    )

    (good,) = [json.loads(line) for line in output.getvalue().splitlines()]
    assert good["output"] == {"sentiment": "positive", "stars": 5}
    bad = [json.loads(line) for line in errors.getvalue().splitlines()]
    assert [line["custom_id"] for line in bad] == ["r1", "r2"]
    assert {line["error"]["code"] for line in bad} == {"invalid_output"}
    assert "stars" in bad[1]["error"]["message"]
    assert tally.total_tokens["total"] == 45  # the tokens of answers that did not validate were still spent


def test_the_joined_files_read_back_as_results(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", chat_requests(2))
    output = tmp_path / "output.jsonl"
    with output.open("wb") as out, (tmp_path / "errors.jsonl").open("wb") as err:
        join_results(requests, [write(tmp_path / "o.jsonl", [ok("r1"), ok("r0")])], out, err)

    assert [result.custom_id for result in read_results(output)] == ["r0", "r1"]


def test_a_broken_result_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    results = tmp_path / "o.jsonl"
    results.write_text(json.dumps(ok("r0")) + "\n" + '{"no_custom_id": 1}\n')

    with pytest.raises(ValueError, match=r"o\.jsonl, line 2: not a result line"):
        list(iter_heads(results))


def test_heads_read_every_failure_shape(tmp_path: Path) -> None:
    lines = [
        http_error("a", 429, "rate_limit_exceeded"),
        expired("b"),
        {"custom_id": "c", "response": {"status_code": 502, "body": "Bad gateway"}, "error": None},
        ok("d", cached_tokens=0, prompt_tokens_details={"cached_tokens": 4}),  # type: ignore[arg-type]
    ]
    heads = list(iter_heads(write(tmp_path / "r.jsonl", lines)))

    assert [(head.code, head.retryable) for head in heads] == [
        ("rate_limit_exceeded", True),
        ("batch_expired", True),
        ("http_502", True),
        (None, False),
    ]
    assert heads[2].message == "Bad gateway"
    assert heads[3].cached_tokens == 4


def test_tally_names_the_commonest_reasons(tmp_path: Path) -> None:
    lines = [http_error(f"a{n}", 429, "rate_limit_exceeded") for n in range(3)] + [http_error("b", 400)]
    tally = tally_results(write(tmp_path / "e.jsonl", lines))

    assert tally.most_common_errors() == "rate_limit_exceeded (3): status 429, http_400 (1): status 400"
    assert len(tally.first_errors) == 4


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"choices": [{"message": {"content": "hi"}}]}, "hi"),
        (
            {"choices": [{"message": {"content": None, "tool_calls": [{"function": {"arguments": "{}"}}]}}]},
            "{}",
        ),
        ({"choices": [{"text": "legacy"}]}, "legacy"),
        ({"output": [{"type": "message", "content": [{"type": "output_text", "text": "resp"}]}]}, "resp"),
        ({"output": [{"type": "function_call", "arguments": '{"a": 1}'}]}, '{"a": 1}'),
        ({"data": [{"embedding": [0.1]}]}, None),
    ],
)
def test_answer_text_of_each_endpoint(body: dict[str, Any], text: str | None) -> None:
    assert answer_text(body) == text
