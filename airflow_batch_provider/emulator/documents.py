"""The API objects the emulator makes, as the JSON documents it stores and answers with.

New batches and files are built through :mod:`airflow_batch_provider.models`, so their
shape is the one the client parses; they are stored as JSON and answered from there.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_batch_provider.emulator.ids import new_id
from airflow_batch_provider.models import (
    Batch,
    BatchStatus,
    BatchUsage,
    ExpiresAfter,
    FileObject,
    RequestCounts,
)

Document = dict[str, Any]
"""An API object as a JSON-ready dictionary."""


def now() -> int:
    """The current time as the API states it: whole seconds since the epoch."""
    return int(time.time())


def new_batch(
    *,
    endpoint: str,
    input_file_id: str,
    completion_window: str,
    created_at: int,
    expires_at: int,
    metadata: dict[str, str] | None,
    output_expires_after: ExpiresAfter | None,
) -> Document:
    """A batch just created: ``validating``, with a fresh id, zero counts and zero usage.

    :param endpoint: the endpoint every request of the batch targets.
    :param input_file_id: the file holding the requests.
    :param completion_window: the window the batch was created with (``"24h"``).
    :param created_at: when it was created (epoch seconds).
    :param expires_at: when its completion window ends (epoch seconds).
    :param metadata: the client's metadata, already checked; None when none was sent.
    :param output_expires_after: how long its output and error files are kept; None: the default.
    """
    batch = Batch(
        id=new_id("batch_"),
        endpoint=endpoint,
        input_file_id=input_file_id,
        completion_window=completion_window,
        status=BatchStatus.VALIDATING,
        created_at=created_at,
        expires_at=expires_at,
        request_counts=RequestCounts(),
        metadata=metadata,
        usage=BatchUsage(),
        output_expires_after=output_expires_after,
    )
    return batch.model_dump(mode="json")


def new_file(
    file_id: str,
    *,
    size: int,
    filename: str,
    purpose: str,
    created_at: int,
    expires_after_seconds: int | None = None,
) -> Document:
    """A stored, ``processed`` file.

    :param file_id: its id (the name its bytes are stored under).
    :param size: its length in bytes.
    :param filename: the client's name for it, or the name the emulator gave a result file.
    :param purpose: ``batch``, ``batch_output``, ...
    :param created_at: when it was stored (epoch seconds).
    :param expires_after_seconds: seconds after ``created_at`` it expires; None (the default):
        it never does.
    """
    file = FileObject(
        id=file_id,
        bytes=size,
        created_at=created_at,
        expires_at=None if expires_after_seconds is None else created_at + expires_after_seconds,
        filename=filename,
        purpose=purpose,
        status="processed",
    )
    return file.model_dump(mode="json")
