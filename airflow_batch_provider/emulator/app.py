"""The emulator's FastAPI application."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_batch_provider.emulator import inference
from airflow_batch_provider.emulator.batches import batches_router
from airflow_batch_provider.emulator.errors import (
    APIError,
    handle_api_error,
    handle_http_error,
    handle_validation_error,
)
from airflow_batch_provider.emulator.executors import make_executor
from airflow_batch_provider.emulator.faults import FaultMiddleware, FaultState, admin_router
from airflow_batch_provider.emulator.files import files_router
from airflow_batch_provider.emulator.middleware import APIKeyMiddleware, RequestIdMiddleware
from airflow_batch_provider.emulator.page import page_router
from airflow_batch_provider.emulator.settings import EmulatorSettings
from airflow_batch_provider.emulator.store import Store
from airflow_batch_provider.emulator.worker import BatchWorker


def create_app(settings: EmulatorSettings | None = None) -> FastAPI:
    """The emulator as an ASGI application; batches run while the application is started.

    :param settings: what to serve and how; the defaults when None. Without a
        ``data_dir`` the state goes to a new temporary directory (``app.state.data_dir``).
    """
    settings = settings or EmulatorSettings()
    data_dir = settings.data_dir or Path(tempfile.mkdtemp(prefix="openai-batch-emulator-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(data_dir)
    executor = make_executor(settings)
    worker = BatchWorker(store, settings, executor)
    faults = FaultState(settings.faults)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            await executor.aclose()
            store.close()

    app = FastAPI(
        title="OpenAI Batch API emulator",
        lifespan=lifespan,
        docs_url="/_emulator/docs",
        redoc_url=None,
        openapi_url="/_emulator/openapi.json",
    )
    app.state.settings = settings
    app.state.data_dir = data_dir
    app.state.store = store
    app.state.worker = worker
    app.state.faults = faults

    app.add_exception_handler(APIError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)

    app.include_router(batches_router(store, worker, settings))
    app.include_router(files_router(store))
    app.include_router(inference.router(executor))
    app.include_router(page_router(store))
    if settings.enable_admin:
        app.include_router(admin_router(faults))

    # Added last runs first: faults see the request before anything else, request ids mark
    # every answer the emulator itself gives, and the key check sits in front of the routes.
    if settings.api_key is not None:
        app.add_middleware(APIKeyMiddleware, api_key=settings.api_key.get_secret_value())
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(FaultMiddleware, state=faults)
    return app
