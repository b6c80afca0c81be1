"""``/v1/batches``: create, retrieve, cancel and list batches."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from airflow_batch_provider.emulator.errors import APIError, invalid_value, json_type_name, not_found
from airflow_batch_provider.emulator.ids import new_id
from airflow_batch_provider.emulator.responses import json_response, list_response, now
from airflow_batch_provider.emulator.settings import EmulatorSettings
from airflow_batch_provider.emulator.store import Document, Progress, Store
from airflow_batch_provider.emulator.worker import BatchWorker
from airflow_batch_provider.jsonl import endpoint_problem

COMPLETION_WINDOWS = ("24h",)
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_LENGTH = 64
MAX_METADATA_VALUE_LENGTH = 512
OUTPUT_EXPIRY_SECONDS = (3600, 30 * 24 * 60 * 60)
"""Bounds of ``output_expires_after.seconds``: one hour to thirty days."""
UNCANCELLABLE = ("completed", "failed", "expired")


class CreateBatch(BaseModel):
    """The body of ``POST /v1/batches``."""

    model_config = ConfigDict(extra="allow")

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None = None
    output_expires_after: dict[str, Any] | None = None


def check_metadata(metadata: dict[str, Any]) -> None:
    """Raise the live API's 400 when ``metadata`` breaks its limits."""
    if len(metadata) > MAX_METADATA_KEYS:
        raise APIError(
            400,
            f"Invalid 'metadata': too many properties. Expected an object with at most {MAX_METADATA_KEYS} "
            f"properties, but got an object with {len(metadata)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_LENGTH:
            raise APIError(
                400,
                f"Invalid 'metadata': key too long. Expected a key with maximum length "
                f"{MAX_METADATA_KEY_LENGTH}, but got a key with length {len(key)} instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            raise APIError(
                400,
                f"Invalid type for 'metadata.{key}': expected a string, "
                f"but got {json_type_name(value)} instead.",
                param=f"metadata.{key}",
                code="invalid_type",
            )
        if len(value) > MAX_METADATA_VALUE_LENGTH:
            raise APIError(
                400,
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                f"{MAX_METADATA_VALUE_LENGTH}, but got a string with length {len(value)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )


def check_expires_after(expires_after: dict[str, Any], param: str) -> dict[str, Any]:
    """Validate an ``{"anchor": "created_at", "seconds": N}`` policy and return it normalized."""
    anchor = expires_after.get("anchor")
    if anchor != "created_at":
        raise invalid_value(f"{param}.anchor", anchor, ("created_at",))
    seconds = expires_after.get("seconds")
    if isinstance(seconds, str) and seconds.isdigit():  # multipart forms send numbers as text
        seconds = int(seconds)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise APIError(
            400,
            f"Invalid type for '{param}.seconds': expected an integer, "
            f"but got {json_type_name(seconds)} instead.",
            param=f"{param}.seconds",
            code="invalid_type",
        )
    low, high = OUTPUT_EXPIRY_SECONDS
    if not low <= seconds <= high:
        raise APIError(
            400,
            f"Invalid '{param}.seconds': expected a value between {low} and {high}, "
            f"but got {seconds} instead.",
            param=f"{param}.seconds",
            code="invalid_value",
        )
    return {"anchor": "created_at", "seconds": seconds}


def batch_not_found(batch_id: str) -> APIError:
    return not_found(f"No batch found with id '{batch_id}'.")


def batches_router(store: Store, worker: BatchWorker, settings: EmulatorSettings) -> APIRouter:
    """The batch endpoints over ``store``; new and cancelled batches are handed to ``worker``."""
    router = APIRouter(prefix="/v1/batches")

    @router.post("")
    async def create_batch(params: CreateBatch) -> Response:
        if (problem := endpoint_problem(params.endpoint)) is not None:
            raise APIError(400, problem.message or "", param=problem.param, code=problem.code)
        if params.completion_window not in COMPLETION_WINDOWS:
            raise invalid_value("completion_window", params.completion_window, COMPLETION_WINDOWS)
        if params.metadata is not None:
            check_metadata(params.metadata)
        output_expires_after = None
        if params.output_expires_after is not None:
            output_expires_after = check_expires_after(params.output_expires_after, "output_expires_after")
        started = time.time()
        created = int(started)
        doc: Document = {
            "id": new_id("batch_"),
            "object": "batch",
            "endpoint": params.endpoint,
            "errors": None,
            "input_file_id": params.input_file_id,
            "completion_window": params.completion_window,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": created,
            "in_progress_at": None,
            "expires_at": int(started + settings.completion_window_seconds),
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": params.metadata,
            "model": None,
            "usage": {
                "input_tokens": 0,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 0,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 0,
            },
            "output_expires_after": output_expires_after,
        }
        progress = Progress(
            deadline=started + settings.completion_window_seconds,
            output_file_id=new_id("file-"),
            error_file_id=new_id("file-"),
        )
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
            if status in UNCANCELLABLE:
                raise APIError(409, f"Cannot cancel a batch with status '{status}'.")
            if status in ("cancelling", "cancelled"):
                return False
            doc.update(status="cancelling", cancelling_at=now())
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
