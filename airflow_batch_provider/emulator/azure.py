"""Azure OpenAI's path shapes, answered as the OpenAI ones.

Azure OpenAI serves the same Files, Batches and inference APIs under other paths, with the key
in an ``api-key`` header (which :class:`~airflow_batch_provider.emulator.middleware.APIKeyMiddleware`
accepts):

- ``/openai/v1/<path>``: Azure's v1 API; the emulator answers it as ``/v1/<path>``. An
  ``api-version`` query parameter may come along (``preview``) and is ignored.
- ``/openai/<path>`` (``/openai/files``, ``/openai/batches/{id}``, ...): the older API, which
  needs an ``api-version`` query parameter; any value is accepted and the path answered as
  ``/v1/<path>``. Without one the emulator answers 400 ``missing_required_parameter``
  (param ``api-version``), its own wording of Azure's refusal.

Azure's per-deployment inference paths (``/openai/deployments/{name}/chat/completions``) are not
served.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from airflow_batch_provider.emulator.errors import APIError

AZURE_PREFIX = "/openai"
API_VERSION = "api-version"
MISSING_API_VERSION = (
    "Missing required query parameter: 'api-version'. Azure OpenAI's /openai/... paths need it "
    "(e.g. ?api-version=2024-10-21); its /openai/v1/... paths do not."
)


def openai_path(azure_path: str) -> str:
    """The OpenAI path answering an Azure one: ``/openai/v1/files`` and ``/openai/files`` → ``/v1/files``."""
    rest = azure_path.removeprefix(AZURE_PREFIX)
    return rest if rest.startswith("/v1/") else f"/v1{rest}"


class AzurePathsMiddleware:
    """Route Azure OpenAI's paths to the emulator's OpenAI routes (pure ASGI; see the module).

    :param app: the application behind it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(f"{AZURE_PREFIX}/"):
            await self.app(scope, receive, send)
            return
        if not path.startswith(f"{AZURE_PREFIX}/v1/"):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if not query.get(API_VERSION):
                error = APIError(
                    400, MISSING_API_VERSION, param=API_VERSION, code="missing_required_parameter"
                )
                # This answer comes before the middleware that marks the others: mark it here.
                response = error.response(headers={"x-request-id": f"req_{secrets.token_hex(16)}"})
                await response(scope, receive, send)
                return
        target = openai_path(path)
        await self.app({**scope, "path": target, "raw_path": target.encode()}, receive, send)
