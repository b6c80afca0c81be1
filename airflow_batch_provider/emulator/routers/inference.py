"""The batch endpoints answered at once, so the emulator is also a plain OpenAI-compatible server.

``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/completions``, ``/v1/embeddings`` and
``/v1/moderations`` answer with the same
:class:`~airflow_batch_provider.emulator.executors.Executor` that executes batches, so a request
sent directly gets exactly the body its batch line would get. Chaining two emulators
(``--upstream`` of one pointing at the other) exercises the upstream mode. A model the catalogue
does not offer gets the live 404 ``model_not_found`` (unless models are not checked).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from airflow_batch_provider.emulator.dependencies import get_catalogue, get_executor
from airflow_batch_provider.emulator.errors import INVALID_JSON, APIError, model_unavailable
from airflow_batch_provider.rules import SUPPORTED_ENDPOINTS

router = APIRouter(tags=["inference"])


def _answerer(endpoint: str) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The route answering POST ``endpoint`` with the app's executor."""

    async def answer(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return APIError(400, INVALID_JSON).response()
        if isinstance(body, dict) and body.get("stream"):
            message = "The emulator does not stream responses; leave 'stream' unset."
            return APIError(400, message, param="stream", code="unsupported_value").response()
        offered = get_catalogue(request).offered(endpoint)
        model = body.get("model") if isinstance(body, dict) else None
        if offered is not None and isinstance(model, str) and model and model not in offered:
            return model_unavailable(model).response()
        execution = await get_executor(request).execute(endpoint, body)
        return JSONResponse(execution.body, status_code=execution.status_code)

    return answer


for _endpoint in SUPPORTED_ENDPOINTS:
    router.add_api_route(
        _endpoint,
        _answerer(_endpoint),
        methods=["POST"],
        summary=f"Answer POST {_endpoint} at once",
        response_class=JSONResponse,
    )
