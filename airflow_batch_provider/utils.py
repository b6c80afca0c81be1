"""What the operators, the sensor and the triggers share: progress lines, cancelling, run identity, paths.

Everything here sits below those modules (it imports the hook, the client and the models,
never an operator, sensor or trigger), so they can all use it without importing each other.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_batch_provider.client import OpenAIBatchAPIError, is_transient
from airflow_batch_provider.models import Batch
from airflow_batch_provider.rules import METADATA_MAX_VALUE_LENGTH

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.types import Logger

    from airflow_batch_provider.hooks.batch import OpenAIBatchHook

__all__ = [
    "BATCH_XCOM_KEY",
    "ERROR_FILE_ID_XCOM_KEY",
    "REQUEST_COUNTS_XCOM_KEY",
    "RUN_IDENTITY_KEYS",
    "cancel_batch_on_kill",
    "format_progress",
    "is_transient",
    "local_path",
    "run_identity",
    "safe_name",
    "to_path",
]

#: XCom keys the sensor pushes beside its return value (``output_file_id``).
ERROR_FILE_ID_XCOM_KEY = "error_file_id"
REQUEST_COUNTS_XCOM_KEY = "request_counts"
BATCH_XCOM_KEY = "batch"

#: Metadata keys the operators set to the Airflow run identity of the batch.
RUN_IDENTITY_KEYS = ("airflow_dag_id", "airflow_run_id", "airflow_task_id", "airflow_map_index")


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_progress(batch: Batch, now: float | None = None) -> str:
    """One log line about where a batch stands, shared by the sensor's pokes and the trigger.

    ``batch_abc in_progress: 12,345/50,000 done (24.7%), 12 failed, 00:41:10 elapsed, ETA 02:05:00``

    "done" counts requests that finished either way; the elapsed time runs from the batch's
    creation; the ETA extrapolates the rate since the batch went ``in_progress``.

    :param batch: the batch as last read.
    :param now: the current time, epoch seconds (default: the clock).
    """
    now = time.time() if now is None else now
    counts = batch.request_counts
    elapsed = f"{_clock(now - batch.created_at)} elapsed"
    if counts is None or counts.total == 0:
        return f"{batch.id} {batch.status}: {elapsed}"
    done = counts.completed + counts.failed
    parts = [f"{batch.id} {batch.status}: {done:,}/{counts.total:,} done ({done / counts.total:.1%})"]
    parts.append(f"{counts.failed:,} failed")
    parts.append(elapsed)
    if not batch.status.is_terminal and batch.in_progress_at and 0 < done < counts.total:
        rate = done / max(now - batch.in_progress_at, 1e-9)
        parts.append(f"ETA {_clock((counts.total - done) / rate)}")
    return ", ".join(parts)


def cancel_batch_on_kill(hook: OpenAIBatchHook, batch_id: str, log: Logger) -> None:
    """Cancel the batch of a killed task; a failure (409: it ended meanwhile) is only logged."""
    try:
        batch = hook.cancel_batch(batch_id)
    except OpenAIBatchAPIError as error:
        log.warning("Could not cancel batch %s: %s", batch_id, error)
    else:
        log.info("Cancelled batch %s on kill: it is now %s.", batch_id, batch.status)


def _fit_value(value: str) -> str:
    """The value itself, or a digest of it when it is too long for a metadata value."""
    if len(value) <= METADATA_MAX_VALUE_LENGTH:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def run_identity(ti: Any) -> dict[str, str]:
    """The metadata that ties a batch to the task instance that created it (``RUN_IDENTITY_KEYS``).

    Values longer than a metadata value may be are replaced by their SHA-256.

    :param ti: the task instance (anything with ``dag_id``, ``run_id``, ``task_id``, ``map_index``).
    """
    values = (ti.dag_id, ti.run_id, ti.task_id, str(ti.map_index))
    return {key: _fit_value(value) for key, value in zip(RUN_IDENTITY_KEYS, values, strict=True)}


def to_path(location: str | os.PathLike[str] | ObjectStoragePath) -> Path | ObjectStoragePath:
    """A local ``Path``, or an ``ObjectStoragePath`` for a URI such as ``s3://bucket/key``."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(location, ObjectStoragePath):
        return location
    text = os.fspath(location)
    return ObjectStoragePath(text) if "://" in text else Path(text)


def local_path(path: Path | ObjectStoragePath) -> Path | None:
    """The path on this machine's file system, or None for remote object storage."""
    if isinstance(path, Path):
        return path
    return Path(path.path) if path.protocol in ("file", "local") else None


def safe_name(text: str) -> str:
    """``text`` with every character that is not safe in a file name replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)
