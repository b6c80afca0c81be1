"""The lifecycle of batches: validate, execute, finalize, expire, cancel.

One asyncio task per unfinished batch runs it from whatever status SQLite holds, so a
restarted emulator picks up where the last one stopped. While a batch is in progress its
results are appended to the output and error files in input order, and every checkpoint
saves, in one transaction, how many input lines are done together with both files' byte
lengths at that point. A resumed batch truncates both files to those lengths and goes on
with the next line: no result is lost or written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import msgspec

from airflow_batch_provider import jsonl
from airflow_batch_provider.emulator.catalogue import ModelCatalogue
from airflow_batch_provider.emulator.checks import FAIL_FIELD, transient_failure
from airflow_batch_provider.emulator.content import estimate_tokens
from airflow_batch_provider.emulator.documents import Document, now
from airflow_batch_provider.emulator.errors import APIError, status_error, without_paths
from airflow_batch_provider.emulator.executors import Execution, Executor
from airflow_batch_provider.emulator.ids import new_id
from airflow_batch_provider.emulator.settings import EmulatorSettings
from airflow_batch_provider.emulator.store import Progress, Store
from airflow_batch_provider.models import BatchError, BatchRequest, BatchStatus, BatchUsage
from airflow_batch_provider.rules import BATCH_CANCELLED, BATCH_EXPIRED

log = logging.getLogger(__name__)

EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."
CHECKPOINT_SECONDS = 0.1
"""Most time between checkpoints while results arrive (how often counts visibly rise)."""
CHECKPOINT_RESULTS = 2_000
"""Most results between checkpoints (bounds the work a crash can lose)."""


class BatchWorker:
    """Runs every unfinished batch of a store to a terminal status.

    :param store: where batches, their progress and their files live.
    :param settings: delays, concurrency and completion window.
    :param executor: executes one request of a batch (local or upstream).
    :param catalogue: the models batches may name; default: the catalogue ``settings`` describe.
    """

    def __init__(
        self,
        store: Store,
        settings: EmulatorSettings,
        executor: Executor,
        catalogue: ModelCatalogue | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._executor = executor
        self._catalogue = catalogue or ModelCatalogue(settings.models, check=not settings.any_model)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel_events: dict[str, asyncio.Event] = {}

    def start(self) -> None:
        """Resume every batch the store holds that is not finished."""
        for batch_id in self._store.unfinished_batches():
            self.submit(batch_id)

    async def stop(self) -> None:
        """Stop processing; unfinished batches resume from their last checkpoint next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def submit(self, batch_id: str) -> None:
        """Start running ``batch_id`` unless it already runs."""
        if batch_id in self._tasks:
            return
        self._cancel_events[batch_id] = asyncio.Event()
        task = asyncio.create_task(self._run(batch_id), name=f"batch {batch_id}")
        self._tasks[batch_id] = task
        task.add_done_callback(lambda _: self._forget(batch_id))

    def cancel(self, batch_id: str) -> None:
        """Tell the batch's task that the batch was moved to ``cancelling``."""
        event = self._cancel_events.get(batch_id)
        if event is None:
            self.submit(batch_id)
        else:
            event.set()

    def _forget(self, batch_id: str) -> None:
        self._tasks.pop(batch_id, None)
        self._cancel_events.pop(batch_id, None)

    async def _run(self, batch_id: str) -> None:
        try:
            while True:
                found = self._store.get_batch(batch_id)
                if found is None:
                    return
                doc, progress = found
                status = doc["status"]
                if status == BatchStatus.VALIDATING:
                    await self._validate(batch_id, doc, progress)
                elif status == BatchStatus.IN_PROGRESS:
                    await self._execute(batch_id, doc, progress)
                elif status == BatchStatus.FINALIZING:
                    await self._finalize(batch_id)
                elif status == BatchStatus.CANCELLING:
                    await self._finish_cancel(batch_id)
                else:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave a batch stuck: fail it and say why
            log.exception("Batch %s failed inside the emulator", batch_id)
            reason = without_paths(str(exc), self._store.data_dir)
            error = BatchError(code="server_error", message=f"The emulator failed to run the batch: {reason}")
            self._store.update_batch(batch_id, lambda doc, _: _fail(doc, [error]))

    async def _pause(self, batch_id: str, seconds: float) -> bool:
        """Wait ``seconds``; return True early if the batch gets cancelled."""
        event = self._cancel_events[batch_id]
        if seconds > 0 and not event.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), seconds)
        return event.is_set()

    async def _validate(self, batch_id: str, doc: Document, progress: Progress) -> None:
        # Stop waiting when the window ends: a window shorter than the delay expires the batch.
        if await self._pause(batch_id, min(self._settings.validation_delay, progress.deadline - time.time())):
            return
        if time.time() >= progress.deadline:
            self._store.update_batch(batch_id, _expire_unvalidated)
            return
        input_id = doc["input_file_id"]
        # An id the emulator never made names no file: not found, like any unknown id.
        known = self._store.get_file(input_id) is not None
        path = self._store.file_path(input_id) if known else None
        if path is None or not path.exists():
            missing = BatchError(
                code="invalid_request", param="file_id", message=f"Cannot find file {input_id}."
            )
            self._store.update_batch(batch_id, lambda doc, _: _fail(doc, [missing]))
            return
        endpoint = doc["endpoint"]
        report = await asyncio.to_thread(
            jsonl.inspect_file, path, endpoint, known_models=self._catalogue.offered(endpoint)
        )
        tokens = estimate_tokens(path.stat().st_size)
        limit = self._settings.enqueued_token_limit

        def start(doc: Document, progress: Progress) -> bool:
            if doc["status"] != BatchStatus.VALIDATING:
                return False
            if report.problems:
                _fail(doc, report.problems)
            elif limit is not None and self._store.enqueued_tokens() + tokens > limit:
                _fail(doc, [token_limit_error(report.model, limit)])
            else:
                doc.update(status=BatchStatus.IN_PROGRESS.value, in_progress_at=now(), model=report.model)
                doc["request_counts"] = {"total": report.requests, "completed": 0, "failed": 0}
                progress.enqueued_tokens = tokens
            return True

        self._store.update_batch(batch_id, start)

    async def _execute(self, batch_id: str, doc: Document, progress: Progress) -> None:
        run = _Run(self._store, batch_id, doc, progress)
        cancelled = self._cancel_events[batch_id]
        cancel_waiter = asyncio.create_task(cancelled.wait())
        requests = islice(
            jsonl.iter_requests(self._store.file_path(doc["input_file_id"])), progress.done, None
        )
        pending: deque[tuple[BatchRequest, asyncio.Task[Execution]]] = deque()
        outcome = "stopped"  # until the loop ends otherwise: a shutdown or an error
        try:
            while True:
                while (
                    len(pending) < self._settings.concurrency
                    and (request := next(requests, None)) is not None
                ):
                    pending.append((request, asyncio.create_task(self._call(request))))
                if not pending:
                    outcome = "done"
                    break
                request, call = pending[0]
                if not call.done():
                    remaining = progress.deadline - time.time()
                    await asyncio.wait(
                        {call, cancel_waiter}, timeout=max(remaining, 0), return_when="FIRST_COMPLETED"
                    )
                if cancelled.is_set():
                    outcome = "cancelled"
                    break
                if not call.done():
                    outcome = "expired"
                    break
                pending.popleft()
                run.record(request, call.result())
        finally:
            cancel_waiter.cancel()
            for _, call in pending:
                call.cancel()
            run.checkpoint(finished=outcome == "done")
            run.close()
        if outcome == "expired":
            # The window passed: every request not done yet becomes a "batch_expired" error line.
            run.expire([*(request for request, _ in pending), *requests])

    async def _call(self, request: BatchRequest) -> Execution:
        if self._settings.request_delay:
            await asyncio.sleep(self._settings.request_delay)
        body = request.body
        try:
            transient = transient_failure(body)
        except APIError as error:
            return Execution.of_error(error)
        if transient is not None:
            status, times = transient
            if await asyncio.to_thread(self._store.count_forced_failure, request.custom_id, times):
                return Execution.of_error(status_error(status))
            body = {key: value for key, value in body.items() if key != FAIL_FIELD}
        try:
            return await self._executor.execute(request.url, body)
        except Exception as exc:
            log.warning("Request %s failed in the executor: %s", request.custom_id, exc)
            message = without_paths(str(exc), self._store.data_dir)
            body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
            return Execution(status_code=500, body=body, usage=None)

    async def _finalize(self, batch_id: str) -> None:
        if await self._pause(batch_id, self._settings.finalizing_delay):
            return
        self._close_batch(batch_id, BatchStatus.COMPLETED, previous=BatchStatus.FINALIZING)

    async def _finish_cancel(self, batch_id: str) -> None:
        """End a cancelling batch: each request it did not run becomes a ``batch_cancelled`` error line.

        A batch cancelled while validating ran nothing and counted nothing: it gets no such lines.
        """
        await asyncio.sleep(self._settings.cancel_delay)
        found = self._store.get_batch(batch_id)
        if found is None or found[0]["status"] != BatchStatus.CANCELLING:
            return
        doc, progress = found
        not_run, error_bytes = 0, progress.error_bytes
        input_path = self._store.file_path(doc["input_file_id"])
        if doc.get("in_progress_at") is not None and input_path.exists():
            requests = islice(jsonl.iter_requests(input_path), progress.done, None)
            error_path = self._store.file_path(progress.error_file_id)
            not_run, error_bytes = await asyncio.to_thread(
                _write_not_run, error_path, progress.error_bytes, requests, BATCH_CANCELLED, CANCELLED_MESSAGE
            )

        def close(doc: Document, progress: Progress) -> bool:
            if doc["status"] != BatchStatus.CANCELLING:
                return False
            doc["request_counts"]["failed"] += not_run
            progress.done += not_run
            progress.error_bytes = error_bytes
            doc.update(status=BatchStatus.CANCELLED.value, cancelled_at=now())
            return True

        self._store.update_batch(batch_id, close, result_files=True)

    def _close_batch(self, batch_id: str, status: BatchStatus, previous: BatchStatus) -> None:
        def close(doc: Document, _: Progress) -> bool:
            if doc["status"] != previous:
                return False
            doc.update(status=status.value, **{f"{status.value}_at": now()})
            return True

        self._store.update_batch(batch_id, close, result_files=True)


