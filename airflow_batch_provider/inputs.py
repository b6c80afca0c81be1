"""Batch input as operators take it, made into JSONL files the API accepts: normalized, split, fingerprinted.

A DAG hands requests as dicts (``method`` and ``url`` may be left out), :class:`BatchRequest`
objects or plain prompt strings; or a JSONL file. :func:`write_requests_file` writes them as
one JSONL file in the API's shape; :func:`split_file` cuts a file into parts within the API's
limits; :func:`fingerprint` names everything that decides a batch's results, so that a retried
task reattaches only to a batch made from the same input.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec
from pydantic import BaseModel

from airflow_batch_provider.exceptions import BatchInputError
from airflow_batch_provider.jsonl import validate_file
from airflow_batch_provider.jsonl.validation import parse_line
from airflow_batch_provider.models import BatchError, BatchRequest
from airflow_batch_provider.rules import (
    EMBEDDINGS_ENDPOINT,
    MAX_EMBEDDING_INPUTS,
    MAX_FILE_BYTES,
    MAX_REQUESTS,
    SUPPORTED_ENDPOINTS,
    embedding_inputs,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

DEFAULT_ENDPOINT = "/v1/chat/completions"
_COPY_CHUNK = 1024 * 1024

RequestItem = Mapping[str, Any] | BatchRequest | str
"""One request as a DAG may give it: a dict, a :class:`BatchRequest`, or a prompt string."""


def _prompt_body(endpoint: str, model: str | None, prompt: str) -> dict[str, Any]:
    """The request body asking ``endpoint`` about one prompt string."""
    body: dict[str, Any] = {} if model is None else {"model": model}
    if endpoint == "/v1/chat/completions":
        body["messages"] = [{"role": "user", "content": prompt}]
    elif endpoint == "/v1/completions":
        body["prompt"] = prompt
    else:  # responses, embeddings, moderations
        body["input"] = prompt
    return body


def normalize(
    items: Iterable[RequestItem], endpoint: str, model: str | None = None
) -> Iterator[dict[str, Any]]:
    """The requests in the API's input-line shape (see :func:`normalize_one`).

    :param items: the requests, consumed once.
    :raises TypeError: an item is none of a dict, a ``BatchRequest`` or a string.
    """
    for position, item in enumerate(items):
        yield normalize_one(position, item, endpoint, model)


def normalize_one(
    position: int, item: RequestItem, endpoint: str, model: str | None = None
) -> dict[str, Any]:
    """One request in the API's input-line shape.

    A dict may leave out ``method`` (``POST``) and ``url`` (``endpoint``); a prompt string
    becomes a request of ``model`` with the custom id ``request-<n>`` (its 0-based position).

    :param position: the request's place among the requests, from 0.
    :param item: the request as given.
    :param endpoint: the batch's endpoint.
    :param model: the model of prompt strings; None leaves ``model`` out (the validator then
        names each such request).
    :raises TypeError: ``item`` is none of a dict, a ``BatchRequest`` or a string.
    """
    if isinstance(item, str):
        return {
            "custom_id": f"request-{position}",
            "method": "POST",
            "url": endpoint,
            "body": _prompt_body(endpoint, model, item),
        }
    if isinstance(item, BaseModel):
        return item.model_dump(mode="json")
    if isinstance(item, Mapping):
        request = dict(item)
        request.setdefault("method", "POST")
        request.setdefault("url", endpoint)
        return request
    raise TypeError(
        f"Request {position + 1} is {type(item).__name__}: give dicts, BatchRequest objects or strings."
    )


def infer_endpoint(first: RequestItem | None) -> str:
    """The endpoint of a batch whose endpoint was not given: the first request's ``url``, else chat."""
    if isinstance(first, BatchRequest):
        url: object = first.url
    elif isinstance(first, Mapping):
        url = first.get("url")
    else:
        url = None
    return url if isinstance(url, str) and url in SUPPORTED_ENDPOINTS else DEFAULT_ENDPOINT


