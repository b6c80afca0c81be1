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
from collections.abc import Callable
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
    :param cut_after: send this many bytes of the body, then drop the connection.
    :param delay: seconds to wait before answering (to trip the client's timeout).
    :param framing: ``"length"`` announces the body's length (``Content-Length``);
        ``"close"`` announces nothing and ends the body by closing the connection.
    :param trickle: seconds to wait between two pieces of the answer (0: send at once).
    :param trickle_chunk: bytes in each trickled piece (default 1).
    :param trickle_head: trickle the status line and headers too, not only the body.
    :param no_answer: read the request, then close the connection without a byte of answer
        (what a server closing an idle kept-alive connection looks like to the client).
    """

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    delay: float = 0.0
    framing: str = "length"
    trickle: float = 0.0
    trickle_chunk: int = 1
    trickle_head: bool = False
    no_answer: bool = False

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
        self._scripts: dict[tuple[str, str], deque[Reply | Callable[[Recorded], Reply]]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url_root(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.url_root}/v1"

    def script(self, method: str, path: str, *replies: Reply | Callable[[Recorded], Reply]) -> None:
        """Answer ``method path`` with ``replies`` in order; the last one repeats.

        A reply may be a function of the request being answered, returning the reply.
        """
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

    def _next_reply(self, method: str, path: str, request: Recorded) -> Reply:
        with self._lock:
            replies = self._scripts.get((method, path))
            if not replies:
                return api_error(404, f"No route scripted for {method} {path}")
            reply = replies.popleft() if len(replies) > 1 else replies[0]
        return reply if isinstance(reply, Reply) else reply(request)

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
                recorded = Recorded(
                    self.command,
                    path,
                    parse_qs(url.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    self.client_address[1],
                    time.monotonic(),
                )
                with server._lock:
                    server.requests.append(recorded)
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._reply(server._next_reply(self.command, path, recorded))
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _reply(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.no_answer:
                    self.close_connection = True
                    return
                payload = reply.payload()
                head = [f"HTTP/1.1 {reply.status} Scripted", "Content-Type: application/json"]
                if reply.framing == "length":
                    head.append(f"Content-Length: {len(payload)}")
                else:
                    head.append("Connection: close")
                head += [f"{name}: {value}" for name, value in reply.headers.items()]
                head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode()
                body = payload if reply.cut_after is None else payload[: reply.cut_after]
                try:
                    self._write(head_bytes, reply.trickle if reply.trickle_head else 0.0, reply.trickle_chunk)
                    self._write(body, reply.trickle, reply.trickle_chunk)
                except OSError:  # the client gave up and closed its end
                    pass
                if reply.cut_after is not None or reply.framing != "length":
                    self.close_connection = True

            def _write(self, data: bytes, trickle: float, chunk: int) -> None:
                if not trickle:
                    self.wfile.write(data)
                    self.wfile.flush()
                    return
                for position in range(0, len(data), chunk):
                    self.wfile.write(data[position : position + chunk])
                    self.wfile.flush()
                    time.sleep(trickle)

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
