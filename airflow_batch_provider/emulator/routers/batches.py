"""``/v1/batches``: create, retrieve, cancel and list batches."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from airflow_batch_provider.emulator.dependencies import SettingsDep, StoreDep, WorkerDep
from airflow_batch_provider.emulator.documents import Document, new_batch, now
from airflow_batch_provider.emulator.errors import APIError, batch_not_found
from airflow_batch_provider.emulator.ids import new_id
from airflow_batch_provider.emulator.parameters import (
    check_completion_window,
    check_endpoint,
    check_expires_after,
    check_metadata,
)
from airflow_batch_provider.emulator.responses import json_response, list_response
from airflow_batch_provider.emulator.store import Progress
from airflow_batch_provider.models import BatchStatus
from airflow_batch_provider.rules import UNCANCELLABLE_STATUSES

router = APIRouter(prefix="/v1/batches", tags=["batches"])


class CreateBatch(BaseModel):
    """The body of ``POST /v1/batches``; an argument the live API does not know is refused, naming it."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None = None
    output_expires_after: dict[str, Any] | None = None


@router.post("")
async def create_batch(
    params: CreateBatch, store: StoreDep, worker: WorkerDep, settings: SettingsDep
) -> Response:
    check_endpoint(params.endpoint)
    check_completion_window(params.completion_window)
    metadata = None if params.metadata is None else check_metadata(params.metadata)
    output_expires_after = None
    if params.output_expires_after is not None:
        output_expires_after = check_expires_after(params.output_expires_after, "output_expires_after")
    started = time.time()
    deadline = started + settings.completion_window_seconds
    doc = new_batch(
        endpoint=params.endpoint,
        input_file_id=params.input_file_id,
        completion_window=params.completion_window,
        created_at=int(started),
        expires_at=int(deadline),
        metadata=metadata,
        output_expires_after=output_expires_after,
    )
    progress = Progress(deadline=deadline, output_file_id=new_id("file-"), error_file_id=new_id("file-"))
    store.add_batch(doc, progress)
    worker.submit(doc["id"])
    return json_response(doc)


class _RetrieveBatch:
    """``GET /v1/batches/{batch_id}``: the stored JSON, answered as it is (the polling hot path).

    A plain ASGI endpoint: it skips FastAPI's parameter machinery and Starlette's request
    wrapper, which cost more than the SQLite read itself.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch_id = scope["path_params"]["batch_id"]
        # What get_store() reads, without building a Request first.
        doc = scope["app"].state.store.batch_json(batch_id)
        response = batch_not_found(batch_id).response() if doc is None else json_response(doc)
        await response(scope, receive, send)


# Under the router's prefix, like the routes the decorators add.
router.routes.append(
    Route(f"{router.prefix}/{{batch_id}}", _RetrieveBatch(), methods=["GET"], include_in_schema=False)
)


def _start_cancelling(doc: Document, _: Progress) -> bool:
    """Move a batch to ``cancelling``; False when it already is, or is cancelled."""
    status = doc["status"]
    if status in UNCANCELLABLE_STATUSES:
        raise APIError(409, f"Cannot cancel a batch with status '{status}'.")
    if status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
        return False
    doc.update(status=BatchStatus.CANCELLING.value, cancelling_at=now())
    return True


@router.post("/{batch_id}/cancel")
async def cancel_batch(batch_id: str, store: StoreDep, worker: WorkerDep) -> Response:
    if store.update_batch(batch_id, _start_cancelling):
        worker.cancel(batch_id)
    doc = store.batch_json(batch_id)
    if doc is None:
        raise batch_not_found(batch_id)
    return json_response(doc)


@router.get("")
async def list_batches(
    store: StoreDep, after: str | None = None, limit: int = Query(default=20, ge=1, le=100)
) -> Response:
    data, has_more = store.list_batches(after=after, limit=limit)
    return list_response(data, has_more)