class _Run:
    """The in-progress part of one batch: open result files and running totals."""

    def __init__(self, store: Store, batch_id: str, doc: Document, progress: Progress) -> None:
        self.store = store
        self.batch_id = batch_id
        self.progress = progress
        counts = doc["request_counts"]
        self.completed: int = counts["completed"]
        self.failed: int = counts["failed"]
        self.usage = BatchUsage.model_validate(doc.get("usage") or {})
        self.output = _open_at(store.file_path(progress.output_file_id), progress.output_bytes)
        self.errors = _open_at(store.file_path(progress.error_file_id), progress.error_bytes)
        self.unsaved = 0
        self.saved_at = time.monotonic()

    def record(self, request: BatchRequest, execution: Execution) -> None:
        line = {
            "id": new_id("batch_req_"),
            "custom_id": request.custom_id,
            "response": {
                "status_code": execution.status_code,
                "request_id": new_id("req_"),
                "body": execution.body,
            },
            "error": None,
        }
        (self.output if execution.ok else self.errors).write(_jsonl(line))
        if execution.ok:
            self.completed += 1
            _add_usage(self.usage, execution)
        else:
            self.failed += 1
        self.progress.done += 1
        self.unsaved += 1
        if self.unsaved >= CHECKPOINT_RESULTS or time.monotonic() - self.saved_at >= CHECKPOINT_SECONDS:
            self.checkpoint()

    def checkpoint(self, finished: bool = False) -> None:
        """Save counts, usage, lines done and file lengths together.

        :param finished: every request is done: move the batch on to ``finalizing``.
        """
        self.output.flush()
        self.errors.flush()
        done, output_bytes, error_bytes = self.progress.done, self.output.tell(), self.errors.tell()

        def save(doc: Document, progress: Progress) -> None:
            doc["request_counts"].update(completed=self.completed, failed=self.failed)
            doc["usage"] = self.usage.model_dump(mode="json")
            progress.done, progress.output_bytes, progress.error_bytes = done, output_bytes, error_bytes
            if finished and doc["status"] == BatchStatus.IN_PROGRESS:
                doc.update(status=BatchStatus.FINALIZING.value, finalizing_at=now())

        self.store.update_batch(self.batch_id, save)
        self.unsaved = 0
        self.saved_at = time.monotonic()

    def expire(self, unfinished: list[BatchRequest]) -> None:
        """Write an error line for each unfinished request and mark the batch expired."""
        path = self.store.file_path(self.progress.error_file_id)
        count, self.progress.error_bytes = _write_not_run(
            path, self.progress.error_bytes, unfinished, BATCH_EXPIRED, EXPIRED_MESSAGE
        )
        self.progress.done += count
        self.failed += count

        def expire(doc: Document, progress: Progress) -> bool:
            if doc["status"] != BatchStatus.IN_PROGRESS:
                return False
            doc["request_counts"].update(completed=self.completed, failed=self.failed)
            doc.update(status=BatchStatus.EXPIRED.value, expired_at=now())
            progress.done, progress.error_bytes = self.progress.done, self.progress.error_bytes
            return True

        self.store.update_batch(self.batch_id, expire, result_files=True)

    def close(self) -> None:
        self.output.close()
        self.errors.close()


