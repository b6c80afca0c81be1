"""Put results back beside their requests: every request once, in input order, streaming.

A batch's output and error files come in no promised order, a request may have been retried in a
later batch, and one that never ran has no line at all. :func:`join_results` reads the result
files once to index each ``custom_id``'s final line (a later file wins), then walks the requests
in order and copies each one's line to the output file (success) or the error file (failure), or
writes a ``no_result`` error line for a request nothing answered. Memory holds the index of one
set of result files (small per line), never the results.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydantic import TypeAdapter, ValidationError

from airflow_batch_provider.jsonl.files import JSONLSource, open_binary, source_name
from airflow_batch_provider.jsonl.results import ResultHead, ResultTally, read_head, request_custom_id
from airflow_batch_provider.rules import NO_RESULT

NO_RESULT_MESSAGE = "No result came back for this request: it never ran."
INVALID_OUTPUT = "invalid_output"
"""Error code of a successful answer whose content does not validate against ``output_type``."""


@dataclass(frozen=True, slots=True)
class _Found:
    file: int
    offset: int
    length: int
    head: ResultHead


def _index(paths: Sequence[str | os.PathLike[str]]) -> dict[str, _Found]:
    index: dict[str, _Found] = {}
    for number, path in enumerate(paths):
        with open(path, "rb") as file:
            offset = 0
            for line_number, line in enumerate(file, start=1):
                if line.strip():
                    try:
                        head = read_head(line)
                    except ValueError as exc:
                        raise ValueError(f"{path}, line {line_number}: {exc}") from None
                    index[head.custom_id] = _Found(number, offset, len(line), head)
                offset += len(line)
    return index


def answer_text(body: Any) -> str | None:
    """The text (or tool-call arguments) of an answer to chat completions, responses or completions.

    Structured output and tool calls carry their JSON here. None when the answer has no text.
    """
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        message = choice.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                return str(message["content"])
            calls = message.get("tool_calls")
            if isinstance(calls, list) and calls and isinstance(calls[0], dict):
                return (calls[0].get("function") or {}).get("arguments")
        return choice.get("text") if isinstance(choice.get("text"), str) else None
    texts, arguments = [], None
    for item in body.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call" and arguments is None:
            arguments = item.get("arguments")
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "output_text":
                texts.append(str(part.get("text", "")))
    return "".join(texts) if texts else arguments


def typed_output_checker(output_type: Any) -> Callable[[bytes], tuple[bytes, str | None]]:
    """A function that validates a successful result line's answer against ``output_type``.

    It returns the line with the validated value added as ``"output"``, and None; or, when the
    answer does not validate, the line unchanged and why.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(output_type)

    def check(line: bytes) -> tuple[bytes, str | None]:
        result = json.loads(line)
        text = answer_text((result.get("response") or {}).get("body"))
        if text is None:
            return line, f"the answer has no text to read as {adapter}"
        try:
            value = adapter.validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}"
                for error in exc.errors(include_url=False)[:3]
            )
            return line, f"the answer does not validate as {adapter}: {problems}"
        result["output"] = adapter.dump_python(value, mode="json")
        return json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode() + b"\n", None

    return check


def _error_line(custom_id: str, code: str, message: str, response: Any = None) -> bytes:
    line = {"custom_id": custom_id, "response": response, "error": {"code": code, "message": message}}
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def join_results(
    requests: JSONLSource,
    results: Sequence[str | os.PathLike[str]],
    output: BinaryIO,
    errors: BinaryIO,
    *,
    tally: ResultTally | None = None,
    check_output: Callable[[bytes], tuple[bytes, str | None]] | None = None,
) -> ResultTally:
    """Write each request's final result, in the order of ``requests``, to ``output`` or ``errors``.

    :param requests: the input file whose order the results take (its lines need a ``custom_id``).
    :param results: local result files (output and error files), earliest first: when a
        ``custom_id`` has lines in several (a retried request), the last file's line wins.
    :param output: where the lines of requests that succeeded go (a binary file, appended to).
    :param errors: where the lines of requests that failed go, and a ``no_result`` error line
        for each request no file answered.
    :param tally: counts to add to (default: a new :class:`ResultTally`).
    :param check_output: validates a successful line's answer, e.g. :func:`typed_output_checker`;
        a line it rejects goes to ``errors`` with code ``invalid_output``.
    :return: the tally of what was written.
    :raises ValueError: a line of ``requests`` or of ``results`` cannot be read; the message
        names the file and line.
    """
    tally = tally if tally is not None else ResultTally()
    index = _index(results)
    descriptors = [os.open(path, os.O_RDONLY) for path in results]
    try:
        with open_binary(requests) as source:
            for number, request in enumerate(source, start=1):
                if not request.strip():
                    continue
                try:
                    custom_id = request_custom_id(request)
                except ValueError as exc:
                    raise ValueError(f"{source_name(requests)}, line {number}: {exc}") from None
                found = index.pop(custom_id, None)
                if found is None:
                    tally.add_failure(custom_id, None, NO_RESULT, NO_RESULT_MESSAGE)
                    errors.write(_error_line(custom_id, NO_RESULT, NO_RESULT_MESSAGE))
                    continue
                line = os.pread(descriptors[found.file], found.length, found.offset)
                if not line.endswith(b"\n"):
                    line += b"\n"
                _write(found.head, line, output, errors, tally, check_output)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
    return tally


def _write(
    head: ResultHead,
    line: bytes,
    output: BinaryIO,
    errors: BinaryIO,
    tally: ResultTally,
    check_output: Callable[[bytes], tuple[bytes, str | None]] | None,
) -> None:
    if not head.succeeded:
        tally.add(head)
        errors.write(line)
        return
    if check_output is not None:
        line, problem = check_output(line)
        if problem is not None:
            response = json.loads(line).get("response")
            tally.add_failure(head.custom_id, head.status_code, INVALID_OUTPUT, problem)
            tally.add_tokens(head)
            errors.write(_error_line(head.custom_id, INVALID_OUTPUT, problem, response))
            return
    tally.add(head)
    output.write(line)
