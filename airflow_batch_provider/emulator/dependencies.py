"""What the routes need, read from ``request.app.state`` (set up by :func:`create_app`).

Use the ``...Dep`` aliases as parameter annotations of FastAPI routes. Routes that take the
request themselves call the ``get_...`` functions; the polling hot path, a bare ASGI endpoint,
reads ``scope["app"].state`` directly.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from airflow_batch_provider.emulator.catalogue import ModelCatalogue
from airflow_batch_provider.emulator.executors import Executor
from airflow_batch_provider.emulator.faults import FaultState
from airflow_batch_provider.emulator.settings import EmulatorSettings
from airflow_batch_provider.emulator.store import Store
from airflow_batch_provider.emulator.worker import BatchWorker


def get_store(request: Request) -> Store:
    """The emulator's store of files, uploads and batches."""
    store: Store = request.app.state.store
    return store


def get_worker(request: Request) -> BatchWorker:
    """The worker that runs batches."""
    worker: BatchWorker = request.app.state.worker
    return worker


def get_settings(request: Request) -> EmulatorSettings:
    """The emulator's settings."""
    settings: EmulatorSettings = request.app.state.settings
    return settings


def get_executor(request: Request) -> Executor:
    """What executes requests, for batches and for the synchronous endpoints alike."""
    executor: Executor = request.app.state.executor
    return executor


def get_catalogue(request: Request) -> ModelCatalogue:
    """The models the emulator offers."""
    catalogue: ModelCatalogue = request.app.state.catalogue
    return catalogue


def get_faults(request: Request) -> FaultState:
    """The faults in force."""
    faults: FaultState = request.app.state.faults
    return faults


StoreDep = Annotated[Store, Depends(get_store)]
WorkerDep = Annotated[BatchWorker, Depends(get_worker)]
SettingsDep = Annotated[EmulatorSettings, Depends(get_settings)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
FaultsDep = Annotated[FaultState, Depends(get_faults)]
CatalogueDep = Annotated[ModelCatalogue, Depends(get_catalogue)]