def first_url(path: Path) -> str | None:
    """The ``url`` of the first request of a JSONL file, if the line is readable."""
    with path.open("rb") as file:
        for line in file:
            if line.strip():
                try:
                    request = parse_line(line)
                except ValueError:
                    return None
                url = request.get("url") if isinstance(request, dict) else None
                return url if isinstance(url, str) else None
    return None


def write_requests_file(
    items: Iterable[RequestItem], destination: Path, endpoint: str, model: str | None
) -> int:
    """Write the requests, normalized, as a JSONL input file; return how many were written.

    :raises BatchInputError: requests that are of no accepted type, or cannot be written as
        JSON (a value of no JSON type, NaN or an infinity, half a surrogate pair, nesting
        deeper than Python's recursion allows), each named by its place as a line.
    """
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    problems: list[BatchError] = []
    count = 0
    with destination.open("wb") as file:
        for count, item in enumerate(items, start=1):
            try:
                request = normalize_one(count - 1, item, endpoint, model)
            except TypeError as exc:
                problems.append(BatchError(code="invalid_type", message=str(exc), line=count))
                continue
            try:
                line = encode(request).encode("utf-8")
            except (TypeError, ValueError, RecursionError) as exc:
                message = f"This request cannot be written as JSON: {_unwritable(exc)}"
                problems.append(BatchError(code="invalid_json_line", message=message, line=count))
                continue
            file.write(line)
            file.write(b"\n")
    if problems:
        raise BatchInputError(problems, source="the requests")
    return count


def check_requests(items: Any) -> None:
    """Raise :class:`BatchInputError` for the requests of a list that cannot be written as JSON.

    Meant for the requests as a task's templates render them, before Airflow stores the rendered
    fields (which fails, and is retried, on NaN, infinities and lone surrogates). Anything but a
    list or tuple is left to :func:`prepare_input`.
    """
    if isinstance(items, (list, tuple)):
        write_requests_file(items, Path(os.devnull), DEFAULT_ENDPOINT, None)


def _unwritable(exc: BaseException) -> str:
    """Why a request could not be written as JSON, in words."""
    if isinstance(exc, RecursionError):
        return "it is nested too deeply."
    if isinstance(exc, UnicodeEncodeError):
        character = exc.object[exc.start : exc.end]
        return f"it holds {character!r}, half of a surrogate pair, which is no character on its own."
    text = str(exc)
    if "Out of range float" in text:
        return f"it holds NaN or an infinity, which JSON cannot represent ({text})."
    return text


