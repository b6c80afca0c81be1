"""The emulator's FastAPI application."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_batch_provider.emulator.azure import AzurePathsMiddleware
from airflow_batch_provider.emulator.catalogue import ModelCatalogue
from airflow_batch_provider.emulator.errors import (
    APIError,
    handle_api_error,
    handle_http_error,
    handle_unexpected_error,
    handle_validation_error,
)
from airflow_batch_provider.emulator.executors import make_executor
from airflow_batch_provider.emulator.faults import FaultMiddleware, FaultState
from airflow_batch_provider.emulator.middleware import (
    APIKeyMiddleware,
    RequestIdMiddleware,
    URLLengthMiddleware,
)
from airflow_batch_provider.emulator.routers import admin, batches, files, inference, models, page, uploads
from airflow_batch_provider.emulator.settings import EmulatorSettings
from airflow_batch_provider.emulator.store import Store
from airflow_batch_provider.emulator.worker import BatchWorker


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run batches while the application is started; release everything when it stops."""
    state = app.state
    state.worker.start()
    try:
        yield
    finally:
        await state.worker.stop()
        await state.executor.aclose()
        state.store.close()


def create_app(settings: EmulatorSettings | None = None) -> FastAPI:
    """The emulator as an ASGI application; batches run while the application is started.

    :param settings: what to serve and how; the defaults when None. Without a
        ``data_dir`` the state goes to a new temporary directory (``app.state.data_dir``).
    """
    settings = settings or EmulatorSettings()
    data_dir = settings.data_dir or Path(tempfile.mkdtemp(prefix="openai-batch-emulator-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(
        title="OpenAI Batch API emulator",
        lifespan=_lifespan,
        docs_url="/_emulator/docs",
        redoc_url=None,
        openapi_url="/_emulator/openapi.json",
    )
    state = app.state
    state.settings = settings
    state.data_dir = data_dir
    state.store = Store(
        data_dir,
        result_retention_seconds=settings.retention_seconds,
        batch_retention_seconds=settings.batch_retention_seconds,
    )
    state.executor = make_executor(settings)
    # The upstream server decides which models exist: it answers for them.
    state.catalogue = ModelCatalogue(settings.models, check=not (settings.any_model or settings.upstream_url))
    state.worker = BatchWorker(state.store, settings, state.executor, state.catalogue)
    state.faults = FaultState(settings.faults)

    app.add_exception_handler(APIError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_exception_handler(Exception, handle_unexpected_error)

    for module in (batches, files, uploads, models, inference, page):
        app.include_router(module.router)
    if settings.enable_admin:
        app.include_router(admin.router)

    # Added last runs first: Azure's paths become OpenAI's before anything else sees them, faults
    # see the request next, request ids mark every answer the emulator itself gives, and the key
    # check sits in front of the routes.
    if settings.api_key is not None:
        app.add_middleware(APIKeyMiddleware, api_key=settings.api_key.get_secret_value())
    app.add_middleware(URLLengthMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(FaultMiddleware, state=state.faults)
    app.add_middleware(AzurePathsMiddleware)
    return app
