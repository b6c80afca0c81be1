"""Pure-ASGI middleware: request ids on every response, the API key check, and the URL length limit."""

from __future__ import annotations

import base64
import binascii
import json
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_batch_provider.emulator.errors import APIError

MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
WRONG_KEY = "Incorrect API key provided. Check the key the emulator was started with (--api-key)."
PAGE_REALM = b'Basic realm="OpenAI Batch API emulator", charset="UTF-8"'


class RequestIdMiddleware:
    """Give every response, errors included, an ``x-request-id`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{secrets.token_hex(16)}".encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class APIKeyMiddleware:
    """Answer 401 unless the request carries ``api_key``.

    The key is accepted as ``Authorization: Bearer <key>`` (OpenAI), as an ``api-key``
    header (Azure OpenAI), and, for the HTML pages a browser opens, as the password of
    HTTP Basic auth (any user name).

    :param app: the application behind the check.
    :param api_key: the one key that is let through.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = self._given_key(scope)
        if given is not None and secrets.compare_digest(given, self._key):
            await self.app(scope, receive, send)
            return
        error = APIError(
            401,
            MISSING_KEY if given is None else WRONG_KEY,
            code=None if given is None else "invalid_api_key",
        )
        headers = [(b"content-type", b"application/json")]
        if not scope["path"].startswith(("/v1/", "/openai/")):
            headers.append((b"www-authenticate", PAGE_REALM))  # let a browser ask for the key
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(error.body()).encode()})

    @staticmethod
    def _given_key(scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return credentials.strip()
                if scheme.lower() == b"basic":
                    try:
                        return base64.b64decode(credentials.strip(), validate=True).partition(b":")[2]
                    except (binascii.Error, ValueError):
                        return b""
                return b""
            if name == b"api-key":
                return value.strip()
        return None


MAX_URL_BYTES = 16 * 1024
"""Longest path and query string the emulator reads; longer URLs get a JSON 414."""


class URLLengthMiddleware:
    """Answer 414 in the API's error shape for a URL longer than :data:`MAX_URL_BYTES`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("raw_path") or scope["path"].encode()
            length = len(path) + len(scope.get("query_string", b""))
            if length > MAX_URL_BYTES:
                message = (
                    f"The request URL is {length:,} bytes long; the most it may be is {MAX_URL_BYTES:,}."
                )
                await APIError(414, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)