def _add_usage(usage: BatchUsage, execution: Execution) -> None:
    """Add one answer's usage, in whatever shape its endpoint uses, to a batch's ``usage``."""
    if not execution.usage:
        return
    raw = execution.usage
    # /v1/responses says input/output; chat, completions and embeddings say prompt/completion.
    input_details = raw.get("input_tokens_details") or raw.get("prompt_tokens_details") or {}
    output_details = raw.get("output_tokens_details") or raw.get("completion_tokens_details") or {}
    usage.input_tokens += execution.input_tokens
    usage.output_tokens += execution.output_tokens
    usage.total_tokens += raw.get("total_tokens") or execution.input_tokens + execution.output_tokens
    usage.input_tokens_details.cached_tokens += input_details.get("cached_tokens") or 0
    usage.output_tokens_details.reasoning_tokens += output_details.get("reasoning_tokens") or 0


def token_limit_error(model: str | None, limit: int) -> BatchError:
    """The live API's error for a batch that would pass the organization's enqueued-token limit."""
    return BatchError(
        code="token_limit_exceeded",
        message=(
            f"Enqueued token limit reached for {model or 'the model'} in organization org-emulator. "
            f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches have "
            "been completed."
        ),
    )


def _fail(doc: Document, errors: list[BatchError]) -> None:
    doc.update(status=BatchStatus.FAILED.value, failed_at=now())
    doc["errors"] = {"object": "list", "data": [error.model_dump(mode="json") for error in errors]}


