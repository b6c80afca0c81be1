"""What the sync and async transports share about requests and answers: paths, bodies, parsing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from airflow_batch_provider.client.errors import OpenAIBatchAPIError, TransientError
from airflow_batch_provider.client.settings import ClientSettings
from airflow_batch_provider.models import ExpiresAfter

ModelT = TypeVar("ModelT", bound=BaseModel)


class Answer(Protocol):
    """What ``requests.Response`` and ``httpx.Response`` have in common."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


def segment(identifier: str) -> str:
    """An id as one URL path segment: a ``/`` or ``?`` in it cannot reach another endpoint.

    :raises ValueError: the id is empty, ``.`` or ``..``, which no object of the API has and
        which would name the path around it (HTTP libraries resolve dot segments away, even
        percent-encoded).
    """
    if identifier in ("", ".", ".."):
        raise ValueError(f"{identifier!r} is not an id: it would name the path around it, not an object.")
    return quote(identifier, safe="")


def create_batch_body(
    input_file_id: str,
    endpoint: str,
    completion_window: str,
    metadata: Mapping[str, str] | None,
    output_expires_after: int | Mapping[str, Any] | ExpiresAfter | None,
) -> dict[str, Any]:
    """The JSON body of ``POST /batches``; see :meth:`BatchClient.create_batch`."""
    body: dict[str, Any] = {
        "input_file_id": input_file_id,
        "endpoint": endpoint,
        "completion_window": completion_window,
    }
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if output_expires_after is not None:
        if isinstance(output_expires_after, int):
            output_expires_after = ExpiresAfter(seconds=output_expires_after)
        elif not isinstance(output_expires_after, ExpiresAfter):
            output_expires_after = ExpiresAfter.model_validate(output_expires_after)
        body["output_expires_after"] = output_expires_after.model_dump(mode="json")
    return body


def is_close_delimited(headers: Mapping[str, str]) -> bool:
    """Whether an answer's body ends only where the connection closes: no length, not chunked.

    Such a body cut short looks complete; only its content can tell.
    """
    return "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()


def parse_answer(model: type[ModelT], answer: Answer, action: str, settings: ClientSettings) -> ModelT:
    """Parse a successful answer; one that is not a ``model`` is an error waiting will not fix.

    Except for JSON cut short in a body framed by the connection's close: that is a cut answer,
    worth another try (:class:`TransientError`).
    """
    try:
        return model.model_validate_json(answer.content)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid" and is_close_delimited(answer.headers):
            raise TransientError(
                OpenAIBatchAPIError(
                    f"{action}: the answer from {settings.base_url} ended before its JSON did "
                    f"({first['msg']}); the connection was probably cut. Retry later."
                )
            ) from None
        raise OpenAIBatchAPIError(
            f"{action}: {settings.base_url} answered with something that is not a {model.__name__}: "
            f"{first['msg']} at {'.'.join(map(str, first['loc'])) or 'top level'}. "
            f"Check that the Base URL of {settings.name} points at an OpenAI-compatible API.",
            # The answer's own (2xx) status: for the retry rules, an error waiting will not fix.
            status_code=answer.status_code,
            request_id=answer.headers.get("x-request-id"),
        ) from None
