"""Pydantic models of the OpenAI Batch and Files API objects.

The batch models mirror the project's seed schema field for field and add what the
live API has gained since (``model``, ``usage``, ``output_expires_after``).

Forward compatibility: every model keeps fields it does not know (``extra="allow"``),
and a status the API may add later parses into a ``BatchStatus`` pseudo-member that is
neither terminal nor in progress, so a sensor keeps waiting instead of crashing.
Dump with ``model_dump(mode="json")`` for XCom.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _APIModel(BaseModel):
    """Base of every API object: unknown fields are kept, not dropped."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class BatchStatus(str, Enum):
    """The status of a batch.

    ``BatchStatus("some_future_status")`` does not raise: it returns a pseudo-member
    with that value, which is neither terminal nor in progress.
    """

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @classmethod
    def _missing_(cls, value: object) -> BatchStatus | None:
        if not isinstance(value, str):
            return None
        pseudo = str.__new__(cls, value)
        pseudo._name_ = value.upper()
        pseudo._value_ = value
        return pseudo

    @property
    def is_known(self) -> bool:
        """True for the eight statuses the API documents."""
        return self._name_ in type(self).__members__

    @property
    def is_terminal(self) -> bool:
        """True when the batch will not change status again."""
        return self in _TERMINAL

    @property
    def is_in_progress(self) -> bool:
        """True while the batch is still moving towards a terminal status."""
        return self in _IN_PROGRESS

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED})
_IN_PROGRESS = frozenset(
    {BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, BatchStatus.CANCELLING}
)


class RequestCounts(_APIModel):
    """How many requests of a batch there are, and how many finished or failed."""

    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(_APIModel):
    """One problem with a batch, usually one line of its input file."""

    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None

    def describe(self) -> str:
        """One human-readable line: ``line 3, custom_id: missing_required_parameter: ...``."""
        where = ", ".join(
            part for part in (f"line {self.line}" if self.line else "", self.param or "") if part
        )
        text = f"{self.code}: {self.message}" if self.code else (self.message or "unknown error")
        return f"{where}: {text}" if where else text


class BatchErrors(_APIModel):
    """The errors of a batch that failed."""

    object: str | None = "list"
    data: list[BatchError] = Field(default_factory=list)


class InputTokensDetails(_APIModel):
    cached_tokens: int = 0


class OutputTokensDetails(_APIModel):
    reasoning_tokens: int = 0


class BatchUsage(_APIModel):
    """Tokens a batch used, summed over its requests."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class ExpiresAfter(_APIModel):
    """An expiration policy: ``seconds`` after ``anchor`` (always ``created_at``)."""

    anchor: str = "created_at"
    seconds: int


def _empty_to_none(value: Any) -> Any:
    # Some OpenAI-compatible servers send "" for a file that does not exist.
    return None if value == "" else value


class Batch(_APIModel):
    """A batch job (the seed's ``BatchObject``)."""

    id: str
    object: str = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts | None = None
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: BatchUsage | None = None
    output_expires_after: ExpiresAfter | None = None

    _normalize_file_ids = field_validator("output_file_id", "error_file_id", mode="before")(_empty_to_none)


class BatchList(_APIModel):
    """One page of ``GET /batches`` (the seed's ``BatchListResponse``)."""

    object: str = "list"
    data: list[Batch] = Field(default_factory=list)
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileObject(_APIModel):
    """A file stored by the Files API."""

    id: str
    object: str = "file"
    bytes: int | None = None
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: str | None = None
    status_details: str | None = None


class FileList(_APIModel):
    """One page of ``GET /files``."""

    object: str = "list"
    data: list[FileObject] = Field(default_factory=list)
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(_APIModel):
    """The answer to ``DELETE /files/{id}``."""

    id: str
    object: str = "file"
    deleted: bool


class BatchRequest(_APIModel):
    """One line of a batch input file."""

    custom_id: str
    method: Literal["POST"] = "POST"
    url: str
    body: dict[str, Any]


class BatchResponse(_APIModel):
    """The HTTP answer to one request of a batch."""

    status_code: int
    request_id: str | None = None
    body: Any = None


class BatchResultError(_APIModel):
    """Why a request of a batch got no response (e.g. ``batch_expired``)."""

    code: str | None = None
    message: str | None = None


class BatchResult(_APIModel):
    """One line of a batch output or error file."""

    id: str | None = None
    custom_id: str
    response: BatchResponse | None = None
    error: BatchResultError | None = None

    @property
    def succeeded(self) -> bool:
        """True when the request got a 2xx response and no error."""
        return self.error is None and self.response is not None and 200 <= self.response.status_code < 300
