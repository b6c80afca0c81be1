"""``/v1/models``: the models the emulator offers, in the live shapes.

In the upstream mode both routes relay to the upstream server, which decides what exists.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from airflow_batch_provider.emulator.dependencies import CatalogueDep, ExecutorDep
from airflow_batch_provider.emulator.errors import model_not_found
from airflow_batch_provider.emulator.executors import UpstreamExecutor
from airflow_batch_provider.emulator.responses import json_response

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
async def list_models(catalogue: CatalogueDep, executor: ExecutorDep) -> Response:
    if isinstance(executor, UpstreamExecutor):
        return await _relay(executor, "/v1/models")
    return json_response({"object": "list", "data": [model.document() for model in catalogue]})


# ``:path``: names of other servers' models may hold a slash (``meta-llama/Llama-3.1-8B``).
@router.get("/{model_id:path}")
async def retrieve_model(model_id: str, catalogue: CatalogueDep, executor: ExecutorDep) -> Response:
    if isinstance(executor, UpstreamExecutor):
        return await _relay(executor, f"/v1/models/{model_id}")
    model = catalogue.get(model_id)
    if model is None:
        raise model_not_found(model_id)
    return json_response(model.document())


async def _relay(executor: UpstreamExecutor, url: str) -> Response:
    execution = await executor.fetch(url)
    return JSONResponse(execution.body, status_code=execution.status_code)
