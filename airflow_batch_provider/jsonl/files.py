"""Reading and writing the JSONL files of the Batch API, streaming: input files of requests, result files."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, TypeVar

from pydantic import BaseModel, ValidationError

from airflow_batch_provider.models import BatchRequest, BatchResult

_Line = TypeVar("_Line", BatchRequest, BatchResult)

JSONLSource = str | os.PathLike[str] | BinaryIO
"""A local path, a path object with ``open()`` (``UPath``, ``ObjectStoragePath``: remote files
too), or a file object opened in binary mode (left open after use)."""


def source_name(source: JSONLSource) -> str:
    """How messages name ``source``: its path or URL, or the file object's name."""
    if isinstance(source, str | os.PathLike) or hasattr(source, "open"):
        return str(source)  # a remote path (UPath) shows its URL
    return str(getattr(source, "name", "batch input file"))


@contextlib.contextmanager
def open_binary(source: JSONLSource, mode: str = "rb") -> Iterator[BinaryIO]:
    """Open a path (local or remote), or pass a binary file object through (the caller closes it)."""
    if isinstance(source, io.TextIOBase):
        raise TypeError(f"{source_name(source)} is open in text mode; open it in binary mode ('{mode}').")
    if hasattr(source, "open"):  # pathlib.Path, UPath, ObjectStoragePath: remote paths open too
        with source.open(mode) as file:
            yield file
    elif isinstance(source, str | os.PathLike):
        with open(source, mode) as file:
            yield file  # type: ignore[misc]
    else:
        yield source


def write_requests(
    requests: Iterable[Mapping[str, Any] | BatchRequest],
    destination: JSONLSource,
) -> int:
    """Write requests to a JSONL input file, one compact JSON object per line, streaming.

    The requests are not validated here; run :func:`validate_file` on the result.

    :param requests: dicts or :class:`BatchRequest` objects; any iterable, consumed once.
    :param destination: a path (created or overwritten) or a binary file object (left open).
    :return: how many requests were written.
    :raises TypeError: a request is not a mapping, or holds a value of no JSON type.
    :raises ValueError: a request holds NaN or an infinity, which JSON cannot represent, or half
        a surrogate pair, or is nested deeper than Python's recursion allows.
    """
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    count = 0
    with open_binary(destination, "wb") as file:
        for count, request in enumerate(requests, start=1):
            if isinstance(request, BaseModel):
                request = request.model_dump(mode="json")
            elif not isinstance(request, Mapping):
                raise TypeError(f"Request {count} is {type(request).__name__}, not a dict or BatchRequest.")
            try:
                line = encode(request if isinstance(request, dict) else dict(request)).encode("utf-8")
            except TypeError as exc:  # a value of no JSON type
                raise TypeError(f"Request {count} cannot be written as JSON: {exc}") from exc
            except (ValueError, RecursionError) as exc:  # NaN, half a surrogate pair, too deep
                raise ValueError(f"Request {count} cannot be written as JSON: {exc}") from exc
            file.write(line)
            file.write(b"\n")
    return count


def _iter_lines(source: JSONLSource, model: type[_Line]) -> Iterator[_Line]:
    with open_binary(source) as file:
        for line, raw in enumerate(file, start=1):
            if not raw.strip():
                continue  # e.g. a trailing blank line; it holds nothing to read
            try:
                yield model.model_validate_json(raw)
            except ValidationError as exc:
                reasons = "; ".join(
                    f"{'.'.join(map(str, error['loc'])) or 'line'}: {error['msg']}"
                    for error in exc.errors(include_url=False)
                )
                raise ValueError(
                    f"{source_name(source)}, line {line}: not a valid {model.__name__}: {reasons}"
                ) from None


def read_results(source: JSONLSource) -> Iterator[BatchResult]:
    """Read a batch output or error file, one :class:`BatchResult` per line, streaming.

    Blank lines are skipped.

    :param source: the file: a path, or a binary file object (left open).
    :raises ValueError: a line is not a result line; the message names the line and field.
    """
    return _iter_lines(source, BatchResult)


def iter_requests(source: JSONLSource) -> Iterator[BatchRequest]:
    """Read a batch input file, one :class:`BatchRequest` per line, streaming.

    Meant for a file :func:`validate_file` accepted; blank lines are skipped.

    :param source: the file: a path, or a binary file object (left open).
    :raises ValueError: a line is not a request; the message names the line and field.
    """
    return _iter_lines(source, BatchRequest)
