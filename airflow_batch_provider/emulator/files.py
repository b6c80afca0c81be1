"""``/v1/files`` and ``/v1/uploads``: store, list, read and delete files.

Bytes are written under generated names (the file or part id); the client's filename
is only ever a field of the file object.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, Response

from airflow_batch_provider.emulator.documents import Document, new_file, now
from airflow_batch_provider.emulator.errors import APIError, missing_parameter, not_found
from airflow_batch_provider.emulator.ids import new_id
from airflow_batch_provider.emulator.parameters import check_expires_after, check_purpose
from airflow_batch_provider.emulator.responses import json_response, list_response
from airflow_batch_provider.emulator.store import Store
from airflow_batch_provider.models import FileDeleted
from airflow_batch_provider.rules import MAX_FILE_BYTES

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
"""Largest file ``POST /v1/files`` takes for purposes other than ``batch``."""
MAX_MULTIPART_UPLOAD_BYTES = 8 * 1024 * 1024 * 1024
MAX_PART_BYTES = 64 * 1024 * 1024
UPLOAD_SECONDS = 60 * 60
"""How long an upload stays open for parts."""
_COPY_CHUNK = 1024 * 1024


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


def _file_not_found(file_id: str) -> APIError:
    return not_found(f"No such File object: {file_id}", param="id")


def _copy(source: BinaryIO, target: Path, limit: int) -> int:
    """Copy ``source`` into a new file at ``target``; stop past ``limit`` bytes. Returns the size."""
    partial = target.with_name(target.name + ".partial")
    size = 0
    with open(partial, "wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            size += len(chunk)
            if size > limit:
                break
            out.write(chunk)
    if size > limit:
        partial.unlink()
    else:
        os.replace(partial, target)
    return size


def _concatenate(parts: list[Path], target: Path) -> str:
    """Join ``parts`` in order into ``target``; return the md5 of the result."""
    digest = hashlib.md5(usedforsecurity=False)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as out:
        for part in parts:
            with open(part, "rb") as source:
                while chunk := source.read(_COPY_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
    os.replace(partial, target)
    return digest.hexdigest()


def _form_text(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def files_router(store: Store) -> APIRouter:
    """The Files and Uploads endpoints over ``store``."""
    router = APIRouter(prefix="/v1")

    def existing_file(file_id: str) -> Document:
        doc = store.get_file(file_id)
        if doc is None:
            raise _file_not_found(file_id)
        return doc

    @router.post("/files")
    async def create_file(request: Request) -> Response:
        async with request.form(max_files=1, max_fields=16) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise missing_parameter("file")
            purpose = _form_text(form, "purpose")
            if purpose is None:
                raise missing_parameter("purpose")
            expires_after = None
            if "expires_after[anchor]" in form or "expires_after[seconds]" in form:
                expires_after = check_expires_after(
                    {
                        "anchor": _form_text(form, "expires_after[anchor]"),
                        "seconds": _form_text(form, "expires_after[seconds]"),
                    },
                    "expires_after",
                )
            filename = upload.filename or "upload"
            check_purpose(purpose, filename, upload.size or 0)
            file_id = new_id("file-")
            limit = MAX_FILE_BYTES if purpose == "batch" else MAX_UPLOAD_BYTES
            size = await asyncio.to_thread(_copy, upload.file, store.file_path(file_id), limit)
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

    @router.get("/files")
    async def list_files(
        purpose: str | None = None,
        after: str | None = None,
        limit: int = Query(default=10_000, ge=1, le=10_000),
        order: Literal["asc", "desc"] = "desc",
    ) -> Response:
        data, has_more = store.list_files(
            purpose=purpose, after=after, limit=limit, newest_first=order == "desc"
        )
        return list_response(data, has_more)

    @router.get("/files/{file_id}")
    async def retrieve_file(file_id: str) -> Response:
        return json_response(existing_file(file_id))

    @router.get("/files/{file_id}/content")
    async def file_content(file_id: str) -> Response:
        existing_file(file_id)
        return FileResponse(store.file_path(file_id), media_type="application/octet-stream")

    @router.delete("/files/{file_id}")
    async def delete_file(file_id: str) -> Response:
        if not store.delete_file(file_id):
            raise _file_not_found(file_id)
        return json_response(FileDeleted(id=file_id, deleted=True).model_dump(mode="json"))

    def pending_upload(upload_id: str) -> Document:
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

    @router.post("/uploads")
    async def create_upload(params: CreateUpload) -> Response:
        check_purpose(params.purpose, params.filename, params.bytes)
        if params.bytes > MAX_MULTIPART_UPLOAD_BYTES:
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

    @router.post("/uploads/{upload_id}/parts")
    async def add_part(upload_id: str, request: Request) -> Response:
        pending_upload(upload_id)
        async with request.form(max_files=1, max_fields=4) as form:
            data = form.get("data")
            if not isinstance(data, UploadFile):
                raise missing_parameter("data")
            part_id = new_id("part_")
            size = await asyncio.to_thread(_copy, data.file, store.part_path(part_id), MAX_PART_BYTES)
        if size > MAX_PART_BYTES:
            raise APIError(400, "A part takes at most 64 MB.", param="data", code="invalid_value")
        store.add_part(upload_id, part_id, size)
        return json_response(
            {"id": part_id, "object": "upload.part", "created_at": now(), "upload_id": upload_id}
        )

    @router.post("/uploads/{upload_id}/complete")
    async def complete_upload(upload_id: str, params: CompleteUpload) -> Response:
        doc = pending_upload(upload_id)
        sizes = store.part_sizes(upload_id)
        for part_id in params.part_ids:
            if part_id not in sizes:
                raise APIError(400, f"Part {part_id} is not a part of upload {upload_id}.", param="part_ids")
        if len(set(params.part_ids)) != len(params.part_ids):
            raise APIError(400, "A part id is listed more than once.", param="part_ids")
        total = sum(sizes[part_id] for part_id in params.part_ids)
        if total != doc["bytes"]:
            raise APIError(
                400,
                f"The parts add up to {total} bytes, but the upload was created for {doc['bytes']} bytes.",
                param="part_ids",
            )
        file_id = new_id("file-")
        target = store.file_path(file_id)
        md5 = await asyncio.to_thread(
            _concatenate, [store.part_path(part_id) for part_id in params.part_ids], target
        )
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

    @router.post("/uploads/{upload_id}/cancel")
    async def cancel_upload(upload_id: str) -> Response:
        doc = pending_upload(upload_id)
        doc["status"] = "cancelled"
        store.save_upload(doc)
        store.drop_parts(upload_id)
        return json_response(doc)

    return router
