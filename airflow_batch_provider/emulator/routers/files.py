"""``/v1/files``: store, list, read and delete files.

Bytes are written under generated names (the file id); the client's filename is only ever a
field of the file object.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from airflow_batch_provider.emulator.dependencies import StoreDep
from airflow_batch_provider.emulator.documents import Document, new_file, now
from airflow_batch_provider.emulator.errors import APIError, file_not_found, missing_parameter
from airflow_batch_provider.emulator.file_bytes import copy_at_most
from airflow_batch_provider.emulator.ids import new_id
from airflow_batch_provider.emulator.parameters import check_expires_after, check_purpose
from airflow_batch_provider.emulator.responses import json_response, list_response
from airflow_batch_provider.emulator.store import Store
from airflow_batch_provider.models import ExpiresAfter, FileDeleted
from airflow_batch_provider.rules import MAX_FILE_BYTES

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
"""Largest file ``POST /v1/files`` takes for purposes other than ``batch``."""

router = APIRouter(prefix="/v1/files", tags=["files"])


def _existing_file(store: Store, file_id: str) -> Document:
    doc = store.get_file(file_id)
    if doc is None:
        raise file_not_found(file_id)
    return doc


def _form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _form_expiry(form: FormData) -> ExpiresAfter | None:
    """The ``expires_after[anchor]`` / ``expires_after[seconds]`` fields, checked; None if absent."""
    if "expires_after[anchor]" not in form and "expires_after[seconds]" not in form:
        return None
    policy = {
        "anchor": _form_text(form, "expires_after[anchor]"),
        "seconds": _form_text(form, "expires_after[seconds]"),
    }
    return check_expires_after(policy, "expires_after")


@router.post("")
async def create_file(request: Request, store: StoreDep) -> Response:
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise missing_parameter("file")
        purpose = _form_text(form, "purpose")
        if purpose is None:
            raise missing_parameter("purpose")
        expires_after = _form_expiry(form)
        filename = upload.filename or "upload"
        check_purpose(purpose, filename, upload.size or 0)
        file_id = new_id("file-")
        limit = MAX_FILE_BYTES if purpose == "batch" else MAX_UPLOAD_BYTES
        size = await asyncio.to_thread(copy_at_most, upload.file, store.file_path(file_id), limit)
    if size > limit:
        check_purpose(purpose, filename, size)
        raise APIError(
            400, f"File is too large. The most this endpoint takes is {limit} bytes.", param="file"
        )
    doc = new_file(
        file_id,
        size=size,
        filename=filename,
        purpose=purpose,
        created_at=now(),
        expires_after_seconds=None if expires_after is None else expires_after.seconds,
    )
    store.add_file(doc)
    return json_response(doc)


@router.get("")
async def list_files(
    store: StoreDep,
    purpose: str | None = None,
    after: str | None = None,
    limit: int = Query(default=10_000, ge=1, le=10_000),
    order: Literal["asc", "desc"] = "desc",
) -> Response:
    data, has_more = store.list_files(purpose=purpose, after=after, limit=limit, newest_first=order == "desc")
    return list_response(data, has_more)


@router.get("/{file_id}")
async def retrieve_file(file_id: str, store: StoreDep) -> Response:
    return json_response(_existing_file(store, file_id))


@router.get("/{file_id}/content")
async def file_content(file_id: str, store: StoreDep) -> Response:
    _existing_file(store, file_id)
    return FileResponse(store.file_path(file_id), media_type="application/octet-stream")


@router.delete("/{file_id}")
async def delete_file(file_id: str, store: StoreDep) -> Response:
    if not store.delete_file(file_id):
        raise file_not_found(file_id)
    return json_response(FileDeleted(id=file_id, deleted=True).model_dump(mode="json"))
