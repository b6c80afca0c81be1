"""Errors in the live API's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


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


def invalid_value(param: str, value: object, supported: tuple[str, ...]) -> APIError:
    """400 ``invalid_value``: ``value`` is not one of ``supported``."""
    choices = ", ".join(f"'{choice}'" for choice in supported)
    return APIError(
        400,
        f"Invalid value: '{value}'. Supported values are: {choices}.",
        param=param,
        code="invalid_value",
    )


def not_found(message: str, param: str | None = None) -> APIError:
    """404 for an id the emulator does not know."""
    return APIError(404, message, param=param)


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return exc.response()


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Answer FastAPI's request validation errors with the live API's 400, not FastAPI's 422."""
    assert isinstance(exc, RequestValidationError)
    return _from_validation_errors(exc.errors()).response()


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Unknown routes and wrong methods, as the live API words them."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):
        message = f"Invalid URL ({request.method} {request.url.path})"
    else:
        message = str(exc.detail)
    return APIError(exc.status_code, message).response(headers=exc.headers)


def _from_validation_errors(errors: Any) -> APIError:
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(location) or None
    kind = first.get("type", "")
    if kind == "missing":
        return APIError(
            400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    if kind == "json_invalid":
        return APIError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
            "not valid JSON.)",
        )
    if kind.endswith("_type") or kind in ("model_attributes_type", "dict_type"):
        return APIError(
            400,
            f"Invalid type for '{param}': {first.get('msg', 'wrong type').lower()}.",
            param=param,
            code="invalid_type",
        )
    return APIError(
        400,
        f"Invalid value for '{param}': {first.get('msg', 'invalid value')}.",
        param=param,
        code="invalid_value",
    )
