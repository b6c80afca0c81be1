"""The two HTML pages: "OpenAI Batches" (every batch, filtered, paginated) and a task instance's "Batch" tab.

``?fragment=1`` answers only the part a page's script swaps in when it refreshes itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from starlette.responses import Response

from airflow_batch_provider.client.loop_cache import loop_cache
from airflow_batch_provider.models import BatchStatus
from airflow_batch_provider.plugins.auth import (
    EDIT,
    READ_XCOM,
    SEE,
    CurrentUser,
    permitted_dags,
    require_dag_access,
)
from airflow_batch_provider.plugins.connections import batch_conn_ids
from airflow_batch_provider.plugins.listing import (
    ConnectionBatches,
    ListedBatch,
    all_connection_batches,
    newest_first,
)
from airflow_batch_provider.plugins.rows import BatchRow, batch_row
from airflow_batch_provider.plugins.task_instance import (
    ErrorLine,
    TaskInstanceKey,
    find_batches,
    first_errors,
    task_batches,
)
from airflow_batch_provider.plugins.templating import CONTENT_SECURITY_POLICY, relative_root, templates
from airflow_batch_provider.plugins.xcoms import TaskResults, task_results
from airflow_batch_provider.rules import IN_PROGRESS_STATUSES

PAGE_SIZE = 50
"""Batches per page of the list."""
UNFINISHED = "unfinished"
"""The status filter that keeps every batch still moving (validating, in progress, finalizing, cancelling)."""
STATUS_CHOICES = (UNFINISHED, *(status.value for status in BatchStatus))
ERROR_FILES_READ = 10
"""Most error files the tab reads the first lines of."""
ERRORS_MAX_AGE = 300.0
"""Seconds the first lines of an error file are kept (a batch's files do not change)."""

router = APIRouter(include_in_schema=False)


def _page(request: Request, name: str, context: dict[str, Any], fragment: bool) -> Response:
    context = {"root": relative_root(request), **context}
    # The Airflow UI's root: one level above the app's.
    context["airflow_root"] = "../" if context["root"] == "./" else f"{context['root']}../"
    template = f"{name}_content.html" if fragment else f"{name}.html"
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store"}
    return templates.TemplateResponse(request, template, context, headers=headers)


def _matches(item: ListedBatch, status_filter: str, dag_id: str, conn_id: str) -> bool:
    batch_status = item.batch.status
    if status_filter == UNFINISHED and batch_status not in IN_PROGRESS_STATUSES:
        return False
    if status_filter not in ("", UNFINISHED) and batch_status.value != status_filter:
        return False
    return (not dag_id or item.dag_id == dag_id) and (not conn_id or item.conn_id == conn_id)


def _rows(
    items: Sequence[ListedBatch], listings: Sequence[ConnectionBatches], editable: set[str]
) -> list[BatchRow]:
    by_conn = {listing.conn_id: listing for listing in listings}
    now = time.time()
    return [
        batch_row(
            item.conn_id,
            item.batch,
            by_conn[item.conn_id].settings,
            by_conn[item.conn_id].prices,
            item.dag_id in editable,
            now,
        )
        for item in items
    ]


@router.get("/")
async def batches_page(
    request: Request,
    user: CurrentUser,
    status_filter: Annotated[str, Query(alias="status")] = "",
    dag_id: str = "",
    conn_id: str = "",
    page: Annotated[int, Query(ge=1)] = 1,
    fragment: bool = False,
) -> Response:
    """Every batch Airflow tasks created on every ``openai_batch`` connection, newest first."""
    conn_ids = await batch_conn_ids()
    listings = await all_connection_batches(conn_ids)
    listed = newest_first(listings)
    permitted = await permitted_dags(user, {item.dag_id for item in listed}, SEE, EDIT)
    visible = [item for item in listed if item.dag_id in permitted[SEE]]
    chosen = [item for item in visible if _matches(item, status_filter, dag_id, conn_id)]
    pages = max(1, math.ceil(len(chosen) / PAGE_SIZE))
    page = min(page, pages)
    shown = chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    rows = _rows(shown, listings, permitted[EDIT])
    context = {
        "title": "OpenAI Batches",
        "rows": rows,
        "live": any(row.running for row in rows),
        "matching": len(chosen),
        "unfinished": sum(item.batch.status in IN_PROGRESS_STATUSES for item in chosen),
        "page": page,
        "pages": pages,
        "filters": {"status": status_filter, "dag_id": dag_id, "conn_id": conn_id},
        "status_choices": STATUS_CHOICES,
        "dag_choices": sorted({item.dag_id for item in visible}),
        "conn_ids": conn_ids,
        "problems": [(listing.conn_id, problem) for listing in listings for problem in listing.problems],
        "priced": any(row.cost is not None for row in rows),
    }
    return _page(request, "batches", context, fragment)


def _map_index(text: str) -> int:
    """The tab URL's map index: an unmapped task instance's UI leaves ``{MAP_INDEX}`` unfilled."""
    if text in ("", "{MAP_INDEX}"):
        return -1
    try:
        return int(text)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found") from None


async def _first_errors(rows: Sequence[BatchRow]) -> dict[str, list[ErrorLine] | str]:
    """The first lines of the error files of up to :data:`ERROR_FILES_READ` batches, by batch id."""
    cache = await loop_cache()

    async def read(row: BatchRow) -> list[ErrorLine] | str:
        conn_id, file_id = row.conn_id, row.batch.error_file_id or ""
        key = ("openai-batches-ui", "errors", conn_id, file_id)
        return await cache.get(key, lambda: first_errors(conn_id, file_id), max_age=ERRORS_MAX_AGE)

    rows = [row for row in rows if row.batch.error_file_id][:ERROR_FILES_READ]
    return dict(zip([row.batch.id for row in rows], await asyncio.gather(*map(read, rows)), strict=True))


@router.get("/task-instance/{dag_id}/{task_id}/{map_index}/{run_id:path}")
async def task_instance_tab(
    request: Request,
    user: CurrentUser,
    dag_id: str,
    task_id: str,
    map_index: str,
    run_id: str,
    fragment: bool = False,
) -> Response:
    """The batches of one task instance, their first error lines, and where its results are."""
    await require_dag_access(user, dag_id, SEE)
    key = TaskInstanceKey(dag_id, run_id, task_id, _map_index(map_index))
    listings = await all_connection_batches(await batch_conn_ids())
    may_read_xcom = dag_id in (await permitted_dags(user, [dag_id], READ_XCOM))[READ_XCOM]
    results = await task_results(dag_id, run_id, task_id, key.map_index) if may_read_xcom else TaskResults()
    items = task_batches(key, listings)
    named = [batch_id for batch_id in results.batch_ids if batch_id not in {i.batch.id for i in items}]
    items += await find_batches(named, listings)
    # A batch an XCom names belongs to the DAG its metadata names, if any, else to this one.
    owner = {item.batch.id: item.dag_id or dag_id for item in items}
    permitted = await permitted_dags(user, set(owner.values()), SEE, EDIT, READ_XCOM)
    visible = [item for item in items if owner[item.batch.id] in permitted[SEE]]
    rows = _rows(visible, listings, permitted[EDIT])
    readable = [row for row in rows if owner[row.batch.id] in permitted[READ_XCOM]]
    context = {
        "title": f"Batches of {task_id}",
        "key": key,
        "rows": rows,
        "errors": await _first_errors(readable),
        "results": results,
        "may_read_xcom": may_read_xcom,
        "live": any(row.running for row in rows),
        "priced": any(row.cost is not None for row in rows),
    }
    return _page(request, "task_instance", context, fragment)
