"""Input lines the emulator's reader cannot take fail the batch at validation, naming the line.

They used to pass the validator and break the run (``server_error``), or break both.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.requests import chat_request
from tests.support.sdk import submit_and_wait


def with_value(value_text: str) -> str:
    """A chat request line whose ``body.x`` is ``value_text``, as written."""
    line = json.dumps(chat_request("r2"))
    return line[:-2] + f', "x": {value_text}' + "}}"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 200 levels"),
        ("[" * 300 + "]" * 300, "nested deeper than 200 levels"),
        ('"\\ud800"', "half of a surrogate pair"),
        ("1e999", "too large for a 64-bit float"),
        ("NaN", "not parseable"),
    ],
    ids=["100000-deep", "300-deep", "lone-surrogate", "float-overflow", "nan"],
)
def test_a_line_the_reader_cannot_take_fails_the_batch_at_validation(
    client: openai.OpenAI, value: str, reason: str
) -> None:
    batch = submit_and_wait(client, [chat_request("r1"), with_value(value), chat_request("r3")])

    assert batch.status == "failed"
    assert batch.errors is not None
    problems = batch.errors.data or []
    assert [(error.line, error.code) for error in problems] == [(2, "invalid_json_line")]
    assert reason in (problems[0].message or "")
    assert batch.in_progress_at is None  # refused before any request ran


def test_nesting_at_the_limit_runs(client: openai.OpenAI) -> None:
    depth = 200 - 3  # the line's object, "body" and "x"'s own object count too
    value = '{"k": ' * depth + "1" + "}" * depth
    batch = submit_and_wait(client, [chat_request("r1"), with_value("{" + '"k": ' + value + "}")])

    assert batch.status == "completed", batch.errors
