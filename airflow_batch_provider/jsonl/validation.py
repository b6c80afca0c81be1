"""Validation of batch input files against the Batch API's rules, streaming.

An input file holds one request per line::

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

:func:`find_problems` checks such a file against the Batch API's rules and returns every
problem it finds, each with a 1-based ``line``, ``param``, ``code`` and ``message`` (the shape
the API reports in ``Batch.errors``). It is the one place these rules live: the
operators validate with it before uploading and the emulator fails batches with it.

Validation reads the file once, in binary, one line at a time, and checks plain dicts
(no model per line), so it costs little more than parsing the file and its memory grows
only with the set of ``custom_id`` values.

Where the live API has an error code for a rule, :class:`ProblemCode` uses it. Each line's body
gets at most one problem about its fields, as on the live API: the first required field it
lacks (``invalid_request``, "Model parameter is required.", see
:data:`~airflow_batch_provider.rules.REQUIRED_BODY_FIELDS`), or else a model the server does not
offer (``model_not_found``; checked only when the caller knows the server's models, as the
emulator does). Everything else about a body (types, values, empty arrays) is the endpoint's to
refuse when it runs the request, which puts a 400 in the batch's error file.
Differences from the live API worth knowing: a line that holds only whitespace is a
problem (``invalid_json_line``), and the message of an unparseable line ends with the
parser's reason after the live API's sentence.

Lines are parsed with the parser pydantic uses (``pydantic_core.from_json``), as the emulator
reads them, so that a line the validator accepts is a line the emulator can run. Beyond JSON's
syntax, it refuses (``invalid_json_line``) what the live API cannot take either: ``NaN`` and
``Infinity``; numbers too large for a 64-bit float; a ``\\u`` escape of half a surrogate pair
(no character of its own); and nesting deeper than :data:`~airflow_batch_provider.rules.MAX_JSON_NESTING`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Container
from dataclasses import dataclass
from enum import Enum
from typing import Any, BinaryIO

from pydantic_core import from_json

from airflow_batch_provider.exceptions import BatchInputError
from airflow_batch_provider.jsonl.files import JSONLSource, open_binary, source_name
from airflow_batch_provider.models import BatchError
from airflow_batch_provider.rules import (
    EMBEDDINGS_ENDPOINT,
    MAX_EMBEDDING_INPUTS,
    MAX_FILE_BYTES,
    MAX_JSON_NESTING,
    MAX_REQUESTS,
    SUPPORTED_ENDPOINTS,
    embedding_inputs,
    missing_body_field,
)


class ProblemCode(str, Enum):
    """The ``code`` of each problem :func:`find_problems` reports."""

    # Codes the live API reports.
    INVALID_JSON_LINE = "invalid_json_line"
    MISSING_REQUIRED_PARAMETER = "missing_required_parameter"
    INVALID_URL = "invalid_url"
    INVALID_VALUE = "invalid_value"
    STREAMING_UNSUPPORTED = "streaming_unsupported"
    INVALID_REQUEST = "invalid_request"
    MODEL_NOT_FOUND = "model_not_found"
    DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
    MODEL_MISMATCH = "model_mismatch"
    EMPTY_FILE = "empty_file"
    TOO_MANY_TASKS = "too_many_tasks"
    # Codes of our own, for rules whose live code is not known.
    INVALID_TYPE = "invalid_type"
    INVALID_METHOD = "invalid_method"
    INVALID_ENCODING = "invalid_encoding"
    FILE_TOO_LARGE = "file_too_large"
    TOO_MANY_EMBEDDING_INPUTS = "too_many_embedding_inputs"

    def __str__(self) -> str:
        return self.value


INVALID_JSON_MESSAGE = "This line is not parseable as valid JSON."
MODEL_NOT_FOUND_MESSAGE = "The provided model '{model}' is not supported by the Batch API."
"""The live API's message for a line whose ``body.model`` it does not offer for batches."""


def missing_field_message(field: str) -> str:
    """The live API's message for a body that lacks ``field``: "Model parameter is required."."""
    return f"{field.capitalize()} parameter is required."


