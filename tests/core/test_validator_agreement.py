"""The validator and the emulator's reader agree on every line, and the validator only ever says why.

The emulator validates a batch with the validator (``jsonl.inspect_file``) and then reads each
line with ``jsonl.iter_requests``. Every line the validator accepts must be readable, and
writable back as JSON; every line the reader refuses, the validator must refuse first, as a
line-numbered ``invalid_json_line``, never by raising something else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_batch_provider.exceptions import BatchInputError
from airflow_batch_provider.jsonl import iter_requests, validate_file
from airflow_batch_provider.rules import MAX_JSON_NESTING

CHAT = "/v1/chat/completions"
HEAD = (
    '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
    '"body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": '
)


def line_with(value_text: str) -> bytes:
    """A request line whose ``body.x`` is ``value_text``, as written."""
    return (HEAD + value_text + "}}\n").encode("utf-8", "surrogatepass")


def verdicts(tmp_path: Path, line: bytes) -> tuple[bool, bool, BatchInputError | None]:
    """``(the validator accepts, the reader reads, the validator's error)`` for a one-line file."""
    path = tmp_path / "one.jsonl"
    path.write_bytes(line)
    error = None
    try:
        validate_file(path, CHAT)
    except BatchInputError as exc:
        error = exc
    try:
        requests = list(iter_requests(path))
        # The emulator writes what it read back as JSON (results echo nothing, but bodies go on).
        for request in requests:
            json.dumps(request.model_dump(mode="json"), allow_nan=False).encode("utf-8")
        read = True
    except (ValueError, UnicodeEncodeError):
        read = False
    return error is None, read, error


def nested(depth: int) -> str:
    """``depth`` objects, one inside another (as body.x, at depth 3 of the line)."""
    return '{"k": ' * depth + "1" + "}" * depth


# The line's own object and "body" are two levels: body.x may nest MAX_JSON_NESTING - 2 more.
EDGE = MAX_JSON_NESTING - 2


@pytest.mark.parametrize(
    ("value", "accepted", "reason"),
    [
        (nested(EDGE), True, None),
        (nested(EDGE + 1), False, f"nested deeper than {MAX_JSON_NESTING} levels"),
        ("[" * 300 + "]" * 300, False, "nested deeper"),
        ("[" * 100_000 + "]" * 100_000, False, "nested deeper"),
        ('"\\ud800"', False, "half of a surrogate pair"),
        ('"\\udc00"', False, "half of a surrogate pair"),
        ('"\\ud800x"', False, "half of a surrogate pair"),
        ('"\\ud83d\\ude00"', True, None),
        ("1e308", True, None),
        ("1e999", False, "too large for a 64-bit float"),
        ("-1e999", False, "too large"),
        ("1" + "0" * 400 + ".5", False, "too large"),
        ("NaN", False, "expected value"),
        ("Infinity", False, "expected value"),
        ("-Infinity", False, "invalid number"),
        ('"\x01"', False, "control character"),
        ("123456789012345678901234567890", True, None),
    ],
    ids=[
        "nesting-at-the-limit",
        "one-level-past",
        "300-arrays",
        "100000-arrays",
        "lone-high-surrogate",
        "lone-low-surrogate",
        "high-surrogate-then-text",
        "surrogate-pair",
        "largest-float",
        "float-overflow",
        "negative-overflow",
        "400-digits",
        "nan",
        "infinity",
        "minus-infinity",
        "control-character",
        "big-integer",
    ],
)
def test_edge_lines(tmp_path, value, accepted, reason) -> None:
    validator, reader, error = verdicts(tmp_path, line_with(value))

    assert validator is accepted
    if validator:
        assert reader, "a line the validator accepts must be readable"
    else:
        assert error is not None
        (problem,) = error.errors
        assert (problem.line, problem.code) == (1, "invalid_json_line")
        assert reason in problem.message


def test_a_deep_line_among_good_ones_is_named_by_its_line(tmp_path) -> None:
    good = line_with('"fine"').decode()
    path = tmp_path / "input.jsonl"
    path.write_text(good.replace('"a"', '"r1"') + line_with("[" * 100_000 + "]" * 100_000).decode() + good)

    with pytest.raises(BatchInputError) as caught:
        validate_file(path, CHAT)

    problems = [(problem.line, problem.code) for problem in caught.value.errors]
    assert (2, "invalid_json_line") in problems


# -- generated lines --

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


def dumped(value: Any) -> str:
    """JSON text as Python writes it: NaN and Infinity included, surrogates escaped."""
    return json.dumps(value, allow_nan=True)


@st.composite
def mutated_lines(draw: st.DrawFn) -> bytes:
    """A request line, mutated: bytes replaced, inserted or cut, or nesting piled up."""
    line = bytearray(line_with(dumped(draw(json_values))))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        kind = draw(st.sampled_from(["replace", "insert", "cut", "nest"]))
        at = draw(st.integers(min_value=0, max_value=len(line)))
        if kind == "replace" and at < len(line):
            line[at] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "insert":
            line[at:at] = draw(
                st.sampled_from([b"[", b"]", b"{", b'"', b"\\ud800", b"\\", b",", b"1e999", b"\xff"])
            )
        elif kind == "cut":
            del line[at:]
        else:
            depth = draw(st.integers(min_value=150, max_value=260))
            line = bytearray(line_with("[" * depth + "0" + "]" * depth))
    return bytes(line)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.one_of(st.builds(lambda value: line_with(dumped(value)), json_values), mutated_lines()))
def test_the_validator_and_the_reader_agree_on_generated_lines(tmp_path, line) -> None:
    validator, reader, error = verdicts(tmp_path, line)  # raises only if the validator did

    if validator:
        assert reader, f"accepted but unreadable: {line!r}"
    if not reader and line.strip():
        assert not validator
    if error is not None:  # every problem is on a line of the file, or about the whole file
        lines = len(line.splitlines())
        assert all(problem.line is None or 1 <= problem.line <= lines for problem in error.errors)
