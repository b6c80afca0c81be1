"""``/v1/uploads``: a large file sent in parts, then joined into one file.

Part bytes are written under generated names (the part id).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from airflow_batch_provider.emulator.dependencies import StoreDep
from airflow_batch_provider.emulator.documents import Document, new_file, now
from airflow_batch_provider.emulator.errors import APIError, missing_parameter, not_found
from airflow_batch_provider.emulator.file_bytes import concatenate, copy_at_most
from airflow_batch_provider.emulator.ids import new_id
from airflow_batch_provider.emulator.parameters import check_expires_after, check_purpose
from airflow_batch_provider.emulator.responses import json_response
from airflow_batch_provider.emulator.store import Store

MAX_UPLOAD_BYTES = 8 * 1024 * 1024 * 1024
"""Largest file an upload may become."""
MAX_PART_BYTES = 64 * 1024 * 1024
"""Largest part."""
UPLOAD_SECONDS = 60 * 60
"""How long an upload stays open for parts."""

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


class CreateUpload(BaseModel):
    """The body of ``POST /v1/uploads``."""

    bytes: int = Field(ge=0)
    filename: str
    mime_type: str
    purpose: str
    expires_after: dict[str, Any] | None = None


class CompleteUpload(BaseModel):
    """The body of ``POST /v1/uploads/{id}/complete``."""

    part_ids: list[str]
    md5: str | None = None


def _pending_upload(store: Store, upload_id: str) -> Document:
    """The upload, if it still takes changes; one past its time is marked ``expired`` first."""
    doc = store.get_upload(upload_id)
    if doc is None:
        raise not_found(f"No such Upload object: {upload_id}", param="upload_id")
    if doc["status"] == "pending" and now() >= doc["expires_at"]:
        doc["status"] = "expired"
        store.save_upload(doc)
        store.drop_parts(upload_id)
    if doc["status"] != "pending":
        raise APIError(400, f"Upload {upload_id} is already {doc['status']}; it takes no more changes.")
    return doc


@router.post("")
async def create_upload(params: CreateUpload, store: StoreDep) -> Response:
    check_purpose(params.purpose, params.filename, params.bytes)
    if params.bytes > MAX_UPLOAD_BYTES:
        raise APIError(400, "An upload takes at most 8 GB.", param="bytes", code="invalid_value")
    expires_after = None
    if params.expires_after:
        expires_after = check_expires_after(params.expires_after, "expires_after").model_dump()
    created = now()
    doc: Document = {
        "id": new_id("upload_"),
        "object": "upload",
        "bytes": params.bytes,
        "created_at": created,
        "expires_at": created + UPLOAD_SECONDS,
        "filename": params.filename,
        "purpose": params.purpose,
        "status": "pending",
        "file": None,
    }
    store.add_upload(doc, file_expires_after=expires_after)
    return json_response(doc)


@router.post("/{upload_id}/parts")
async def add_part(upload_id: str, request: Request, store: StoreDep) -> Response:
    _pending_upload(store, upload_id)
    async with request.form(max_files=1, max_fields=4) as form:
        data = form.get("data")
        if not isinstance(data, UploadFile):
            raise missing_parameter("data")
        part_id = new_id("part_")
        size = await asyncio.to_thread(copy_at_most, data.file, store.part_path(part_id), MAX_PART_BYTES)
    if size > MAX_PART_BYTES:
        raise APIError(400, "A part takes at most 64 MB.", param="data", code="invalid_value")
    store.add_part(upload_id, part_id, size)
    return json_response(
        {"id": part_id, "object": "upload.part", "created_at": now(), "upload_id": upload_id}
    )


def _check_parts(doc: Document, sizes: dict[str, int], part_ids: list[str]) -> int:
    """Raise the 400 for parts that are not the upload's or do not add up; return their total size."""
    for part_id in part_ids:
        if part_id not in sizes:
            raise APIError(400, f"Part {part_id} is not a part of upload {doc['id']}.", param="part_ids")
    if len(set(part_ids)) != len(part_ids):
        raise APIError(400, "A part id is listed more than once.", param="part_ids")
    total = sum(sizes[part_id] for part_id in part_ids)
    if total != doc["bytes"]:
        raise APIError(
            400,
            f"The parts add up to {total} bytes, but the upload was created for {doc['bytes']} bytes.",
            param="part_ids",
        )
    return total


@router.post("/{upload_id}/complete")
async def complete_upload(upload_id: str, params: CompleteUpload, store: StoreDep) -> Response:
    doc = _pending_upload(store, upload_id)
    total = _check_parts(doc, store.part_sizes(upload_id), params.part_ids)
    file_id = new_id("file-")
    target = store.file_path(file_id)
    parts = [store.part_path(part_id) for part_id in params.part_ids]
    md5 = await asyncio.to_thread(concatenate, parts, target)
    if params.md5 is not None and params.md5.lower() != md5:
        target.unlink()
        raise APIError(400, "The md5 of the uploaded bytes does not match the given md5.", param="md5")
    expiry = store.upload_file_expiry(upload_id)
    file_doc = new_file(
        file_id,
        size=total,
        filename=doc["filename"],
        purpose=doc["purpose"],
        created_at=now(),
        expires_after_seconds=None if expiry is None else expiry["seconds"],
    )
    store.add_file(file_doc)
    doc.update(status="completed", file=file_doc)
    store.save_upload(doc)
    store.drop_parts(upload_id)
    return json_response(doc)


@router.post("/{upload_id}/cancel")
async def cancel_upload(upload_id: str, store: StoreDep) -> Response:
    doc = _pending_upload(store, upload_id)
    doc["status"] = "cancelled"
    store.save_upload(doc)
    store.drop_parts(upload_id)
    return json_response(doc)
