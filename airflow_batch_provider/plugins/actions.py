"""Acting on one batch: cancel it, read one of its files. Each checks the batch's own DAG, on the server.

The batch is read afresh from its connection, and its metadata decides which DAG it belongs to:
no id in the URL or body can claim another. A batch without a run identity is not Airflow's:
it answers 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, status
from starlette.responses import Response, StreamingResponse

from airflow_batch_provider.client import OpenAIBatchAPIError
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.models import Batch
from airflow_batch_provider.plugins.auth import EDIT, READ_XCOM, CurrentUser, require_dag_access
from airflow_batch_provider.plugins.connections import batch_conn_ids
from airflow_batch_provider.plugins.listing import forget
from airflow_batch_provider.plugins.rows import FILE_KINDS, RunIdentity
from airflow_batch_provider.utils import safe_name

REQUESTED_BY = "openai-batches"
"""The ``X-Requested-By`` header a cancel must carry: a cross-site form cannot send it (no CSRF)."""

router = APIRouter(prefix="/batches/{conn_id}/{batch_id}", include_in_schema=False)


def _api_failure(error: OpenAIBatchAPIError) -> HTTPException:
    """The API's refusal passed on without its message (which names the server): 404 and 409 as they
    are, anything else 502."""
    if error.status_code in (404, 409):
        return HTTPException(error.status_code, "Not Found" if error.status_code == 404 else error.message)
    return HTTPException(status.HTTP_502_BAD_GATEWAY, "The Batch API did not answer as expected.")


async def _airflow_batch(conn_id: str, batch_id: str) -> tuple[OpenAIBatchHook, Batch, RunIdentity]:
    """The batch, read afresh, and the task instance that created it; 404 unless it is an Airflow batch."""
    if conn_id not in await batch_conn_ids():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    hook = OpenAIBatchHook(conn_id)
    try:
        batch = await hook.aget_batch(batch_id)
    except OpenAIBatchAPIError as error:
        raise _api_failure(error) from None
    identity = RunIdentity.of(batch)
    if identity is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    return hook, batch, identity


@router.post("/cancel")
async def cancel_batch(
    conn_id: str,
    batch_id: str,
    user: CurrentUser,
    x_requested_by: Annotated[str, Header()] = "",
) -> dict[str, str]:
    """Cancel a batch, for users who may edit the task instances of the DAG that created it."""
    if x_requested_by != REQUESTED_BY:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Send the header X-Requested-By: {REQUESTED_BY}.")
    hook, _, identity = await _airflow_batch(conn_id, batch_id)
    await require_dag_access(user, identity.dag_id, EDIT)
    try:
        batch = await hook.acancel_batch(batch_id)
    except OpenAIBatchAPIError as error:
        raise _api_failure(error) from None
    finally:
        await forget(conn_id)
    hook.log.info("Batch %s of DAG %s cancelled through the UI.", batch.id, identity.dag_id)
    return {"id": batch.id, "status": batch.status.value}


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


@router.get("/files/{kind}")
async def batch_file(conn_id: str, batch_id: str, kind: str, user: CurrentUser) -> Response:
    """A batch's input, output or error file, streamed as plain text, for users who may read the
    XComs of the DAG that created it (the files hold what the task hands on)."""
    if kind not in FILE_KINDS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    hook, batch, identity = await _airflow_batch(conn_id, batch_id)
    await require_dag_access(user, identity.dag_id, READ_XCOM)
    file_id = getattr(batch, f"{kind}_file_id")
    if not file_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    content = (await hook.aget_client()).iter_file_content(file_id)
    try:
        first = await anext(content, b"")
    except OpenAIBatchAPIError as error:
        raise _api_failure(error) from None
    headers = {
        "Content-Disposition": f'inline; filename="{safe_name(file_id)}.jsonl"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "no-store",
    }
    return StreamingResponse(_chain(first, content), media_type="text/plain; charset=utf-8", headers=headers)
