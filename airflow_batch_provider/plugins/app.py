"""The FastAPI app the API server mounts at ``/openai-batches``: two pages, two actions, two assets."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, status
from starlette.responses import FileResponse

from airflow_batch_provider.plugins import actions, pages
from airflow_batch_provider.plugins.auth import CurrentUser

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
"""The files under ``static/`` the pages load, with their media types."""

assets = APIRouter(include_in_schema=False)


@assets.get("/static/{name}")
async def asset(name: str, user: CurrentUser) -> FileResponse:
    """The pages' script and style sheet; like every route, for authenticated users only."""
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=headers)


def create_app() -> FastAPI:
    """The plugin's app, without an OpenAPI page."""
    app = FastAPI(title="OpenAI Batches", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(assets)
    app.include_router(pages.router)
    app.include_router(actions.router)
    return app
