"""A scripted HTTP server on 127.0.0.1 for the hook's fault tests.

Each route answers with the replies scripted for it, in order; the last one repeats.
Every request is recorded (time, connection, headers, body) so tests can check what
the hook sent and when, e.g. that a retry waited as long as ``Retry-After`` asked.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """One scripted answer.

    :param status: the HTTP status.
    :param json: a body to send as JSON.
    :param body: raw body bytes (instead of ``json``).
    :param headers: extra headers.
    :param cut_after: announce the whole body's length, send this many bytes, then drop
        the connection.
    :param delay: seconds to wait before answering (to trip the client's timeout).
    """

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    delay: float = 0.0

    def payload(self) -> bytes:
        if self.body is not None:
            return self.body
        return b"" if self.json is None else json.dumps(self.json).encode()


def api_error(status: int, message: str, type: str = "invalid_request_error", **extra: Any) -> Reply:
    """A reply in the live API's error shape, with an ``x-request-id``."""
    headers = {"x-request-id": f"req_{status}", **extra.pop("headers", {})}
    return Reply(status, {"error": {"message": message, "type": type, **extra}}, headers=headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of concurrent polls must not overflow the listen backlog


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client_port: int
    at: float


class ScriptedServer:
    """A threaded HTTP/1.1 server answering from scripts; use as a context manager.

    ``base_url`` ends in ``/v1``; routes are given without it (``"GET", "/batches/b1"``).
    An unscripted route answers 404 in the API's error shape.
    ``max_in_flight`` is the most requests it was answering at once.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._scripts: dict[tuple[str, str], deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer ``method path`` with ``replies`` in order; the last one repeats."""
        with self._lock:
            self._scripts[(method, path)] = deque(replies)

    def received(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        """The requests received so far, optionally only those of one route."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next_reply(self, method: str, path: str) -> Reply:
        with self._lock:
            replies = self._scripts.get((method, path))
            if not replies:
                return api_error(404, f"No route scripted for {method} {path}")
            return replies.popleft() if len(replies) > 1 else replies[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                url = urlsplit(self.path)
                path = url.path.removeprefix("/v1")
                body = self._read_body()
                with server._lock:
                    server.requests.append(
                        Recorded(
                            self.command,
                            path,
                            parse_qs(url.query),
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            self.client_address[1],
                            time.monotonic(),
                        )
                    )
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._reply(server._next_reply(self.command, path))
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _reply(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.payload()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if reply.cut_after is None:
                    self.wfile.write(payload)
                    return
                self.wfile.write(payload[: reply.cut_after])
                self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _handle

        return Handler


def batch_json(batch_id: str = "batch_1", status: str = "in_progress", **fields: Any) -> dict[str, Any]:
    """A batch object as the API returns it."""
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": status,
        "created_at": 1_700_000_000,
        "request_counts": {"total": 10, "completed": 3, "failed": 0},
        **fields,
    }


def file_json(file_id: str = "file-1", **fields: Any) -> dict[str, Any]:
    """A file object as the API returns it."""
    return {
        "id": file_id,
        "object": "file",
        "bytes": 10,
        "created_at": 1_700_000_000,
        "filename": "input.jsonl",
        "purpose": "batch",
        **fields,
    }