_REQUIRED_FIELDS = ("custom_id", "method", "url", "body")


# A number with a three-digit exponent, or of 300 digits, may be too large for a float. Seen
# with every digit as 9 (and E as e), each is a substring: cheaper to find than by a regex.
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789E", b"9999999999e")
_HUGE_NUMBER_SHAPES = (b"9e999", b"9e+999", b"9" * 300)


def _maybe_huge_number(raw: bytes) -> bool:
    shape = raw.translate(_DIGITS_AS_NINES)
    return any(part in shape for part in _HUGE_NUMBER_SHAPES)


_HALF_A_PAIR = "a \\u escape is half of a surrogate pair, no character on its own,"
# The parser's words, and ours for them.
_REASONS = {
    "recursion limit exceeded": f"nested deeper than {MAX_JSON_NESTING} levels",
    "unexpected end of hex escape": _HALF_A_PAIR,
    "lone leading surrogate in hex escape": _HALF_A_PAIR,
}


def parse_line(raw: bytes) -> Any:
    """One line's JSON value, parsed as the emulator parses it.

    :raises ValueError: the line is not JSON the API takes; the message says why and where
        (``at column N``).
    """
    try:
        value = from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        reason = str(exc).replace(" at line 1 column ", " at column ")
        for parser_words, ours in _REASONS.items():
            reason = reason.replace(parser_words, ours)
        raise ValueError(reason) from None
    # from_json reads 1e999 as infinity, which no JSON encoder writes back.
    if _maybe_huge_number(raw) and not _finite(value):
        raise ValueError("a number is too large for a 64-bit float")
    return value


