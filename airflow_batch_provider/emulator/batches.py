"""``/v1/batches``: create, retrieve, cancel and list batches."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from airflow_batch_provider.emulator.documents import Document, new_batch, now
from airflow_batch_provider.emulator.errors import APIError, not_found
from airflow_batch_provider.emulator.ids import new_id
from airflow_batch_provider.emulator.parameters import (
    check_completion_window,
    check_endpoint,
    check_expires_after,
    check_metadata,
)
from airflow_batch_provider.emulator.responses import json_response, list_response
from airflow_batch_provider.emulator.settings import EmulatorSettings
from airflow_batch_provider.emulator.store import Progress, Store
from airflow_batch_provider.emulator.worker import BatchWorker
from airflow_batch_provider.models import BatchStatus
from airflow_batch_provider.rules import UNCANCELLABLE_STATUSES


class CreateBatch(BaseModel):
    """The body of ``POST /v1/batches``."""

    model_config = ConfigDict(extra="allow")

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None = None
    output_expires_after: dict[str, Any] | None = None


def batch_not_found(batch_id: str) -> APIError:
    return not_found(f"No batch found with id '{batch_id}'.")


def batches_router(store: Store, worker: BatchWorker, settings: EmulatorSettings) -> APIRouter:
    """The batch endpoints over ``store``; new and cancelled batches are handed to ``worker``."""
    router = APIRouter(prefix="/v1/batches")

    @router.post("")
    async def create_batch(params: CreateBatch) -> Response:
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

    async def retrieve_batch(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        doc = store.batch_json(batch_id)
        if doc is None:
            raise batch_not_found(batch_id)
        return json_response(doc)

    # The polling hot path: a plain Starlette route skips FastAPI's parameter machinery, which
    # costs more than the SQLite read itself (about twice the throughput).
    # (APIRouter.add_route does not apply the router's prefix.)
    router.add_route(
        f"{router.prefix}/{{batch_id}}", retrieve_batch, methods=["GET"], include_in_schema=False
    )

    @router.post("/{batch_id}/cancel")
    async def cancel_batch(batch_id: str) -> Response:
        def cancel(doc: Document, _: Progress) -> bool:
            status = doc["status"]
            if status in UNCANCELLABLE_STATUSES:
                raise APIError(409, f"Cannot cancel a batch with status '{status}'.")
            if status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
                return False
            doc.update(status=BatchStatus.CANCELLING.value, cancelling_at=now())
            return True

        if store.update_batch(batch_id, cancel):
            worker.cancel(batch_id)
        doc = store.batch_json(batch_id)
        if doc is None:
            raise batch_not_found(batch_id)
        return json_response(doc)

    @router.get("")
    async def list_batches(
        after: str | None = None, limit: int = Query(default=20, ge=1, le=100)
    ) -> Response:
        data, has_more = store.list_batches(after=after, limit=limit)
        return list_response(data, has_more)

    return router