def _expire_unvalidated(doc: Document, _: Progress) -> bool:
    if doc["status"] != BatchStatus.VALIDATING:
        return False
    doc.update(status=BatchStatus.EXPIRED.value, expired_at=now())
    return True


def _write_not_run(
    path: Path, size: int, requests: Iterable[BatchRequest], code: str, message: str
) -> tuple[int, int]:
    """Append to the error file at ``path`` (cut to ``size``) a line for each request that did not run.

    The live shape: ``{"response": null, "error": {"code": code, "message": message}}``.

    :return: how many lines were written, and the file's size after them.
    """
    count = 0
    with _open_at(path, size) as errors:
        for request in requests:
            line = {
                "id": new_id("batch_req_"),
                "custom_id": request.custom_id,
                "response": None,
                "error": {"code": code, "message": message},
            }
            errors.write(_jsonl(line))
            count += 1
        return count, errors.tell()


def _open_at(path: Path, size: int) -> BinaryIO:
    """Open ``path`` for appending after dropping whatever follows its first ``size`` bytes."""
    file = open(path, "ab")  # noqa: SIM115 - closed by _Run.close
    file.truncate(size)
    file.seek(size)
    return file


def _jsonl(line: Document) -> bytes:
    # msgspec (which Airflow brings), because json.dumps is slow on an embedding's many floats.
    return msgspec.json.encode(line) + b"\n"