def _finite(value: Any) -> bool:
    """Whether every number in ``value`` is finite (walked without recursion)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def _problem(
    code: ProblemCode, message: str, param: str | None = None, line: int | None = None
) -> BatchError:
    return BatchError(code=code.value, message=message, param=param, line=line)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def endpoint_problem(endpoint: str) -> BatchError | None:
    """Say what is wrong with a batch's ``endpoint``, or return None when it is supported.

    The message is the live API's answer to ``POST /v1/batches`` with that endpoint.

    :param endpoint: the endpoint the batch targets, e.g. ``/v1/chat/completions``.
    """
    if endpoint in SUPPORTED_ENDPOINTS:
        return None
    supported = ", ".join(f"'{value}'" for value in SUPPORTED_ENDPOINTS)
    return _problem(
        ProblemCode.INVALID_VALUE,
        f"Invalid value: '{endpoint}'. Supported values are: {supported}.",
        param="endpoint",
    )


class _DuplicateIds:
    """Finds the ``custom_id``s used twice, exactly, in memory that stays small at any size.

    The first :data:`EXACT_IDS` ids (a whole batch's worth) are kept in a dict, which names a
    duplicate at once. Past that (the million requests an ``OpenAIBatchOperator`` validates before
    splitting them), the dict would cost about 100 bytes an id; instead each id's 64-bit hash goes
    into a flat array (8 bytes), and :meth:`late_duplicates` sorts the hashes once the file is
    read and reads the file again for the lines behind any hash seen twice.

    :param rereadable: the file can be read again; otherwise the dict is kept at any size.
    """

    EXACT_IDS = 50_000

    def __init__(self, rereadable: bool) -> None:
        self.first_line: dict[str, int] | None = {}
        self.hashes = array("q")
        self.rereadable = rereadable
        self.exact_until = 0
        """The last line whose duplicates were named at once."""

    def see(self, custom_id: str, line: int) -> int | None:
        """The first line of ``custom_id`` if it is a duplicate known now, else None."""
        if self.first_line is None:
            self.hashes.append(hash(custom_id))
            return None
        first = self.first_line.setdefault(custom_id, line)
        self.exact_until = line
        if len(self.first_line) > self.EXACT_IDS and self.rereadable:
            self.hashes.extend(hash(known) for known in self.first_line)
            self.first_line = None
        return first if first != line else None

    def late_duplicates(self, file: BinaryIO) -> list[tuple[int, str, int]]:
        """``(line, custom_id, first line)`` of the duplicates past :data:`EXACT_IDS` (the file
        read again from where ``file`` is)."""
        if self.first_line is not None:
            return []
        twice, previous = set(), None
        for key in sorted(self.hashes):
            if key == previous:
                twice.add(key)
            previous = key
        self.hashes = array("q")
        found: list[tuple[int, str, int]] = []
        firsts: dict[str, int] = {}
        for line, raw in enumerate(file, start=1) if twice else ():
            request = _json_object(raw)
            custom_id = request.get("custom_id") if request is not None else None
            if type(custom_id) is str and custom_id and hash(custom_id) in twice:
                first = firsts.setdefault(custom_id, line)
                if first != line and line > self.exact_until:
                    found.append((line, custom_id, first))
        return found


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """A line's JSON object, or None when it is no valid JSON object."""
    try:
        value = parse_line(raw)
    except ValueError:
        return None
    return value if type(value) is dict else None


class _Checker:
    """The per-line rules of an input file; one instance checks one file."""

    def __init__(
        self,
        endpoint: str,
        max_requests: int,
        max_bytes: int,
        max_embedding_inputs: int,
        known_models: Container[str] | None,
    ) -> None:
        self.endpoint = endpoint
        self.known_models = known_models
        self.check_url = endpoint in SUPPORTED_ENDPOINTS
        self.count_inputs = endpoint == EMBEDDINGS_ENDPOINT
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.max_embedding_inputs = max_embedding_inputs
        self.problems: list[BatchError] = []
        self.requests = 0
        self.size = 0
        self.embedding_inputs = 0
        self.blank_lines = 0
        self.duplicates = _DuplicateIds(rereadable=False)
        self.first_line_of_model: dict[str, int] = {}

    def check_file(self, file: BinaryIO) -> None:
        bad_endpoint = endpoint_problem(self.endpoint)
        if bad_endpoint is not None:
            self.problems.append(bad_endpoint)
        start = file.tell() if file.seekable() else None
        self.duplicates = _DuplicateIds(rereadable=start is not None)
        line = 0
        for line, raw in enumerate(file, start=1):
            self.check_line(line, raw)
        if start is not None and self.duplicates.first_line is None:
            file.seek(start)
            for duplicate in self.duplicates.late_duplicates(file):
                self.add_duplicate(*duplicate)
            self.problems.sort(key=lambda problem: problem.line or 0)
        if line == self.blank_lines:
            # No line but blank ones: one problem for the file, not one per blank line.
            self.problems = [problem for problem in self.problems if problem.line is None]
            self.add(ProblemCode.EMPTY_FILE, "The file is empty; it holds no requests.", None, None)

    def add(self, code: ProblemCode, message: str, param: str | None, line: int | None) -> None:
        self.problems.append(_problem(code, message, param, line))

    def check_line(self, line: int, raw: bytes) -> None:
        self.check_size(line, raw)
        try:
            request = parse_line(raw)
        except ValueError as exc:
            # Only a line the parser refused is decoded again, to say whether its bytes are the cause.
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                self.count_request(line)
                byte = raw[bad.start : bad.start + 1]
                self.add(
                    ProblemCode.INVALID_ENCODING,
                    f"This line is not valid UTF-8: byte {bad.start + 1} is {byte!r}. "
                    "Save the file as UTF-8.",
                    None,
                    line,
                )
                return
            if text.strip():
                self.count_request(line)
                reason = str(exc)
            else:
                self.blank_lines += 1
                reason = "the line is empty"
            self.add(ProblemCode.INVALID_JSON_LINE, f"{INVALID_JSON_MESSAGE} ({reason})", None, line)
            return
        self.count_request(line)
        self.check_request(line, request)

    def check_size(self, line: int, raw: bytes) -> None:
        size = self.size + len(raw)
        if self.size <= self.max_bytes < size:
            self.add(
                ProblemCode.FILE_TOO_LARGE,
                f"The file is larger than {self.max_bytes:,} bytes, the most a batch input file may hold; "
                f"it passes that size on line {line}. Split it into several batches.",
                None,
                line,
            )
        self.size = size

    def count_request(self, line: int) -> None:
        # Every line that is not blank is a request, even one too broken to check further.
        self.requests += 1
        if self.requests == self.max_requests + 1:
            self.add(
                ProblemCode.TOO_MANY_TASKS,
                f"The file holds more than {self.max_requests:,} requests, the most one batch may hold; "
                f"line {line} is request {self.requests:,}. Split it into several batches.",
                None,
                line,
            )

    def check_request(self, line: int, request: object) -> None:
        if type(request) is not dict:
            self.add(
                ProblemCode.INVALID_TYPE,
                f"Each line must be a JSON object (a request), but this line is {_json_type(request)}.",
                None,
                line,
            )
            return
        for field in _REQUIRED_FIELDS:
            if request.get(field) is None:
                self.add(
                    ProblemCode.MISSING_REQUIRED_PARAMETER,
                    f"Missing required parameter: '{field}'.",
                    field,
                    line,
                )
        self.check_custom_id(line, request.get("custom_id"))
        method = request.get("method")
        if method is not None and method != "POST":
            self.add(
                ProblemCode.INVALID_METHOD,
                f"Invalid method: {method!r}. The Batch API supports only 'POST'.",
                "method",
                line,
            )
        url = request.get("url")
        if self.check_url and url is not None and url != self.endpoint:
            self.add(
                ProblemCode.INVALID_URL,
                f"The url {url!r} does not match the batch's endpoint '{self.endpoint}'; "
                "every request of a batch must target the batch's endpoint.",
                "url",
                line,
            )
        body = request.get("body")
        if type(body) is dict:
            # A body meant for another endpoint is not read as the batch's endpoint reads it.
            self.check_body(line, body, fields=url is None or url == self.endpoint)
        elif body is not None:
            self.add(
                ProblemCode.INVALID_TYPE,
                f"Invalid type for 'body': expected an object, but got {_json_type(body)}.",
                "body",
                line,
            )

    def check_custom_id(self, line: int, custom_id: object) -> None:
        if type(custom_id) is not str or not custom_id:
            if custom_id is not None:
                self.add(
                    ProblemCode.INVALID_TYPE,
                    f"Invalid type for 'custom_id': expected a non-empty string, but got "
                    f"{'an empty string' if custom_id == '' else _json_type(custom_id)}.",
                    "custom_id",
                    line,
                )
            return
        first = self.duplicates.see(custom_id, line)
        if first is not None:
            self.add_duplicate(line, custom_id, first)

    def add_duplicate(self, line: int, custom_id: str, first: int) -> None:
        self.add(
            ProblemCode.DUPLICATE_CUSTOM_ID,
            f"The custom_id {custom_id!r} is already used on line {first}; "
            "each request of a batch needs its own custom_id.",
            "custom_id",
            line,
        )

    def check_body(self, line: int, body: dict[str, Any], fields: bool) -> None:
        model = body.get("model")
        if fields and self.check_url and self.check_fields(line, body, model):
            model = None  # its one problem is reported: the model is not compared with others
        if type(model) is str and model not in self.first_line_of_model:
            if self.first_line_of_model:
                first_model, first_line = next(iter(self.first_line_of_model.items()))
                self.add(
                    ProblemCode.MODEL_MISMATCH,
                    f"The model {model!r} first appears on line {line}, but line {first_line} uses "
                    f"{first_model!r}; every request of a batch must use the same model.",
                    "body.model",
                    line,
                )
            self.first_line_of_model[model] = line
        if body.get("stream") is True:
            self.add(
                ProblemCode.STREAMING_UNSUPPORTED,
                "Streaming is not supported in a batch; remove 'stream' or set it to false.",
                "body.stream",
                line,
            )
        if self.count_inputs:
            self.count_embedding_inputs(line, body.get("input"))

    def check_fields(self, line: int, body: dict[str, Any], model: object) -> bool:
        """Report the body's first missing field, or else a model not offered; True if either."""
        missing = missing_body_field(self.endpoint, body)
        if missing is not None:
            self.add(ProblemCode.INVALID_REQUEST, missing_field_message(missing), f"body.{missing}", line)
            return True
        if self.known_models is not None and type(model) is str and model not in self.known_models:
            message = MODEL_NOT_FOUND_MESSAGE.format(model=model)
            self.add(ProblemCode.MODEL_NOT_FOUND, message, "body.model", line)
            return True
        return False

    def count_embedding_inputs(self, line: int, inputs: object) -> None:
        total = self.embedding_inputs + embedding_inputs(inputs)
        if self.embedding_inputs <= self.max_embedding_inputs < total:
            self.add(
                ProblemCode.TOO_MANY_EMBEDDING_INPUTS,
                f"The batch holds more than {self.max_embedding_inputs:,} embedding inputs in all, the "
                f"most one /v1/embeddings batch may hold; line {line} brings the total to {total:,}.",
                "body.input",
                line,
            )
        self.embedding_inputs = total


@dataclass(frozen=True)
class InputReport:
    """What one reading of a batch input file found (see :func:`inspect_file`)."""

    problems: list[BatchError]
    """Every problem, in line order; empty when the file is valid."""
    requests: int
    """How many requests (lines that are not blank) the file holds."""
    model: str | None
    """The ``body.model`` of the requests (the first one seen, when they disagree)."""


def inspect_file(
    source: JSONLSource,
    endpoint: str,
    *,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_FILE_BYTES,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
    known_models: Container[str] | None = None,
) -> InputReport:
    """Check a batch input file and count its requests, in one reading.

    Takes the same arguments as :func:`find_problems`, which returns only the problems.
    """
    checker = _Checker(endpoint, max_requests, max_bytes, max_embedding_inputs, known_models)
    with open_binary(source) as file:
        checker.check_file(file)
    return InputReport(
        problems=checker.problems,
        requests=checker.requests,
        model=next(iter(checker.first_line_of_model), None),
    )


def find_problems(
    source: JSONLSource,
    endpoint: str,
    *,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_FILE_BYTES,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
    known_models: Container[str] | None = None,
) -> list[BatchError]:
    """Check a batch input file against the Batch API's rules and list every problem found.

    Problems come in the order of the lines they are on; a problem of the whole batch
    (an unsupported endpoint, an empty file) has ``line`` None.

    :param source: the input file: a path, or a binary file object (read from where it is).
    :param endpoint: the endpoint the batch targets; every line's ``url`` must equal it.
    :param max_requests: most requests allowed; default :data:`MAX_REQUESTS`.
    :param max_bytes: largest file size allowed, in bytes; default :data:`MAX_FILE_BYTES`.
    :param max_embedding_inputs: most embedding inputs allowed in all when ``endpoint`` is
        ``/v1/embeddings``; default :data:`MAX_EMBEDDING_INPUTS`.
    :param known_models: the models the server offers for ``endpoint``; a line naming another
        is a ``model_not_found`` problem. Default None: models are not checked (the client
        cannot know which ones a server offers to batches).
    :return: the problems, empty when the file is valid.
    """
    return inspect_file(
        source,
        endpoint,
        max_requests=max_requests,
        max_bytes=max_bytes,
        max_embedding_inputs=max_embedding_inputs,
        known_models=known_models,
    ).problems


def validate_file(
    source: JSONLSource,
    endpoint: str,
    *,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_FILE_BYTES,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
    known_models: Container[str] | None = None,
) -> int:
    """Check a batch input file and raise one error listing every problem in it.

    Takes the same arguments as :func:`find_problems`.

    :return: how many requests the file holds.
    :raises BatchInputError: the file breaks at least one rule; its ``errors`` lists them all.
    """
    report = inspect_file(
        source,
        endpoint,
        max_requests=max_requests,
        max_bytes=max_bytes,
        max_embedding_inputs=max_embedding_inputs,
        known_models=known_models,
    )
    if report.problems:
        raise BatchInputError(report.problems, source=source_name(source))
    return report.requests