def copy_file(source: BinaryIO, destination: Path) -> None:
    """Copy an open binary file (local or remote) to a local path, in chunks."""
    with destination.open("wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            out.write(chunk)


@dataclass(frozen=True)
class Limits:
    """How much one batch's input file may hold; the API's limits unless told smaller.

    :param requests: most requests (lines).
    :param bytes: most bytes.
    :param embedding_inputs: most embedding inputs in all (``/v1/embeddings`` only).
    """

    requests: int = MAX_REQUESTS
    bytes: int = MAX_FILE_BYTES
    embedding_inputs: int = MAX_EMBEDDING_INPUTS


@dataclass(frozen=True)
class Part:
    """One input file of a batch, cut from a larger input.

    :param index: its place among the parts, from 0.
    :param path: the local JSONL file.
    :param requests: how many requests it holds.
    :param digest: the SHA-256 of its bytes.
    """

    index: int
    path: Path
    requests: int
    digest: str


class _InputOnly(msgspec.Struct):
    input: Any = None


class _BodyOnly(msgspec.Struct):
    body: _InputOnly | None = None


_BODY_INPUT = msgspec.json.Decoder(_BodyOnly)


def split_file(source: Path, directory: Path, endpoint: str, limits: Limits = Limits()) -> list[Part]:
    """Cut a valid JSONL input file into parts within ``limits``, in order, streaming.

    :param source: the whole input (validated; every line a request).
    :param directory: where the parts go, as ``part-00000.jsonl``, ...
    :param endpoint: the batch's endpoint (``/v1/embeddings`` also counts inputs).
    :param limits: what one part may hold (default: the API's limits).
    """
    count_inputs = endpoint == EMBEDDINGS_ENDPOINT
    parts: list[Part] = []
    out: BinaryIO | None = None
    digest = hashlib.sha256()
    requests = size = inputs = 0

    def close() -> None:
        if out is not None:
            out.close()
            parts.append(Part(len(parts), Path(out.name), requests, digest.hexdigest()))

    with source.open("rb") as file:
        for line in file:
            if not line.strip():
                continue
            line_inputs = (
                embedding_inputs((_BODY_INPUT.decode(line).body or _InputOnly()).input) if count_inputs else 0
            )
            full = (
                requests + 1 > limits.requests
                or size + len(line) > limits.bytes
                or inputs + line_inputs > limits.embedding_inputs
            )
            if out is None or (full and requests):
                close()
                out = (directory / f"part-{len(parts):05d}.jsonl").open("wb")
                digest, requests, size, inputs = hashlib.sha256(), 0, 0, 0
            out.write(line)
            digest.update(line)
            requests, size, inputs = requests + 1, size + len(line), inputs + line_inputs
    close()
    return parts


def fingerprint(content_digest: str, **settings: Any) -> str:
    """``sha256:<hex>`` of an input's content digest and every setting that decides its results.

    :param content_digest: the SHA-256 (hex) of the input file's bytes, or an input file id.
    :param settings: e.g. endpoint, conn_id, completion_window, output_expires_after.
    """
    canonical = json.dumps([content_digest, settings], sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def prepare_input(
    requests: Iterable[RequestItem] | None,
    input_path: str | os.PathLike[str] | ObjectStoragePath | None,
    directory: Path,
    endpoint: str | None,
    model: str | None = None,
) -> tuple[Path, str]:
    """The input as a local JSONL file in the API's shape, and the batch's endpoint.

    Requests are normalized into ``directory``; a remote file (an ``ObjectStoragePath`` or URI)
    is copied there; a local file is used where it is.

    :param endpoint: the batch's endpoint; None infers it from the first request.
    :param model: the model of requests given as prompt strings.
    :raises TypeError: the requests are a string.
    :raises BatchInputError: requests that cannot be written as JSON, each with its line.
    :raises FileNotFoundError: ``input_path`` does not exist.
    """
    from airflow_batch_provider.utils import local_path, to_path

    if input_path is not None:
        path = to_path(input_path)
        local = local_path(path)
        if local is not None and not local.is_file():
            raise FileNotFoundError(
                f"The input file {local} does not exist (input_path={str(input_path)!r})."
            )
        if local is None:
            local = directory / "input.jsonl"
            with path.open("rb") as source:
                copy_file(source, local)
        return local, endpoint or infer_endpoint({"url": first_url(local)})
    if isinstance(requests, (str, bytes)):
        raise TypeError(
            "requests rendered to a string, not a list of requests; pass the upstream task's output "
            "(an XComArg) or set render_template_as_native_obj=True."
        )
    items = list(requests or [])
    endpoint = endpoint or infer_endpoint(items[0] if items else None)
    local = directory / "requests.jsonl"
    write_requests_file(items, local, endpoint, model)
    return local, endpoint


def validate_input(path: Path, endpoint: str, label: str, **limits: Any) -> int:
    """Check an input file against the Batch API's rules; return how many requests it holds.

    :param label: how the error names the input, e.g. ``requests of task 'submit'``.
    :param limits: ``max_requests``, ``max_bytes``, ``max_embedding_inputs`` (default: the API's).
    :raises BatchInputError: every problem found, each with its line.
    """
    try:
        return validate_file(path, endpoint, **limits)
    except BatchInputError as error:
        raise BatchInputError(error.errors, source=label) from None
