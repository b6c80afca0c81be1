"""A small HTML view of the emulator's batches, for people (and the operator's extra link).

``GET /`` lists the newest batches with status, progress and links to their files;
``GET /batches/{id}`` (:data:`~airflow_batch_provider.rules.EMULATOR_BATCH_PAGE`) shows one
batch. With an API key set, a browser asks for it (HTTP Basic auth, any user name, the key as
password).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from typing import Any

from fastapi import APIRouter
from starlette.responses import FileResponse, HTMLResponse, Response

from airflow_batch_provider.emulator.dependencies import StoreDep
from airflow_batch_provider.emulator.documents import Document
from airflow_batch_provider.emulator.errors import batch_not_found, file_not_found
from airflow_batch_provider.rules import EMULATOR_BATCH_PAGE, IN_PROGRESS_STATUSES

PAGE_SIZE = 100
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
td, th { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }
.completed { color: #1a7f37; } .failed, .expired { color: #cf222e; }
.cancelled, .cancelling { color: #9a6700; }
code { font-size: 12px; } pre { background: #f6f8fa; padding: 1em; overflow: auto; }
"""


def _time(stamp: int | None) -> str:
    if stamp is None:
        return ""
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _file_link(file_id: str | None) -> str:
    if not file_id:
        return ""
    return f'<a href="/files/{escape(file_id)}/content">{escape(file_id)}</a>'


def _progress(batch: Document) -> str:
    counts = batch.get("request_counts") or {}
    total, completed, failed = counts.get("total", 0), counts.get("completed", 0), counts.get("failed", 0)
    if not total:
        return ""
    return (
        f'<progress max="{total}" value="{completed + failed}"></progress> '
        f"{completed + failed:,}/{total:,} done, {failed:,} failed"
    )


def _status(batch: Document) -> str:
    status = escape(batch["status"])
    return f'<span class="{status}">{status}</span>'


def _page(title: str, body: str, refresh: bool) -> HTMLResponse:
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'>{meta}<title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _batch_page(batch_id: str) -> str:
    return EMULATOR_BATCH_PAGE.format(batch_id=batch_id)


def _unfinished(batches: list[Document]) -> bool:
    return any(batch["status"] in IN_PROGRESS_STATUSES for batch in batches)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def batches_page(store: StoreDep) -> Response:
    batches, has_more = store.list_batches(after=None, limit=PAGE_SIZE)
    rows = "".join(
        "<tr>"
        f'<td><a href="{escape(_batch_page(batch["id"]))}"><code>{escape(batch["id"])}</code></a></td>'
        f"<td>{_status(batch)}</td><td>{escape(batch['endpoint'])}</td>"
        f"<td>{escape(batch.get('model') or '')}</td><td>{_progress(batch)}</td>"
        f"<td>{_time(batch['created_at'])}</td>"
        f"<td>{_file_link(batch.get('output_file_id'))}</td><td>{_file_link(batch.get('error_file_id'))}</td>"
        "</tr>"
        for batch in batches
    )
    more = f"<p>Showing the newest {PAGE_SIZE}.</p>" if has_more else ""
    table = (
        "<table><tr><th>Batch</th><th>Status</th><th>Endpoint</th><th>Model</th><th>Progress</th>"
        f"<th>Created</th><th>Output</th><th>Errors</th></tr>{rows}</table>"
        if batches
        else "<p>No batches yet.</p>"
    )
    body = f"<h1>OpenAI Batch API emulator</h1><p>API at <code>/v1</code>.</p>{table}{more}"
    return _page("Batches", body, refresh=_unfinished(batches))


@router.get(EMULATOR_BATCH_PAGE)
async def batch_page(batch_id: str, store: StoreDep) -> Response:
    found = store.get_batch(batch_id)
    if found is None:
        raise batch_not_found(batch_id)
    batch = found[0]
    facts: list[tuple[str, Any]] = [
        ("Status", _status(batch)),
        ("Endpoint", escape(batch["endpoint"])),
        ("Model", escape(batch.get("model") or "")),
        ("Progress", _progress(batch)),
        ("Input file", _file_link(batch["input_file_id"])),
        ("Output file", _file_link(batch.get("output_file_id"))),
        ("Error file", _file_link(batch.get("error_file_id"))),
        (
            "Metadata",
            "<br>".join(f"{escape(k)}: {escape(str(v))}" for k, v in (batch.get("metadata") or {}).items()),
        ),
    ]
    facts += [
        (name.replace("_", " ").capitalize(), _time(batch.get(name)))
        for name in (
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
        if batch.get(name)
    ]
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    errors = (batch.get("errors") or {}).get("data") or []
    error_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(error.get(field) or ''))}</td>"
            for field in ("line", "param", "code", "message")
        )
        + "</tr>"
        for error in errors
    )
    error_table = (
        f"<h2>Errors</h2><table><tr><th>Line</th><th>Param</th><th>Code</th><th>Message</th></tr>{error_rows}</table>"
        if errors
        else ""
    )
    body = (
        f'<p><a href="/">All batches</a></p><h1><code>{escape(batch_id)}</code></h1>'
        f"<table>{rows}</table>{error_table}"
        f"<h2>JSON</h2><pre>{escape(json.dumps(batch, indent=2))}</pre>"
    )
    return _page(batch_id, body, refresh=_unfinished([batch]))


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, store: StoreDep) -> Response:
    if store.get_file(file_id) is None:
        raise file_not_found(file_id)
    return FileResponse(store.file_path(file_id), media_type="text/plain; charset=utf-8")
