"""JSON responses built from stored documents without a pydantic round trip."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from airflow_batch_provider.emulator.documents import Document


def json_response(content: Document | str, status_code: int = 200) -> Response:
    """A JSON response from a document, or from one already serialized.

    :param content: the document, or its JSON text (answered as it is).
    :param status_code: the HTTP status (default 200).
    """
    body = content if isinstance(content, str) else json.dumps(content, separators=(",", ":"))
    return Response(body, status_code=status_code, media_type="application/json")


def list_response(data: list[Document], has_more: bool) -> Response:
    """A page of a list endpoint: ``{"object": "list", "data", "first_id", "last_id", "has_more"}``."""
    page: dict[str, Any] = {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
    return json_response(page)
