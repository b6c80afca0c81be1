"""The "Batch" tab's content: a task instance's batches, the first lines of their error files, its results.

A task instance's batches are those whose metadata names it (the ones it created: the submit
operator's one, the one-task operator's parts and retry rounds) and those its XComs name (the
batch a sensor waited for, the one a results task downloaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from types import SimpleNamespace

from pydantic import ValidationError

from airflow_batch_provider.client import OpenAIBatchAPIError
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.models import Batch, BatchResult
from airflow_batch_provider.plugins.listing import ConnectionBatches, ListedBatch
from airflow_batch_provider.utils import run_identity

ERROR_LINES = 5
"""Most error-file lines the tab shows per batch."""
ERROR_HEAD_BYTES = 64 * 1024
"""Most bytes of an error file read for them."""
MESSAGE_CHARS = 300
"""Longest error message shown; longer ones are cut."""


@dataclass(frozen=True)
class TaskInstanceKey:
    """The task instance a tab is about; ``map_index`` -1 for an unmapped one."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int

    def created(self, batch: Batch) -> bool:
        """True when the batch's metadata names this task instance (long ids compared as digests)."""
        expected = run_identity(SimpleNamespace(**self.__dict__))
        metadata = batch.metadata or {}
        return all(metadata.get(key) == value for key, value in expected.items())


@dataclass(frozen=True)
class ErrorLine:
    """One line of an error file, as the tab shows it."""

    custom_id: str
    status_code: int | None
    message: str


def task_batches(key: TaskInstanceKey, listings: list[ConnectionBatches]) -> list[ListedBatch]:
    """The listed batches that the task instance created, oldest first (part and round order)."""
    found = [
        ListedBatch(listing.conn_id, batch)
        for listing in listings
        for batch in listing.batches
        if key.created(batch)
    ]
    return sorted(found, key=lambda item: (item.batch.created_at, item.batch.id))


async def find_batches(batch_ids: list[str], listings: list[ConnectionBatches]) -> list[ListedBatch]:
    """The batches of ``batch_ids``, from the listings or else asked of each connection.

    Ids no connection knows are left out.
    """
    listed = {
        batch.id: ListedBatch(listing.conn_id, batch) for listing in listings for batch in listing.batches
    }

    async def ask(batch_id: str) -> ListedBatch | None:
        if batch_id in listed:
            return listed[batch_id]
        for listing in listings:
            if listing.settings is None:
                continue
            with contextlib.suppress(OpenAIBatchAPIError):
                return ListedBatch(
                    listing.conn_id, await OpenAIBatchHook(listing.conn_id).aget_batch(batch_id)
                )
        return None

    found = await asyncio.gather(*(ask(batch_id) for batch_id in batch_ids))
    return [item for item in found if item is not None]


def error_lines(head: bytes, complete: bool, limit: int = ERROR_LINES) -> list[ErrorLine]:
    """The first ``limit`` lines of an error file's head, each reduced to its request id and reason.

    :param head: the first bytes of the file.
    :param complete: whether ``head`` is the whole file (else its last, cut line is dropped).
    """
    lines = head.split(b"\n")
    if not complete:
        lines = lines[:-1]
    shown: list[ErrorLine] = []
    for line in (line for line in lines if line.strip()):
        if len(shown) == limit:
            break
        shown.append(_describe(line))
    return shown


def _describe(line: bytes) -> ErrorLine:
    try:
        result = BatchResult.model_validate_json(line)
    except ValidationError:
        return ErrorLine("", None, _cut(line.decode("utf-8", "replace")))
    if result.error is not None:
        reason = ": ".join(part for part in (result.error.code, result.error.message) if part)
        return ErrorLine(result.custom_id, None, _cut(reason))
    response = result.response
    body = response.body if response else None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = message if isinstance(message, str) else json.dumps(body)
    return ErrorLine(result.custom_id, response.status_code if response else None, _cut(text))


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


async def first_errors(conn_id: str, error_file_id: str) -> list[ErrorLine] | str:
    """The first lines of a batch's error file, or why they could not be read."""
    client = await OpenAIBatchHook(conn_id).aget_client()
    try:
        head = await client.read_file_head(error_file_id, ERROR_HEAD_BYTES + 1)
    except OpenAIBatchAPIError as error:
        answer = f"HTTP {error.status_code}" if error.status_code else "no answer"
        return f"the error file could not be read ({answer})"
    return error_lines(head[:ERROR_HEAD_BYTES], complete=len(head) <= ERROR_HEAD_BYTES)
