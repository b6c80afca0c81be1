"""The state of one task's run through many batches: its parts, their batches round after round.

:class:`RunState` travels with the deferred task (it is small: a line per batch), so a task
resumed on another worker knows every batch it made. The local files it names (parts, results)
are a cache: :class:`RunFiles` fetches whatever is missing from the API again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from airflow_batch_provider.expiry import BatchFacts, reading_file
from airflow_batch_provider.jsonl.results import iter_heads, request_custom_id
from airflow_batch_provider.models import Batch, BatchStatus

if TYPE_CHECKING:
    from airflow_batch_provider.hooks.batch import OpenAIBatchHook

TOKEN_LIMIT_EXCEEDED = "token_limit_exceeded"
"""Error code of a batch refused because the organization's enqueued tokens are at their limit."""


class BatchRecord(BaseModel):
    """One batch of a part, as last seen."""

    id: str
    slot: str
    input_file_id: str
    status: str = BatchStatus.VALIDATING.value
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[str] = Field(default_factory=list)
    """The batch's own errors (``code: message``) when it failed."""
    ended_at: int | None = None
    """When the batch ended (epoch seconds), to date its files' expiry."""

    def update(self, batch: Batch) -> None:
        """Take the status, files, errors and end of the batch as last read."""
        self.status = batch.status.value
        self.output_file_id, self.error_file_id = batch.output_file_id, batch.error_file_id
        self.errors = [error.describe() for error in (batch.errors.data if batch.errors else [])]
        self.ended_at = BatchFacts.of(batch).ended_at

    @property
    def token_limited(self) -> bool:
        """True when the batch failed only because the enqueued-token limit was reached."""
        return self.status == BatchStatus.FAILED and any(
            TOKEN_LIMIT_EXCEEDED in error for error in self.errors
        )


class PartState(BaseModel):
    """One part of the task's input and every batch that ran (some of) its requests."""

    index: int
    requests: int
    digest: str
    input_file_id: str | None = None
    batches: list[BatchRecord] = Field(default_factory=list)

    @property
    def slot(self) -> str:
        """The slot of the part's first batch: ``<index>``."""
        return str(self.index)


class RunState(BaseModel):
    """Where one task's run stands."""

    endpoint: str
    started_at: float
    deadline: float | None = None
    round: int = 0
    parts: list[PartState]
    live: list[str] = Field(default_factory=list)
    """Batches being waited for."""
    to_submit: list[tuple[int, str, str | None]] = Field(default_factory=list)
    """``(part index, slot, input file id or None)`` to create when the timer fires."""
    not_before: float | None = None
    """When the batches of ``to_submit`` are due (epoch seconds)."""
    token_waits: int = 0

    def records(self) -> Iterator[tuple[PartState, BatchRecord]]:
        """Every batch of every part."""
        for part in self.parts:
            for record in part.batches:
                yield part, record

    def record(self, batch_id: str) -> BatchRecord:
        """The record of one batch of the run."""
        return next(record for _, record in self.records() if record.id == batch_id)

    def rounds(self) -> dict[str, list[str]]:
        """Batch ids by round (``"0"``, ``"1"``, ...), for the summary."""
        by_round: dict[str, list[str]] = {}
        for _, record in self.records():
            by_round.setdefault(slot_round(record.slot), []).append(record.id)
        return by_round


def slot_round(slot: str) -> str:
    """The round of a slot: ``3`` is round 0, ``3.r2`` and ``3.r2.t1`` round 2."""
    for piece in slot.split("."):
        if piece.startswith("r"):
            return piece[1:]
    return "0"


class RunFiles:
    """The local copies of a run's files under ``directory``, fetched from the API when missing.

    A file the API no longer has (404: it expired) raises
    :class:`~airflow_batch_provider.exceptions.GoneError`.

    :param hook: the API.
    :param directory: this task instance's work directory.
    :param output_expires_after: the ``output_expires_after`` seconds the batches were created
        with (None: the API's default), to say when a file that is gone expired.
    """

    def __init__(
        self, hook: OpenAIBatchHook, directory: Path, output_expires_after: int | None = None
    ) -> None:
        self.hook = hook
        self.directory = directory
        self.output_expires_after = output_expires_after
        directory.mkdir(parents=True, exist_ok=True)

    def part_input(self, part: PartState) -> Path:
        """The part's input file (``part-<index>.jsonl``), downloaded from its input file id if missing."""
        path = self.directory / f"part-{part.index:05d}.jsonl"
        if not path.exists():
            if part.input_file_id is None:
                raise FileNotFoundError(f"{path} is missing, and part {part.index} was never uploaded")
            with reading_file("input", part.input_file_id):
                self.hook.download_file(part.input_file_id, path)
        return path

    def file(self, file_id: str, kind: str = "result", batch: BatchFacts | None = None) -> Path:
        """A result file, downloaded once.

        :param kind: what the file is (``output``, ``error``), for the error when it is gone.
        :param batch: what is known of its batch, for that error too.
        """
        path = self.directory / f"{file_id}.jsonl"
        if not path.exists():
            with reading_file(kind, file_id, batch):
                self.hook.download_file(file_id, path)
        return path

    def _result_files(self, record: BatchRecord) -> Iterator[Path]:
        facts = BatchFacts(record.id, record.ended_at, self.output_expires_after)
        for kind, file_id in (("output", record.output_file_id), ("error", record.error_file_id)):
            if file_id:
                yield self.file(file_id, kind, facts)

    def results(self, part: PartState) -> list[Path]:
        """The part's result files, earliest batch first (a later file's line wins in a join)."""
        return [path for record in part.batches for path in self._result_files(record)]

    def retry_input(self, part: PartState, round_number: int) -> tuple[Path, int]:
        """Write the part's requests worth another try to ``part-<index>.r<round>.jsonl``.

        A request is worth another try when its latest result is a failure that may pass next
        time (429, 5xx, expired; see :func:`rules.is_retryable_result`). Requests of a batch a
        user cancelled are not retried.

        :return: the file and how many requests it holds.
        """
        latest: dict[str, bool] = {}
        for record in part.batches:
            if record.status == BatchStatus.CANCELLED:
                continue
            for path in self._result_files(record):
                for head in iter_heads(path):
                    latest[head.custom_id] = head.retryable
        path = self.directory / f"part-{part.index:05d}.r{round_number}.jsonl"
        count = 0
        with self.part_input(part).open("rb") as source, path.open("wb") as out:
            for line in source:
                if line.strip() and latest.get(request_custom_id(line)):
                    out.write(line)
                    count += 1
        if not count:
            os.unlink(path)
        return path, count
