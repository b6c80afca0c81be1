"""Errors in the live API's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send


class APIError(Exception):
    """An error answered to the client exactly as the live API would.

    :param status_code: the HTTP status.
    :param message: the human-readable ``error.message``.
    :param type: ``error.type``; ``invalid_request_error`` unless given.
    :param param: ``error.param``, the request parameter at fault, if any.
    :param code: ``error.code``, a machine-readable code, if any.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        """The error as a response."""
        return JSONResponse(self.body(), status_code=self.status_code, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer with the error, as an ASGI application (for middleware)."""
        await self.response()(scope, receive, send)


INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """400 ``invalid_request_error`` with ``message``, naming ``param`` and ``code`` when given."""
    return APIError(400, message, param=param, code=code)


def wrong_type(param: str, expected: str, value: object) -> APIError:
    """400 ``invalid_type``: ``param`` should be ``expected`` ("an integer") but is not."""
    return invalid(
        f"Invalid type for '{param}': expected {expected}, but got {json_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, value: object, supported: tuple[str, ...]) -> APIError:
    """400 ``invalid_value``: ``value`` is not one of ``supported``."""
    choices = ", ".join(f"'{choice}'" for choice in supported)
    return APIError(
        400,
        f"Invalid value: '{value}'. Supported values are: {choices}.",
        param=param,
        code="invalid_value",
    )


def missing_parameter(param: str) -> APIError:
    """400 ``missing_required_parameter``: the request lacks ``param``."""
    return APIError(
        400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def not_found(message: str, param: str | None = None) -> APIError:
    """404 for an id the emulator does not know."""
    return APIError(404, message, param=param)


def batch_not_found(batch_id: str) -> APIError:
    """404 for a batch id the emulator does not know."""
    return not_found(f"No batch found with id '{batch_id}'.")


def file_not_found(file_id: str) -> APIError:
    """404 for a file id the emulator does not know."""
    return not_found(f"No such File object: {file_id}", param="id")


def model_not_found(model_id: str) -> APIError:
    """404 of ``GET /v1/models/{id}`` for a model the emulator does not offer."""
    return APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")


def model_unavailable(model: str) -> APIError:
    """404 of an endpoint answering at once (``POST /v1/chat/completions``) for a model not offered."""
    return APIError(
        404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
    )


_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def without_paths(text: str, data_dir: Path) -> str:
    """``text`` with the emulator's data directory, and any absolute path below it, left out.

    What a client reads (an error message, a batch's errors) never shows where the emulator keeps
    its state: a file under it is named by its own name only.
    """
    for root in {str(data_dir), str(data_dir.resolve())}:
        text = re.sub(re.escape(root.rstrip("/")) + r"/(?:[^/\s'\"]+/)*", "", text)
        text = text.replace(root, "the emulator's data directory")
    return text


def status_error(status_code: int) -> APIError:
    """The live API's error for an HTTP error status, as the emulator forces or injects it.

    :param status_code: an HTTP error status (400-599); one the live API is not known to send
        gets a generic message (``server_error`` for 5xx, ``invalid_request_error`` below).
    """
    default_type = "server_error" if status_code >= 500 else "invalid_request_error"
    message, type_, code = _STATUS_ERRORS.get(
        status_code, (f"The request failed with status {status_code}.", default_type, None)
    )
    return APIError(status_code, message, type=type_, code=code)


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return exc.response()


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Answer FastAPI's request validation errors with the live API's 400, not FastAPI's 422."""
    assert isinstance(exc, RequestValidationError)
    return _from_validation_errors(exc.errors()).response()


async def handle_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Any other failure: the live API's 500, never a traceback or a path of the emulator's."""
    return status_error(500).response()


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Unknown routes and wrong methods, as the live API words them (404 for both)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):
        return APIError(404, f"Invalid URL ({request.method} {request.url.path})").response()
    return APIError(exc.status_code, str(exc.detail)).response(headers=exc.headers)


def json_type_name(value: object) -> str:
    """How the live API names the JSON type of ``value`` in messages ("an integer", "a string")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_attributes_type": "an object",
}


def _from_validation_errors(errors: Any) -> APIError:
    unknown = [str(error["loc"][-1]) for error in errors if error.get("type") == "extra_forbidden"]
    if unknown:
        # The live API's words for arguments it does not know.
        plural = "s" if len(unknown) > 1 else ""
        return APIError(400, f"Unrecognized request argument{plural} supplied: {', '.join(unknown)}")
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(location) or None
    kind = first.get("type", "")
    if kind == "missing":
        return APIError(
            400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    if kind == "json_invalid" or (param is None and isinstance(first.get("input"), (str, bytes))):
        # A body that is not JSON (FastAPI passes it through as text without a JSON content type).
        return APIError(400, INVALID_JSON)
    where = f"'{param}'" if param else "the request body"
    if kind in _EXPECTED:
        return APIError(
            400,
            f"Invalid type for {where}: expected {_EXPECTED[kind]}, "
            f"but got {json_type_name(first.get('input'))} instead.",
            param=param,
            code="invalid_type",
        )
    return APIError(
        400,
        f"Invalid value for {where}: {first.get('msg', 'invalid value')}.",
        param=param,
        code="invalid_value",
    )
