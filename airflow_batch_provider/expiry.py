"""What the API keeps, and what a task says when something it needs is gone (HTTP 404).

The live API deletes a batch's output and error files when they expire (30 days after they are
made, or as the batch's ``output_expires_after`` says) and forgets batches some time after they
end. A download or a read that then answers 404 raises :class:`GoneError` here, with one message
that says what is gone, since when as far as the batch tells, and what to do; the operators turn
it into a failure that is not retried.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from airflow_batch_provider.exceptions import GoneError, OpenAIBatchAPIError
from airflow_batch_provider.models import Batch
from airflow_batch_provider.rules import DEFAULT_OUTPUT_RETENTION_SECONDS

__all__ = ["BatchFacts", "GoneError", "batch_gone", "file_gone", "reading_batch", "reading_file"]

_DEFAULT_DAYS = DEFAULT_OUTPUT_RETENTION_SECONDS // 86_400


def _utc(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class BatchFacts:
    """What a batch tells about its files' lifetime, when the whole batch is not at hand.

    :param id: the batch.
    :param ended_at: when it ended (epoch seconds), if known.
    :param expires_after_seconds: its ``output_expires_after.seconds``, if it set one.
    """

    id: str
    ended_at: int | None = None
    expires_after_seconds: int | None = None

    @classmethod
    def of(cls, batch: Batch) -> BatchFacts:
        """The facts of a batch as read from the API."""
        ended = batch.completed_at or batch.failed_at or batch.expired_at or batch.cancelled_at
        policy = batch.output_expires_after
        return cls(batch.id, ended, policy.seconds if policy is not None else None)


def _file_lifetime(facts: BatchFacts | None) -> str:
    """When a batch's result files expire, in words, from what the batch says."""
    seconds = facts.expires_after_seconds if facts is not None else None
    ended = facts.ended_at if facts is not None else None
    if seconds is not None:
        lifetime = f"{seconds:,} s after they were made (the batch's output_expires_after)"
        if ended is not None:
            lifetime += f", about {_utc(ended + seconds)}"
        return lifetime
    lifetime = f"{_DEFAULT_DAYS} days after they were made, by default (output_expires_after changes it)"
    if ended is not None:
        lifetime += f"; the batch ended at {_utc(ended)}"
    return lifetime


def file_gone(
    kind: str, file_id: str, batch: Batch | BatchFacts | None, cause: OpenAIBatchAPIError | None
) -> GoneError:
    """The error for a batch's file that answered 404.

    :param kind: what the file is: ``output``, ``error``, ``input`` or ``result``.
    :param file_id: the file.
    :param batch: the batch it belongs to (or what is known of it), when known: its times date
        the expiry.
    :param cause: the API's 404.
    """
    facts = BatchFacts.of(batch) if isinstance(batch, Batch) else batch
    of_batch = f" of batch {facts.id}" if facts is not None else ""
    if kind == "input":
        why = "the API deletes uploaded files when their expires_after says, or when someone deletes them"
        todo = "Upload the requests again"
    else:
        why = f"the API deletes a batch's output and error files when they expire: {_file_lifetime(facts)}"
        todo = "Submit the requests again to get new results"
    return GoneError(
        f"The {kind} file {file_id}{of_batch} is gone (HTTP 404): {why}. It cannot be downloaded again; "
        f"retrying will not help. {todo}.",
        cause,
    )


def batch_gone(batch_id: str, cause: OpenAIBatchAPIError | None) -> GoneError:
    """The error for a batch that answered 404."""
    return GoneError(
        f"Batch {batch_id} is not found (HTTP 404): it is past the API's retention (the API forgets a "
        "batch some time after it ends), or the id, or the base URL or key of the connection, is wrong. "
        "Waiting or retrying will not bring it back: check the id and connection, or submit the requests "
        "again.",
        cause,
    )


def _is_not_found(error: OpenAIBatchAPIError) -> bool:
    return error.status_code == 404


@contextlib.contextmanager
def reading_file(kind: str, file_id: str, batch: Batch | BatchFacts | None = None) -> Iterator[None]:
    """Turn a 404 while reading ``file_id`` into :func:`file_gone`'s :class:`GoneError`."""
    try:
        yield
    except OpenAIBatchAPIError as error:
        if _is_not_found(error):
            raise file_gone(kind, file_id, batch, error) from None
        raise


@contextlib.contextmanager
def reading_batch(batch_id: str) -> Iterator[None]:
    """Turn a 404 while reading ``batch_id`` into :func:`batch_gone`'s :class:`GoneError`."""
    try:
        yield
    except OpenAIBatchAPIError as error:
        if _is_not_found(error):
            raise batch_gone(batch_id, error) from None
        raise
