"""What the operators, the sensor and the triggers share: progress lines, cancelling, run identity, paths.

Everything here sits below those modules (it imports the hook, the client and the models,
never an operator, sensor or trigger), so they can all use it without importing each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_batch_provider.client import OpenAIBatchAPIError, is_transient
from airflow_batch_provider.client.paths import safe_name
from airflow_batch_provider.exceptions import BatchInputError, GoneError
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
    "elapsed_and_eta",
    "fail_on_bad_input",
    "fail_when_gone",
    "format_progress",
    "is_transient",
    "local_path",
    "run_identity",
    "safe_name",
    "seconds",
    "to_path",
    "too_many_failures",
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


def elapsed_and_eta(batch: Batch, now: float | None = None) -> tuple[float, float | None]:
    """Seconds the batch has run since it was created, and the seconds it still needs (None when unknown).

    The clock stops when the batch ends (``completed_at``, ``failed_at``, ``expired_at`` or
    ``cancelled_at``, when the API says). The ETA extrapolates the rate since the batch went
    ``in_progress``; it is known only for an unfinished batch that has finished some, not all,
    of its requests.

    :param batch: the batch as last read.
    :param now: the current time, epoch seconds (default: the clock).
    """
    now = time.time() if now is None else now
    if batch.status.is_terminal:
        ended = (batch.completed_at, batch.failed_at, batch.expired_at, batch.cancelled_at)
        now = next((stamp for stamp in ended if stamp is not None), now)
    elapsed = max(0.0, now - batch.created_at)
    counts = batch.request_counts
    if counts is None or batch.status.is_terminal or not batch.in_progress_at:
        return elapsed, None
    done = counts.completed + counts.failed
    if not 0 < done < counts.total:
        return elapsed, None
    rate = done / max(now - batch.in_progress_at, 1e-9)
    return elapsed, (counts.total - done) / rate


def format_progress(batch: Batch, now: float | None = None) -> str:
    """One log line about where a batch stands, shared by the sensor's pokes and the trigger.

    ``batch_abc in_progress: 12,345/50,000 done (24.7%), 12 failed, 00:41:10 elapsed, ETA 02:05:00``

    "done" counts requests that finished either way; the elapsed time runs from the batch's
    creation; the ETA extrapolates the rate since the batch went ``in_progress``.

    :param batch: the batch as last read.
    :param now: the current time, epoch seconds (default: the clock).
    """
    elapsed_seconds, eta_seconds = elapsed_and_eta(batch, now)
    counts = batch.request_counts
    elapsed = f"{_clock(elapsed_seconds)} elapsed"
    if counts is None or counts.total == 0:
        return f"{batch.id} {batch.status}: {elapsed}"
    done = counts.completed + counts.failed
    parts = [f"{batch.id} {batch.status}: {done:,}/{counts.total:,} done ({done / counts.total:.1%})"]
    parts.append(f"{counts.failed:,} failed")
    parts.append(elapsed)
    if eta_seconds is not None:
        parts.append(f"ETA {_clock(eta_seconds)}")
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


def too_many_failures(total: int, failed: int, failure_threshold: float | None) -> bool:
    """Whether ``failed`` of ``total`` requests is more than a task accepts.

    :param failure_threshold: None fails only when every request failed; 0.0 fails on any
        failure; 0.05 when more than 5% failed; 1.0 never fails for failed requests.
    """
    if failed <= 0 or total <= 0:
        return False
    if failure_threshold is None:
        return failed >= total
    return failed / total > failure_threshold


def check_failure_threshold(failure_threshold: float | None) -> float | None:
    """``failure_threshold`` if it is None or a fraction from 0 to 1; else a ValueError saying so."""
    if failure_threshold is not None and not 0.0 <= failure_threshold <= 1.0:
        raise ValueError(f"failure_threshold must be None or between 0.0 and 1.0, not {failure_threshold!r}.")
    return failure_threshold


def task_directory(ti: Any, root: str) -> Path:
    """``<temp dir>/<root>/<dag_id>/<run_id>/<task_id>[-<map_index>]``: a directory of one task instance."""
    map_index = ti.map_index if ti.map_index is not None else -1
    task = ti.task_id if map_index < 0 else f"{ti.task_id}-{map_index}"
    return Path(tempfile.gettempdir(), root, safe_name(ti.dag_id), safe_name(ti.run_id), safe_name(task))


def default_destination(ti: Any) -> Path:
    """Where a task instance's results go unless told: ``task_directory(ti, "airflow-batch-results")``."""
    return task_directory(ti, "airflow-batch-results")


def describe_failures(hook: OpenAIBatchHook, error_file_id: str) -> str:
    """The commonest failure reasons in a batch's error file, in words; empty if it cannot be read."""
    from airflow_batch_provider.jsonl import tally_results

    with tempfile.TemporaryDirectory(prefix="openai-batch-") as scratch:
        try:
            path = hook.download_file(error_file_id, Path(scratch) / "errors.jsonl")
            return tally_results(path).most_common_errors()
        except (OpenAIBatchAPIError, ValueError, OSError) as error:
            return f"(the error file could not be read: {error})"


def seconds(value: float | timedelta | None) -> int | None:
    """Whole seconds of a duration given as a number or a timedelta (None stays None)."""
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    return None if value is None else int(value)


@contextlib.contextmanager
def fail_on_bad_input(task_id: str) -> Iterator[None]:
    """Turn errors that a retry cannot fix into ``AirflowFailException`` (no retries, one clear message).

    Bad input (:class:`BatchInputError`, a request that is no JSON: ``TypeError``/``ValueError``),
    an input file that does not exist (``FileNotFoundError``), and an API refusal of the request
    itself (4xx other than 408, 409, 429) fail the task at once; everything else passes through
    for Airflow's retries.
    """
    from airflow.providers.common.compat.sdk import AirflowFailException

    try:
        yield
    except (BatchInputError, TypeError, ValueError, FileNotFoundError) as error:
        raise AirflowFailException(f"Task {task_id!r}: {error}") from None
    except OpenAIBatchAPIError as error:
        status = error.status_code
        if status is not None and 400 <= status < 500 and status != 409 and not is_transient(error):
            raise AirflowFailException(f"Task {task_id!r}: {error}") from None
        raise


@contextlib.contextmanager
def fail_when_gone(task_id: str) -> Iterator[None]:
    """Turn :class:`~airflow_batch_provider.exceptions.GoneError` (a result file that expired, a batch
    past the API's retention) into ``AirflowFailException``: no retry can bring it back."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    try:
        yield
    except GoneError as error:
        raise AirflowFailException(f"Task {task_id!r}: {error}") from None
