"""Reading result lines fast: who, success or failure, why, tokens, without building models.

Result files can hold hundreds of megabytes; :func:`read_results` builds a pydantic model per
line, which is more than counting and joining need. Here ``msgspec`` decodes only the fields
that matter into small structs and skips the rest of each line (answers, vectors) unbuilt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from airflow_batch_provider.jsonl.files import JSONLSource, open_binary, source_name
from airflow_batch_provider.rules import is_retryable_result


class _TokenDetails(msgspec.Struct):
    cached_tokens: int = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: _TokenDetails | None = None
    input_tokens_details: _TokenDetails | None = None


class _BodyError(msgspec.Struct):
    code: str | None = None
    message: str | None = None


class _Body(msgspec.Struct):
    model: str | None = None
    usage: _Usage | None = None
    error: _BodyError | str | None = None


class _Response(msgspec.Struct):
    status_code: int = 0
    body: msgspec.Raw = msgspec.Raw(b"null")


class _Head(msgspec.Struct):
    custom_id: str
    response: _Response | None = None
    error: _BodyError | None = None


class _RequestHead(msgspec.Struct):
    custom_id: str


_HEAD = msgspec.json.Decoder(_Head)
_BODY = msgspec.json.Decoder(_Body)
_REQUEST = msgspec.json.Decoder(_RequestHead)


@dataclass(frozen=True, slots=True)
class ResultHead:
    """What one result line says, read without its answer.

    :param custom_id: the request it answers.
    :param status_code: the HTTP status of the request's answer; None when it got none.
    :param code: why it failed: the error's ``code`` (``batch_expired``, ``rate_limit_exceeded``,
        ...), else ``http_<status>``; None when it succeeded.
    :param message: the error's message, if any.
    :param model: the model that answered, if the answer says.
    :param input_tokens: input (prompt) tokens of the answer.
    :param output_tokens: output (completion) tokens of the answer.
    :param cached_tokens: input tokens served from the prompt cache.
    """

    custom_id: str
    status_code: int | None
    code: str | None
    message: str | None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    @property
    def succeeded(self) -> bool:
        """True for a 2xx answer with no error."""
        return self.code is None

    @property
    def retryable(self) -> bool:
        """True when trying the request again may succeed (see :func:`rules.is_retryable_result`)."""
        return not self.succeeded and is_retryable_result(self.status_code, self.code)


def read_head(line: bytes) -> ResultHead:
    """Decode what one result line says.

    :raises ValueError: the line is not a result line (no ``custom_id``, not JSON).
    """
    try:
        head = _HEAD.decode(line)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a result line: {exc}") from None
    response = head.response
    status = response.status_code if response is not None else None
    body = _body(response.body) if response is not None else _Body()
    usage = body.usage or _Usage()
    details = usage.prompt_tokens_details or usage.input_tokens_details or _TokenDetails()
    tokens = {
        "input_tokens": usage.input_tokens or usage.prompt_tokens,
        "output_tokens": usage.output_tokens or usage.completion_tokens,
        "cached_tokens": details.cached_tokens,
    }
    if head.error is not None:
        code, message = head.error.code or "error", head.error.message
    elif status is None or not 200 <= status < 300:
        error = body.error if isinstance(body.error, _BodyError) else _BodyError(message=body.error)
        code, message = error.code or f"http_{status}", error.message
    else:
        code, message = None, None
    return ResultHead(head.custom_id, status, code, message, body.model, **tokens)


def _body(raw: msgspec.Raw) -> _Body:
    try:
        return _BODY.decode(raw)
    except msgspec.DecodeError:  # null, or a body that is not an object: a proxy's text, say
        text = msgspec.json.decode(raw)
        return _Body(error=text[:300] if isinstance(text, str) else None)


def request_custom_id(line: bytes) -> str:
    """The ``custom_id`` of one request line.

    :raises ValueError: the line is not a request with a string ``custom_id``.
    """
    try:
        return _REQUEST.decode(line).custom_id
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a request line: {exc}") from None


def iter_heads(source: JSONLSource) -> Iterator[ResultHead]:
    """What each line of a result file says, streaming; blank lines are skipped.

    :raises ValueError: a line is not a result line; the message names the file and line.
    """
    with open_binary(source) as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                yield read_head(line)
            except ValueError as exc:
                raise ValueError(f"{source_name(source)}, line {number}: {exc}") from None


@dataclass
class ResultTally:
    """Counts, failure reasons and tokens of result lines.

    :param errors_kept: how many failures :attr:`first_errors` describes (default 10).
    """

    errors_kept: int = 10
    succeeded: int = 0
    failed: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)
    """Failures by reason (``code``, see :class:`ResultHead`)."""
    messages: dict[str, str] = field(default_factory=dict)
    """The first message seen for each reason."""
    first_errors: list[dict[str, Any]] = field(default_factory=list)
    """The first failures: ``custom_id``, ``status_code``, ``code``, ``message``."""
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    """Tokens by model: ``{"gpt-4o-mini": {"input": .., "output": .., "cached": ..}}``."""

    def add(self, head: ResultHead) -> None:
        """Count one result."""
        if head.succeeded:
            self.succeeded += 1
        else:
            self.add_failure(head.custom_id, head.status_code, head.code or "error", head.message)
        self.add_tokens(head)

    def add_tokens(self, head: ResultHead) -> None:
        """Count the tokens of one answer, by the model that gave it."""
        if head.input_tokens or head.output_tokens:
            model = self.tokens.setdefault(head.model or "unknown", {"input": 0, "output": 0, "cached": 0})
            model["input"] += head.input_tokens
            model["output"] += head.output_tokens
            model["cached"] += head.cached_tokens

    def add_failure(self, custom_id: str, status_code: int | None, code: str, message: str | None) -> None:
        """Count one failed request."""
        self.failed += 1
        self.error_codes[code] += 1
        if message:
            self.messages.setdefault(code, message)
        if len(self.first_errors) < self.errors_kept:
            error = {"custom_id": custom_id, "status_code": status_code, "code": code, "message": message}
            self.first_errors.append(error)

    @property
    def total_tokens(self) -> dict[str, int]:
        """Tokens summed over every model: ``input``, ``output``, ``cached``, ``total``."""
        total = {"input": 0, "output": 0, "cached": 0}
        for counts in self.tokens.values():
            for kind in total:
                total[kind] += counts[kind]
        return {**total, "total": total["input"] + total["output"]}

    def most_common_errors(self, count: int = 3) -> str:
        """The commonest failure reasons: ``rate_limit_exceeded (12): Rate limit ..., http_400 (2)``."""
        return ", ".join(
            f"{code} ({times:,})" + (f": {self.messages[code]}" if code in self.messages else "")
            for code, times in self.error_codes.most_common(count)
        )


def tally_results(*sources: JSONLSource, errors_kept: int = 10) -> ResultTally:
    """Count the lines of result files: successes, failures by reason, tokens by model."""
    tally = ResultTally(errors_kept=errors_kept)
    for source in sources:
        for head in iter_heads(source):
            tally.add(head)
    return tally
