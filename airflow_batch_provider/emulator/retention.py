"""How long the emulator keeps files and finished batches, as the live API limits what it keeps.

- A file is gone once its ``expires_at`` has passed: it answers 404 and leaves the lists. A
  batch's output and error files expire ``output_expires_after.seconds`` after they are made when
  the batch set it, else after the emulator's ``retention_seconds`` (the live API's 30 days);
  an uploaded file when its ``expires_after`` says (never, when it says nothing).
- A finished batch is gone ``batch_retention_seconds`` after it ended, when that is set (the live
  API forgets batches past its retention; how long it keeps them is not documented).
"""

from __future__ import annotations

from airflow_batch_provider.emulator.documents import Document
from airflow_batch_provider.models import BatchStatus

_END_STAMPS = tuple(f"{status.value}_at" for status in BatchStatus if status.is_terminal)
"""``failed_at``, ``completed_at``, ``expired_at``, ``cancelled_at``."""

ENDED_AT_SQL = "COALESCE({})".format(", ".join(f"json_extract(doc, '$.{stamp}')" for stamp in _END_STAMPS))
"""SQLite expression of a stored batch's end (epoch seconds), NULL while it runs."""
FILE_KEPT_SQL = "(json_extract(doc, '$.expires_at') IS NULL OR json_extract(doc, '$.expires_at') > ?)"
"""SQLite condition, with the current time as its parameter, of a stored file not yet expired."""


def file_expired(doc: Document, now: float) -> bool:
    """Whether the file ``doc`` has expired at ``now`` (epoch seconds)."""
    expires_at = doc.get("expires_at")
    return expires_at is not None and now >= expires_at


def batch_ended_at(doc: Document) -> int | None:
    """When the batch ``doc`` reached a terminal status (epoch seconds), or None while it runs."""
    for stamp in _END_STAMPS:
        if doc.get(stamp) is not None:
            return int(doc[stamp])
    return None


def batch_forgotten(doc: Document, retention_seconds: float | None, now: float) -> bool:
    """Whether the finished batch ``doc`` is past ``retention_seconds`` (None: kept) at ``now``."""
    if retention_seconds is None:
        return False
    ended = batch_ended_at(doc)
    return ended is not None and now >= ended + retention_seconds
