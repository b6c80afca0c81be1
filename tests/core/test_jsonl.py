"""The JSONL tools: every validation rule with a file that breaks it, writing and reading."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from upath import UPath

from airflow_batch_provider.exceptions import BatchInputError
from airflow_batch_provider.jsonl import (
    INVALID_JSON_MESSAGE,
    MAX_REQUESTS,
    SUPPORTED_ENDPOINTS,
    InputReport,
    ProblemCode,
    endpoint_problem,
    find_problems,
    inspect_file,
    iter_requests,
    read_results,
    validate_file,
    write_requests,
)
from airflow_batch_provider.models import BatchError, BatchRequest
from tests.support.requests import chat_request as support_chat_request

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"


def chat_request(n: int, **changes: Any) -> dict[str, Any]:
    """The shared chat request ``req-<n>``; ``changes`` replace (or, set to ..., drop) its fields."""
    request = support_chat_request(f"req-{n}", f"Question {n}?")
    for key, value in changes.items():
        if value is ...:
            del request[key]
        else:
            request[key] = value
    return request


def embedding_request(n: int, inputs: Any) -> dict[str, Any]:
    return {
        "custom_id": f"emb-{n}",
        "method": "POST",
        "url": EMBEDDINGS,
        "body": {"model": "text-embedding-3-small", "input": inputs},
    }


@pytest.fixture
def make_file(tmp_path: Path):
    """Write lines (dicts become compact JSON, str and bytes are written as they are)."""

    def make(*lines: dict[str, Any] | str | bytes, name: str = "requests.jsonl") -> Path:
        path = tmp_path / name
        with path.open("wb") as file:
            for line in lines:
                if isinstance(line, dict):
                    line = json.dumps(line, separators=(",", ":"), ensure_ascii=False)
                file.write((line.encode() if isinstance(line, str) else line) + b"\n")
        return path

    return make


def where(problems: list[BatchError]) -> list[tuple[int | None, str | None, str | None]]:
    return [(problem.line, problem.param, problem.code) for problem in problems]


# --- a valid file ---


def test_valid_file_has_no_problems_and_returns_its_request_count(make_file):
    path = make_file(*(chat_request(n) for n in range(1, 6)))

    assert find_problems(path, CHAT) == []
    assert validate_file(path, CHAT) == 5
    assert validate_file(str(path), CHAT) == 5


def test_valid_file_object_is_read_from_where_it_is_and_left_open():
    buffer = io.BytesIO(b"".join(json.dumps(chat_request(n)).encode() + b"\n" for n in range(3)))

    assert validate_file(buffer, CHAT) == 3
    assert not buffer.closed


def test_crlf_line_endings_and_a_last_line_without_newline_are_fine(tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(json.dumps(chat_request(1)).encode() + b"\r\n" + json.dumps(chat_request(2)).encode())

    assert validate_file(path, CHAT) == 2


def test_remote_path_is_opened_through_its_filesystem():
    path = UPath("memory://bucket/requests.jsonl")  # fsspec's in-memory filesystem, as s3:// would be

    assert write_requests([chat_request(1), chat_request(2)], path) == 2

    assert validate_file(path, CHAT) == 2
    assert [request.custom_id for request in iter_requests(path)] == ["req-1", "req-2"]


def test_inspect_file_counts_requests_and_names_the_model_in_one_reading(make_file):
    report = inspect_file(make_file(*(chat_request(n) for n in range(4))), CHAT)

    assert report == InputReport(problems=[], requests=4, model="gpt-4o-mini")


def test_inspect_file_names_the_first_model_when_models_disagree(make_file):
    path = make_file(chat_request(1, body={"model": "o3", "messages": []}), chat_request(2))

    report = inspect_file(path, CHAT)

    assert report.model == "o3"
    assert where(report.problems) == [(2, "body.model", "model_mismatch")]


def test_text_mode_file_object_is_refused_with_a_hint(make_file):
    path = make_file(chat_request(1))
    with path.open() as text_file, pytest.raises(TypeError, match="binary mode"):
        find_problems(text_file, CHAT)  # type: ignore[arg-type]


# --- one test per rule ---


@pytest.mark.parametrize(
    "bad_line",
    [
        pytest.param('{"custom_id": "req-2", "method": "POST"', id="truncated"),
        pytest.param("{'custom_id': 'req-2'}", id="single-quotes"),
        pytest.param('{"custom_id": "req-2", "body": {"temperature": NaN}}', id="nan"),
        pytest.param("", id="blank-line"),
    ],
)
def test_line_that_is_not_json_is_invalid_json_line(make_file, bad_line):
    path = make_file(chat_request(1), bad_line, chat_request(3))

    problems = find_problems(path, CHAT)

    assert where(problems) == [(2, None, "invalid_json_line")]
    assert problems[0].message.startswith(INVALID_JSON_MESSAGE)
    assert "line 1" not in problems[0].message  # the parser sees one line; the file's line is 2


def test_invalid_json_line_message_gives_the_parsers_reason(make_file):
    problems = find_problems(make_file('{"custom_id": "req-1",}'), CHAT)

    assert problems[0].message == f"{INVALID_JSON_MESSAGE} (trailing comma at column 23)"


def test_line_that_is_json_but_not_an_object_is_invalid_type(make_file):
    problems = find_problems(make_file(chat_request(1), "[1, 2]", '"text"'), CHAT)

    assert where(problems) == [(2, None, "invalid_type"), (3, None, "invalid_type")]
    assert "an array" in problems[0].message


@pytest.mark.parametrize("field", ["custom_id", "method", "url", "body"])
def test_missing_field_is_missing_required_parameter(make_file, field):
    problems = find_problems(make_file(chat_request(1), chat_request(2, **{field: ...})), CHAT)

    assert where(problems) == [(2, field, "missing_required_parameter")]
    assert problems[0].message == f"Missing required parameter: '{field}'."


def test_null_field_counts_as_missing(make_file):
    problems = find_problems(make_file(chat_request(1, url=None)), CHAT)

    assert where(problems) == [(1, "url", "missing_required_parameter")]


@pytest.mark.parametrize(
    ("custom_id", "described"),
    [(42, "a number"), ("", "an empty string"), (["a"], "an array"), (True, "a boolean")],
)
def test_custom_id_must_be_a_non_empty_string(make_file, custom_id, described):
    problems = find_problems(make_file(chat_request(1, custom_id=custom_id)), CHAT)

    assert where(problems) == [(1, "custom_id", "invalid_type")]
    assert described in problems[0].message


@pytest.mark.parametrize("body", ["text", [1], 3])
def test_body_must_be_an_object(make_file, body):
    problems = find_problems(make_file(chat_request(1, body=body)), CHAT)

    assert where(problems) == [(1, "body", "invalid_type")]


def test_duplicate_custom_id_names_the_line_it_first_appeared_on(make_file):
    path = make_file(chat_request(1), chat_request(2), chat_request(3, custom_id="req-1"))

    problems = find_problems(path, CHAT)

    assert where(problems) == [(3, "custom_id", "duplicate_custom_id")]
    assert "'req-1'" in problems[0].message
    assert "line 1" in problems[0].message


@pytest.mark.parametrize("method", ["GET", "post", "PUT"])
def test_method_other_than_post_is_invalid_method(make_file, method):
    problems = find_problems(make_file(chat_request(1, method=method)), CHAT)

    assert where(problems) == [(1, "method", "invalid_method")]
    assert repr(method) in problems[0].message


@pytest.mark.parametrize(
    "url", ["/v1/embeddings", "/chat/completions", "https://api.openai.com/v1/chat/completions"]
)
def test_url_other_than_the_batch_endpoint_is_invalid_url(make_file, url):
    problems = find_problems(make_file(chat_request(1), chat_request(2, url=url)), CHAT)

    assert where(problems) == [(2, "url", "invalid_url")]
    assert url in problems[0].message
    assert CHAT in problems[0].message


def test_unsupported_endpoint_is_one_invalid_value_listing_the_supported_ones(make_file):
    path = make_file(chat_request(1, url="/v1/images/generations"))

    problems = find_problems(path, "/v1/images/generations")

    # One problem for the batch; the lines' urls are not compared with an endpoint that cannot work.
    assert where(problems) == [(None, "endpoint", "invalid_value")]
    assert problems[0].message.startswith("Invalid value: '/v1/images/generations'. Supported values are: ")
    for endpoint in SUPPORTED_ENDPOINTS:
        assert f"'{endpoint}'" in problems[0].message


def test_endpoint_problem_accepts_each_supported_endpoint():
    assert all(endpoint_problem(endpoint) is None for endpoint in SUPPORTED_ENDPOINTS)
    assert endpoint_problem("/v1/chat/completions/") is not None


def test_more_than_one_model_names_each_model_and_where_it_first_appears(make_file):
    lines = [chat_request(1), chat_request(2)]
    lines.append(chat_request(3, body={"model": "gpt-4o", "messages": []}))
    lines.append(chat_request(4, body={"model": "gpt-4o", "messages": []}))
    lines.append(chat_request(5, body={"model": "o3", "messages": []}))

    problems = find_problems(make_file(*lines), CHAT)

    assert where(problems) == [(3, "body.model", "model_mismatch"), (5, "body.model", "model_mismatch")]
    assert "'gpt-4o'" in problems[0].message
    assert "'gpt-4o-mini'" in problems[0].message
    assert "line 1" in problems[0].message
    assert "'o3'" in problems[1].message


def test_stream_true_is_streaming_unsupported_and_stream_false_is_fine(make_file):
    streaming = {"model": "gpt-4o-mini", "messages": [], "stream": True}
    not_streaming = {"model": "gpt-4o-mini", "messages": [], "stream": False}
    path = make_file(chat_request(1, body=not_streaming), chat_request(2, body=streaming))

    assert where(find_problems(path, CHAT)) == [(2, "body.stream", "streaming_unsupported")]


def test_more_requests_than_the_limit_is_too_many_tasks(make_file):
    at_limit = make_file(*(chat_request(n) for n in range(3)), name="at-limit.jsonl")
    over_limit = make_file(*(chat_request(n) for n in range(4)), name="over-limit.jsonl")

    assert validate_file(at_limit, CHAT, max_requests=3) == 3
    problems = find_problems(over_limit, CHAT, max_requests=3)
    assert where(problems) == [(4, None, "too_many_tasks")]
    assert "3" in problems[0].message


def test_every_line_but_blank_ones_counts_towards_the_request_limit(make_file):
    path = make_file(chat_request(1), "", "not json", chat_request(4))

    problems = find_problems(path, CHAT, max_requests=2)

    assert where(problems) == [
        (2, None, "invalid_json_line"),
        (3, None, "invalid_json_line"),
        (4, None, "too_many_tasks"),
    ]


def test_real_file_of_one_request_over_the_limit_is_too_many_tasks(tmp_path):
    path = tmp_path / "big.jsonl"
    requests = (
        {"custom_id": f"r{n}", "method": "POST", "url": CHAT, "body": {"model": "m", "messages": []}}
        for n in range(MAX_REQUESTS + 1)
    )
    write_requests(requests, path)

    problems = find_problems(path, CHAT)

    assert where(problems) == [(MAX_REQUESTS + 1, None, "too_many_tasks")]


def test_file_larger_than_the_limit_is_file_too_large_at_the_line_that_passes_it(make_file):
    path = make_file(*(chat_request(n) for n in range(1, 5)))
    line_size = len(path.read_bytes().splitlines(keepends=True)[0])

    assert validate_file(path, CHAT, max_bytes=path.stat().st_size) == 4
    problems = find_problems(path, CHAT, max_bytes=2 * line_size + 5)
    assert where(problems) == [(3, None, "file_too_large")]


@pytest.mark.parametrize("content", [b"", b"\n", b"\n  \n\r\n"])
def test_file_with_no_request_is_one_empty_file_problem(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)

    problems = find_problems(path, CHAT)

    assert where(problems) == [(None, None, "empty_file")]
    with pytest.raises(BatchInputError):
        validate_file(path, CHAT)


def test_bytes_that_are_not_utf8_are_invalid_encoding_on_their_line(make_file):
    latin1 = json.dumps(chat_request(2, custom_id="café"), ensure_ascii=False).encode("latin-1")
    path = make_file(chat_request(1), latin1, chat_request(3, custom_id="naïve"))

    problems = find_problems(path, CHAT)

    assert where(problems) == [(2, None, "invalid_encoding")]
    assert "UTF-8" in problems[0].message


def test_embedding_inputs_are_counted_over_the_whole_file(make_file):
    path = make_file(
        embedding_request(1, ["a", "b", "c"]),  # 3 inputs
        embedding_request(2, "d"),  # 1 input
        embedding_request(3, [1, 2, 3]),  # one token array: 1 input
        embedding_request(4, [[1], [2]]),  # two token arrays: 2 inputs, 7 in all
        embedding_request(5, "e"),
    )

    assert validate_file(path, EMBEDDINGS, max_embedding_inputs=8) == 5
    problems = find_problems(path, EMBEDDINGS, max_embedding_inputs=6)
    assert where(problems) == [(4, "body.input", "too_many_embedding_inputs")]
    assert "7" in problems[0].message
    # Inputs are only limited for embeddings batches.
    chat_like = make_file(
        *(chat_request(n, body={"model": "m", "messages": [], "input": ["a"] * 5}) for n in range(3))
    )
    assert find_problems(chat_like, CHAT, max_embedding_inputs=6) == []


# --- request bodies ---

REQUIRED = [
    ("/v1/chat/completions", {"model": "gpt-4o-mini"}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("/v1/chat/completions", {"model": "", "messages": []}, "model"),
    ("/v1/chat/completions", {"model": None, "messages": []}, "model"),
    ("/v1/responses", {"model": "gpt-4o-mini"}, "input"),
    ("/v1/responses", {"input": "hi"}, "model"),
    ("/v1/embeddings", {"model": "text-embedding-3-small"}, "input"),
    ("/v1/embeddings", {"input": "hi"}, "model"),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct"}, "prompt"),
    ("/v1/completions", {"prompt": "hi"}, "model"),
    ("/v1/moderations", {"model": "omni-moderation-latest"}, "input"),
]


@pytest.mark.parametrize(("endpoint", "body", "field"), REQUIRED)
def test_a_body_without_a_required_field_is_invalid_request(make_file, endpoint, body, field):
    line = {"custom_id": "a", "method": "POST", "url": endpoint, "body": body}

    problems = find_problems(make_file(line), endpoint)

    assert where(problems) == [(1, f"body.{field}", "invalid_request")]
    assert problems[0].message == f"{field.capitalize()} parameter is required."


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/moderations", {"input": "hi"}),  # the endpoint picks its own model
        ("/v1/responses", {"model": "gpt-4o-mini", "previous_response_id": "resp_1"}),
        ("/v1/responses", {"model": "gpt-4o-mini", "conversation": "conv_1"}),
        # What the endpoint itself refuses when the request runs is not validation's business.
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}),
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "robot"}]}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ""}),
    ],
)
def test_bodies_with_their_required_fields_pass(make_file, endpoint, body):
    line = {"custom_id": "a", "method": "POST", "url": endpoint, "body": body}

    assert find_problems(make_file(line), endpoint) == []


def test_a_line_gets_one_body_problem_the_first_missing_field(make_file):
    path = make_file(chat_request(1, body={}), chat_request(2, body={"temperature": 0}), chat_request(3))

    problems = find_problems(path, CHAT)

    assert where(problems) == [(1, "body.model", "invalid_request"), (2, "body.model", "invalid_request")]
    assert {problem.message for problem in problems} == {"Model parameter is required."}


def test_a_line_aimed_at_another_endpoint_is_only_an_invalid_url(make_file):
    line = {"custom_id": "a", "method": "POST", "url": EMBEDDINGS, "body": {"model": "m", "input": "x"}}
    no_url = {"custom_id": "b", "method": "POST", "body": {"model": "m", "input": "x"}}

    assert where(find_problems(make_file(line, no_url), CHAT)) == [
        (1, "url", "invalid_url"),
        (2, "url", "missing_required_parameter"),
        (2, "body.messages", "invalid_request"),  # without a url, the batch's endpoint reads the body
    ]


def test_unknown_models_are_model_not_found_when_the_models_are_known(make_file):
    path = make_file(
        chat_request(1, body={"model": "nonexistent-model-xyz", "messages": []}),
        chat_request(2),
        chat_request(3, body={"model": "nonexistent-model-xyz", "messages": []}),
        chat_request(4, body={"messages": []}),
    )

    problems = find_problems(path, CHAT, known_models={"gpt-4o-mini"})

    assert where(problems) == [
        (1, "body.model", "model_not_found"),
        (3, "body.model", "model_not_found"),
        (4, "body.model", "invalid_request"),
    ]
    assert problems[0].message == (
        "The provided model 'nonexistent-model-xyz' is not supported by the Batch API."
    )
    # Without the server's models (the default, before an upload) models are not checked.
    assert where(find_problems(path, CHAT)) == [
        (2, "body.model", "model_mismatch"),
        (4, "body.model", "invalid_request"),
    ]


def test_inspect_file_names_the_model_of_the_first_known_line(make_file):
    path = make_file(chat_request(1, body={"model": "nope", "messages": []}), chat_request(2))

    report = inspect_file(path, CHAT, known_models={"gpt-4o-mini"})

    assert report.model == "gpt-4o-mini"
    assert report.requests == 2


# --- every problem at once ---


def test_file_with_several_problems_reports_all_of_them_in_line_order(make_file):
    path = make_file(
        chat_request(1),
        "not json",
        chat_request(3, method="GET", url="/v1/embeddings"),
        chat_request(4, custom_id="req-1", body={"model": "gpt-4o-mini", "messages": [], "stream": True}),
        chat_request(5, custom_id=...),
        chat_request(6, body={"model": "gpt-4o", "messages": []}),
        b"\xff\xfe",
    )

    problems = find_problems(path, CHAT)

    assert where(problems) == [
        (2, None, "invalid_json_line"),
        (3, "method", "invalid_method"),
        (3, "url", "invalid_url"),
        (4, "custom_id", "duplicate_custom_id"),
        (4, "body.stream", "streaming_unsupported"),
        (5, "custom_id", "missing_required_parameter"),
        (6, "body.model", "model_mismatch"),
        (7, None, "invalid_encoding"),
    ]


def test_validate_file_raises_one_error_naming_every_line_and_the_file(make_file):
    path = make_file(chat_request(1, custom_id=...), chat_request(2), "{", name="mine.jsonl")

    with pytest.raises(BatchInputError) as raised:
        validate_file(path, CHAT)

    assert where(raised.value.errors) == [
        (1, "custom_id", "missing_required_parameter"),
        (3, None, "invalid_json_line"),
    ]
    message = str(raised.value)
    assert "mine.jsonl has 2 problem(s)" in message
    assert "line 1, custom_id: missing_required_parameter" in message
    assert "line 3: invalid_json_line" in message


def test_problem_codes_are_the_strings_the_api_uses():
    assert ProblemCode.INVALID_JSON_LINE == "invalid_json_line"
    assert str(ProblemCode.MISSING_REQUIRED_PARAMETER) == "missing_required_parameter"
    assert len({code.value for code in ProblemCode}) == len(ProblemCode)


# --- writing and reading ---


def test_write_then_read_requests_round_trips(tmp_path):
    path = tmp_path / "out.jsonl"
    requests = [
        chat_request(1, body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Grüße 👋"}]}),
        BatchRequest(custom_id="req-2", url=CHAT, body={"model": "gpt-4o-mini", "messages": []}),
    ]

    assert write_requests(iter(requests), path) == 2

    lines = path.read_bytes().splitlines()
    assert lines[0] == json.dumps(requests[0], separators=(",", ":"), ensure_ascii=False).encode()
    assert "Grüße 👋".encode() in lines[0]
    assert validate_file(path, CHAT) == 2
    read = list(iter_requests(path))
    assert [request.custom_id for request in read] == ["req-1", "req-2"]
    assert read[1].method == "POST"
    assert read[0].body == requests[0]["body"]


def test_write_requests_to_a_binary_file_object_leaves_it_open():
    buffer = io.BytesIO()

    assert write_requests([chat_request(1), chat_request(2)], buffer) == 2

    assert not buffer.closed
    assert buffer.getvalue().count(b"\n") == 2


def test_write_requests_names_the_request_that_cannot_be_written(tmp_path):
    with pytest.raises(TypeError, match="Request 2 cannot be written as JSON"):
        write_requests([chat_request(1), chat_request(2, body={"when": object()})], tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="Request 1 cannot be written as JSON"):
        write_requests([chat_request(1, body={"temperature": float("nan")})], tmp_path / "x.jsonl")
    with pytest.raises(TypeError, match="Request 1 is str"):
        write_requests(["{}"], tmp_path / "x.jsonl")  # type: ignore[list-item]


def test_iter_requests_names_the_bad_line(make_file):
    path = make_file(chat_request(1), chat_request(2, url=...))

    requests = iter_requests(path)
    assert next(requests).custom_id == "req-1"
    with pytest.raises(ValueError, match=r"line 2: not a valid BatchRequest: url: Field required"):
        next(requests)


OUTPUT_LINES = [
    {
        "id": "batch_req_1",
        "custom_id": "req-1",
        "response": {
            "status_code": 200,
            "request_id": "req_abc",
            "body": {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
            },
        },
        "error": None,
    },
    {
        "id": "batch_req_2",
        "custom_id": "req-2",
        "response": {
            "status_code": 400,
            "request_id": "req_def",
            "body": {
                "error": {
                    "message": "This model's maximum context length is 128000 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        },
        "error": None,
    },
    {
        "id": "batch_req_3",
        "custom_id": "req-3",
        "response": None,
        "error": {
            "code": "batch_expired",
            "message": "Request not executed before the batch expired.",
        },
    },
]


def test_read_results_parses_success_error_and_expired_lines(make_file):
    results = list(read_results(make_file(*OUTPUT_LINES, "")))

    assert [result.custom_id for result in results] == ["req-1", "req-2", "req-3"]
    ok, rejected, expired = results
    assert ok.succeeded
    assert ok.response is not None
    assert ok.response.body["choices"][0]["message"]["content"] == "Paris."
    assert not rejected.succeeded
    assert rejected.response is not None
    assert rejected.response.status_code == 400
    assert rejected.response.body["error"]["code"] == "context_length_exceeded"
    assert not expired.succeeded
    assert expired.response is None
    assert expired.error is not None
    assert expired.error.code == "batch_expired"


def test_read_results_streams_and_names_the_bad_line(make_file):
    path = make_file(OUTPUT_LINES[0], '{"id": "batch_req_2", "response": null}', OUTPUT_LINES[2])

    results = read_results(path)
    assert next(results).custom_id == "req-1"
    with pytest.raises(ValueError, match=r"line 2: not a valid BatchResult: custom_id: Field required"):
        next(results)


def test_read_results_names_a_line_that_is_not_json(make_file):
    with pytest.raises(ValueError, match=r"results.jsonl, line 1: not a valid BatchResult"):
        list(read_results(make_file("oops", name="results.jsonl")))


@pytest.mark.parametrize("exact_ids", [1_000, 10], ids=["dict", "hashes-past-the-dict"])
def test_duplicates_are_named_exactly_at_any_size(tmp_path: Path, monkeypatch, exact_ids: int) -> None:
    from airflow_batch_provider.jsonl import validation

    monkeypatch.setattr(validation._DuplicateIds, "EXACT_IDS", exact_ids)
    requests = [chat_request(n) for n in range(40)]
    for line, first in ((8, 3), (25, 12), (40, 21)):  # lines are 1-based
        requests[line - 1] = {**requests[line - 1], "custom_id": requests[first - 1]["custom_id"]}
    requests[30] = {**requests[30], "url": "/v1/embeddings"}  # another problem, between them
    path = tmp_path / "requests.jsonl"
    write_requests(requests, path)

    problems = find_problems(path, CHAT)

    assert [(p.line, p.code) for p in problems] == [
        (8, "duplicate_custom_id"),
        (25, "duplicate_custom_id"),
        (31, "invalid_url"),
        (40, "duplicate_custom_id"),
    ]
    assert "already used on line 12" in (problems[1].message or "")
    assert "already used on line 21" in (problems[3].message or "")


def test_duplicates_in_a_stream_that_cannot_be_read_again(tmp_path: Path, monkeypatch) -> None:
    from airflow_batch_provider.jsonl import validation

    monkeypatch.setattr(validation._DuplicateIds, "EXACT_IDS", 5)
    requests = [chat_request(n) for n in range(20)]
    requests[15] = {**requests[15], "custom_id": requests[2]["custom_id"]}
    read, write = os.pipe()
    with os.fdopen(write, "wb") as out:
        write_requests(requests, out)
    with os.fdopen(read, "rb") as stream:
        problems = find_problems(stream, CHAT)

    assert [(p.line, p.code) for p in problems] == [(16, "duplicate_custom_id")]
