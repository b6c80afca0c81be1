"""What the pages show of one batch: plain values and relative paths, computed once, rendered escaped."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from airflow_batch_provider.client import ClientSettings
from airflow_batch_provider.client.protocol import segment
from airflow_batch_provider.models import Batch, BatchStatus
from airflow_batch_provider.outputs import Prices, estimate_cost
from airflow_batch_provider.submission import SLOT_KEY
from airflow_batch_provider.utils import RUN_IDENTITY_KEYS, elapsed_and_eta

DIGEST_PREFIX = "sha256:"
"""How a run identity value too long for metadata starts (it is a digest, not the value)."""
FILE_KINDS = ("input", "output", "error")


@dataclass(frozen=True)
class RunIdentity:
    """The task instance that created a batch, as its metadata names it."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    part: str | None = None

    @classmethod
    def of(cls, batch: Batch) -> RunIdentity | None:
        """The batch's run identity, or None when its metadata names no DAG and task."""
        metadata = batch.metadata or {}
        dag_id, run_id, task_id, map_index = (metadata.get(key, "") for key in RUN_IDENTITY_KEYS)
        if not (dag_id and run_id and task_id):
            return None
        try:
            index = int(map_index)
        except ValueError:
            index = -1
        return cls(dag_id, run_id, task_id, index, metadata.get(SLOT_KEY) or None)

    @property
    def linkable(self) -> bool:
        """False when an id is a digest of one too long for metadata: no page can be linked."""
        return not any(value.startswith(DIGEST_PREFIX) for value in (self.dag_id, self.run_id, self.task_id))

    @property
    def dag_run_path(self) -> str:
        """The DAG run's page, relative to the Airflow UI's root."""
        return f"dags/{segment(self.dag_id)}/runs/{segment(self.run_id)}"

    @property
    def task_instance_path(self) -> str:
        """The task instance's page, relative to the Airflow UI's root."""
        path = f"{self.dag_run_path}/tasks/{segment(self.task_id)}"
        return f"{path}/mapped/{self.map_index}" if self.map_index >= 0 else path


def external_url(url: str | None) -> str | None:
    """``url`` if it is an http(s) URL, else None: a connection's template must not make a
    ``javascript:`` link."""
    if not url:
        return None
    return url if urlsplit(url).scheme.lower() in ("http", "https") else None


@dataclass(frozen=True)
class BatchRow:
    """One batch as the pages show it."""

    conn_id: str
    batch: Batch
    identity: RunIdentity | None
    total: int
    completed: int
    failed: int
    percent: float
    elapsed_seconds: float
    eta_seconds: float | None
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cost: float | None
    page_url: str | None
    files: tuple[tuple[str, str], ...]
    can_cancel: bool

    @property
    def status(self) -> str:
        return self.batch.status.value

    @property
    def status_class(self) -> str:
        """A CSS class from a fixed set: the status if the API documents it, else ``unknown``."""
        return self.batch.status.value if self.batch.status.is_known else "unknown"

    @property
    def running(self) -> bool:
        return not self.batch.status.is_terminal


def batch_row(
    conn_id: str,
    batch: Batch,
    settings: ClientSettings | None,
    prices: Prices | None,
    may_cancel: bool,
    now: float | None = None,
) -> BatchRow:
    """What the pages show of ``batch``.

    :param conn_id: the connection it was read through.
    :param settings: that connection's settings, for the batch's page link (None: no link).
    :param prices: prices per million tokens by model (None: no cost).
    :param may_cancel: whether the user may edit the DAG's task instances.
    :param now: the current time, epoch seconds (default: the clock).
    """
    now = time.time() if now is None else now
    counts = batch.request_counts
    total, completed, failed = (counts.total, counts.completed, counts.failed) if counts else (0, 0, 0)
    usage = batch.usage
    input_tokens = usage.input_tokens if usage else 0
    cached = usage.input_tokens_details.cached_tokens if usage else 0
    output_tokens = usage.output_tokens if usage else 0
    cost = None
    if batch.model and usage:
        tokens = {batch.model: {"input": input_tokens, "cached": cached, "output": output_tokens}}
        cost = estimate_cost(tokens, prices)
    elapsed, eta = elapsed_and_eta(batch, now)
    file_ids = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
    files = tuple((kind, file_id) for kind, file_id in zip(FILE_KINDS, file_ids, strict=True) if file_id)
    cancellable = not batch.status.is_terminal and batch.status != BatchStatus.CANCELLING
    return BatchRow(
        conn_id=conn_id,
        batch=batch,
        identity=RunIdentity.of(batch),
        total=total,
        completed=completed,
        failed=failed,
        percent=100.0 * (completed + failed) / total if total else 0.0,
        elapsed_seconds=elapsed,
        eta_seconds=eta,
        input_tokens=input_tokens,
        cached_tokens=cached,
        output_tokens=output_tokens,
        cost=cost,
        page_url=external_url(settings.batch_page_url(batch.id)) if settings else None,
        files=files,
        can_cancel=may_cancel and cancellable,
    )
