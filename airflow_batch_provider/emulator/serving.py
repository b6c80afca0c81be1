"""How uvicorn serves the emulator: keep-alive, limits, and JSON even for requests it cannot read.

uvicorn answers a request it cannot parse (a malformed request line, a head past h11's buffer)
with a plain-text 400 before the application sees it. :class:`JSONErrorsH11Protocol` gives that
answer in the API's error shape; :func:`uvicorn_config` uses it, and lets heads up to
:data:`MAX_REQUEST_HEAD_BYTES` through so that the application answers long URLs itself
(414, see :class:`~airflow_batch_provider.emulator.middleware.URLLengthMiddleware`).
"""

from __future__ import annotations

import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from airflow_batch_provider.emulator.errors import APIError
from airflow_batch_provider.emulator.settings import EmulatorSettings

MAX_REQUEST_HEAD_BYTES = 1024 * 1024
"""Largest request line and headers uvicorn reads; a larger head gets the JSON 400 below."""
UNREADABLE_REQUEST = "The request could not be read as HTTP/1.1 (malformed, or its head is over 1 MiB)."


class JSONErrorsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering an unreadable request in the API's error shape."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(APIError(400, UNREADABLE_REQUEST).body()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def uvicorn_config(app: Any, settings: EmulatorSettings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of the emulator ``app``.

    :param settings: the emulator's settings (its keep-alive timeout).
    :param options: other ``uvicorn.Config`` arguments (log level, access log, ...).
    """
    return uvicorn.Config(
        app,
        http=JSONErrorsH11Protocol,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        # uvicorn types it int, but uses it as a delay: fractions work (tests use them).
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
        lifespan="on",
        **options,
    )
