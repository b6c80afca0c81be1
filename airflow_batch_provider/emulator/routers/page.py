"""A small HTML view of the emulator's batches, for people (and the operators' extra link).

``GET /`` lists the newest batches with status, progress and links to their files;
``GET /batches/{id}`` (:data:`~airflow_batch_provider.rules.EMULATOR_BATCH_PAGE`) shows one
batch. Both reload every two seconds while a batch shown is unfinished. With an API key set,
a browser asks for it (HTTP Basic auth, any user name, the key as password).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone

from fastapi import APIRouter
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.templating import Jinja2Templates

from airflow_batch_provider.emulator.dependencies import StoreDep
from airflow_batch_provider.emulator.documents import Document
from airflow_batch_provider.emulator.errors import batch_not_found, file_not_found
from airflow_batch_provider.rules import EMULATOR_BATCH_PAGE, IN_PROGRESS_STATUSES

PAGE_SIZE = 100
"""Most batches the list shows."""
TIMESTAMPS = (
    "created_at",
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "expires_at",
)
"""The batch's times the batch page shows, in this order, when set."""


def _utc(stamp: int | None) -> str:
    if stamp is None:
        return ""
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _batch_page(batch_id: str) -> str:
    return EMULATOR_BATCH_PAGE.format(batch_id=batch_id)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("airflow_batch_provider.emulator", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _utc
    env.filters["grouped"] = "{:,}".format
    env.globals["batch_page"] = _batch_page
    return env


templates = Jinja2Templates(env=_environment())
router = APIRouter(include_in_schema=False)


def _unfinished(batches: Iterable[Document]) -> bool:
    return any(batch["status"] in IN_PROGRESS_STATUSES for batch in batches)


@router.get("/")
async def batches_page(request: Request, store: StoreDep) -> Response:
    batches, has_more = store.list_batches(after=None, limit=PAGE_SIZE)
    context = {
        "title": "Batches",
        "refresh": _unfinished(batches),
        "batches": batches,
        "has_more": has_more,
        "page_size": PAGE_SIZE,
    }
    return templates.TemplateResponse(request, "batches.html", context)


@router.get(EMULATOR_BATCH_PAGE)
async def batch_page(request: Request, batch_id: str, store: StoreDep) -> Response:
    found = store.get_batch(batch_id)
    if found is None:
        raise batch_not_found(batch_id)
    batch = found[0]
    context = {
        "title": batch_id,
        "refresh": _unfinished([batch]),
        "batch": batch,
        "timestamps": TIMESTAMPS,
        "batch_json": json.dumps(batch, indent=2),
    }
    return templates.TemplateResponse(request, "batch.html", context)


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, store: StoreDep) -> Response:
    if store.get_file(file_id) is None:
        raise file_not_found(file_id)
    return FileResponse(store.file_path(file_id), media_type="text/plain; charset=utf-8")
