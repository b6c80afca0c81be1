"""The Batch API's rules in one place: endpoints, limits, statuses and the retry protocol.

The client, the validator (:mod:`airflow_batch_provider.jsonl`), the operators and the emulator
all read them from here, so that they agree. Nothing here imports Airflow or an HTTP library.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_batch_provider.models import BatchStatus

# -- endpoints and windows --

SUPPORTED_ENDPOINTS: tuple[str, ...] = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
)
"""The endpoints a batch may target."""
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
COMPLETION_WINDOWS: tuple[str, ...] = ("24h",)
"""The completion windows the API accepts."""

# -- input files --

MAX_REQUESTS = 50_000
"""Most requests (lines) one input file may hold."""
MAX_FILE_BYTES = 200 * 1024 * 1024
"""Largest input file, in bytes."""
MAX_EMBEDDING_INPUTS = 50_000
"""Most embedding inputs, summed over every request, of one ``/v1/embeddings`` batch."""
MAX_JSON_NESTING = 200
"""Most arrays and objects one input line may nest, one inside another (the line's own object
counts). It is the limit of the JSON parser pydantic uses, which both the validator and the
emulator read lines with, so that they accept and refuse the same lines; deeper is refused as
``invalid_json_line``."""


def embedding_inputs(value: object) -> int:
    """How many inputs one ``/v1/embeddings`` request's ``input`` counts for the batch's limit.

    A string or an array of token ids is one input; an array of strings (or of token arrays)
    is one per item.
    """
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return len(value)
    return 1


# -- request bodies --

REQUIRED_BODY_FIELDS: dict[str, tuple[str, ...]] = {
    "/v1/responses": ("model", "input"),
    "/v1/chat/completions": ("model", "messages"),
    "/v1/embeddings": ("model", "input"),
    "/v1/completions": ("model", "prompt"),
    "/v1/moderations": ("input",),
}
"""The body fields a request to each endpoint must carry, in the order the API reports them.

A batch with a line that lacks one fails at validation (``invalid_request``, "Model parameter is
required."); ``/v1/moderations`` picks its model itself."""
RESPONSE_INPUT_ALTERNATIVES: tuple[str, ...] = ("previous_response_id", "conversation")
"""A ``/v1/responses`` body naming one of these continues a conversation and may leave ``input`` out."""


def missing_body_field(endpoint: str, body: Mapping[str, Any]) -> str | None:
    """The first field of :data:`REQUIRED_BODY_FIELDS` that ``body`` lacks, or None.

    A field counts as missing when it is absent or null; ``model`` also when it is an empty
    string. An endpoint that is not supported requires nothing here.

    :param endpoint: the batch's endpoint, e.g. ``/v1/chat/completions``.
    :param body: the request's body.
    """
    for field in REQUIRED_BODY_FIELDS.get(endpoint, ()):
        value = body.get(field)
        if value is not None and not (field == "model" and value == ""):
            continue
        if field == "input" and endpoint == "/v1/responses" and _continues_conversation(body):
            continue
        return field
    return None


def _continues_conversation(body: Mapping[str, Any]) -> bool:
    return any(body.get(name) for name in RESPONSE_INPUT_ALTERNATIVES)


# -- metadata and retention --

METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_LENGTH = 64
METADATA_MAX_VALUE_LENGTH = 512
OUTPUT_EXPIRY_MIN_SECONDS = 60 * 60
"""Shortest ``output_expires_after.seconds`` the API accepts (one hour)."""
OUTPUT_EXPIRY_MAX_SECONDS = 30 * 24 * 60 * 60
"""Longest ``output_expires_after.seconds`` the API accepts (thirty days)."""
DEFAULT_OUTPUT_RETENTION_SECONDS = 30 * 24 * 60 * 60
"""How long output and error files are kept when the batch does not say."""

# -- statuses --

TERMINAL_STATUSES = frozenset(status for status in BatchStatus if status.is_terminal)
"""completed, failed, expired, cancelled: the batch will not change again."""
IN_PROGRESS_STATUSES = frozenset(status for status in BatchStatus if status.is_in_progress)
"""validating, in_progress, finalizing, cancelling."""
UNCANCELLABLE_STATUSES = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED})
"""Cancelling a batch in one of these answers 409 (a cancelled batch may be cancelled again)."""
RESULTLESS_STATUSES = frozenset(
    {BatchStatus.FAILED, BatchStatus.CANCELLING, BatchStatus.CANCELLED, BatchStatus.EXPIRED}
)
"""A batch in one of these will deliver no more results: a retried task submits a new one."""

# -- the retry protocol --


def is_retryable_status(status_code: int) -> bool:
    """408, 429 and every 5xx are worth another try; other errors are not."""
    return status_code in (408, 429) or status_code >= 500


def should_retry(status_code: int, headers: Mapping[str, str]) -> bool:
    """Whether an error answer is worth another try: ``x-should-retry`` wins over the status."""
    header = headers.get("x-should-retry")
    if header == "true":
        return True
    if header == "false":
        return False
    return is_retryable_status(status_code)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait before the next try, from ``retry-after-ms`` or else ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Returns None when neither
    header is present or parseable.

    :param headers: the answer's headers (a case-insensitive mapping).
    :param now: the current time for an HTTP date (default: the clock).
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# -- results of requests --

BATCH_EXPIRED = "batch_expired"
"""Error code of a request that did not run before the batch's completion window ended."""
BATCH_CANCELLED = "batch_cancelled"
"""Error code of a request that did not run because its batch was cancelled."""
NO_RESULT = "no_result"
"""Our code for a request of which no result line came back (it never ran)."""
_NOT_RETRYABLE_CODES = frozenset({"insufficient_quota", "invalid_api_key"})


def is_retryable_result(status_code: int | None, code: str | None) -> bool:
    """Whether a failed request of a batch may succeed in a new batch.

    Requests that never ran (expired, cancelled, no result) and answers of 408, 429 or 5xx
    may; a 4xx answer (a bad request, an unknown model) and an exhausted quota may not.

    :param status_code: the HTTP status of the request's answer, None when it got none.
    :param code: the failure's code (``batch_expired``, ``rate_limit_exceeded``, ...).
    """
    if code in _NOT_RETRYABLE_CODES:
        return False
    if code in (BATCH_EXPIRED, BATCH_CANCELLED, NO_RESULT):
        return True
    return status_code is not None and is_retryable_status(status_code)


# -- the emulator --

EMULATOR_BATCH_PAGE = "/batches/{batch_id}"
"""Path, below the emulator's root, of a batch's HTML page (the operators' extra link)."""
