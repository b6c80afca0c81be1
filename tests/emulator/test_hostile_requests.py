"""Requests no client library would send: every answer is JSON in the API's error shape, never a 500.

Sent over a raw socket, since HTTP libraries resolve dot segments and refuse NUL bytes.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from airflow_batch_provider.emulator.errors import without_paths
from airflow_batch_provider.emulator.middleware import MAX_URL_BYTES
from airflow_batch_provider.emulator.server import EmulatorServer
from tests.support.emulator import api
from tests.support.requests import chat_requests, jsonl_bytes


def port_of(server: EmulatorServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1].split("/")[0])


def raw_request(server: EmulatorServer, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; return the answer's status, headers and body."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head_bytes, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)
    }
    return int(status_line.split()[1]), headers, content


def request(server: EmulatorServer, method: str, target: str, body: bytes = b"", extra: str = "") -> Any:
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: emulator\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}\r\n"
    ).encode()
    return raw_request(server, head, body)


def assert_api_error(answer: Any, status: int) -> dict[str, Any]:
    code, headers, body = answer
    assert code == status, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


HOSTILE_IDS = ["..", ".", "%2e%2e", "%2E%2E", "x%00", "%00", "..%00", "a" * 300, "%2e%2e%2f%2e%2e", "~root"]


@pytest.mark.parametrize("file_id", HOSTILE_IDS)
@pytest.mark.parametrize(
    ("method", "template"),
    [("GET", "/v1/files/{}"), ("DELETE", "/v1/files/{}"), ("GET", "/v1/files/{}/content")],
)
def test_file_ids_that_cannot_exist_get_the_live_404(emulator, file_id, method, template) -> None:
    error = assert_api_error(request(emulator, method, template.format(file_id)), 404)
    assert str(emulator.data_dir) not in json.dumps(error)
    assert emulator.data_dir.exists()
    assert (emulator.data_dir / "emulator.sqlite3").exists()


@pytest.mark.parametrize("batch_id", HOSTILE_IDS)
@pytest.mark.parametrize(
    ("method", "template"), [("GET", "/v1/batches/{}"), ("POST", "/v1/batches/{}/cancel")]
)
def test_batch_ids_that_cannot_exist_get_the_live_404(emulator, batch_id, method, template) -> None:
    assert_api_error(request(emulator, method, template.format(batch_id)), 404)


def test_a_100_kb_url_gets_a_json_414(emulator) -> None:
    error = assert_api_error(request(emulator, "GET", "/v1/batches?after=" + "a" * 100_000), 414)
    assert f"{MAX_URL_BYTES:,}" in error["message"]


def test_a_large_head_is_read_rather_than_refused_as_plain_text(emulator) -> None:
    big = "X-Big: " + "b" * (200 * 1024) + "\r\n"
    code, _, body = request(emulator, "GET", "/v1/batches", extra=big)
    assert code == 200
    assert json.loads(body)["object"] == "list"


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /v1/batches HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ],
)
def test_requests_that_are_not_http_get_a_json_400(emulator, head) -> None:
    assert_api_error(raw_request(emulator, head), 400)


def test_unknown_arguments_of_a_create_are_named(emulator) -> None:
    body = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"}

    one = assert_api_error(
        request(emulator, "POST", "/v1/batches", json.dumps({**body, "foo": 1}).encode()), 400
    )
    two = assert_api_error(
        request(emulator, "POST", "/v1/batches", json.dumps({**body, "foo": 1, "bar": 2}).encode()), 400
    )

    assert one["message"] == "Unrecognized request argument supplied: foo"
    assert two["message"] == "Unrecognized request arguments supplied: foo, bar"


def test_a_batch_the_emulator_fails_does_not_show_its_data_directory(emulator) -> None:
    uploaded = api(
        emulator,
        "POST",
        "/v1/files",
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", jsonl_bytes(chat_requests(2)))},
    )
    stored = emulator.data_dir / "files" / uploaded["id"]
    stored.unlink()
    stored.mkdir()  # reading it fails with an OSError naming the path
    batch = api(
        emulator,
        "POST",
        "/v1/batches",
        json={
            "input_file_id": uploaded["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    deadline = time.monotonic() + 10
    while batch["status"] not in ("failed", "completed") and time.monotonic() < deadline:
        batch = api(emulator, "GET", f"/v1/batches/{batch['id']}")

    assert batch["status"] == "failed"
    (error,) = batch["errors"]["data"]
    assert error["code"] == "server_error"
    assert uploaded["id"] in error["message"]
    assert str(emulator.data_dir) not in json.dumps(batch)
    assert "/tmp" not in json.dumps(batch)


def test_without_paths() -> None:
    from pathlib import Path

    data_dir = Path("/srv/emulator-state")
    assert (
        without_paths("[Errno 21] Is a directory: '/srv/emulator-state/files/file-1'", data_dir)
        == "[Errno 21] Is a directory: 'file-1'"
    )
    assert without_paths("full: /srv/emulator-state", data_dir) == "full: the emulator's data directory"


def test_the_emulator_keeps_idle_connections_longer_than_the_client(make_emulator) -> None:
    from airflow_batch_provider.client.settings import DEFAULT_KEEPALIVE_EXPIRY
    from airflow_batch_provider.emulator.settings import EmulatorSettings

    assert EmulatorSettings().keep_alive_timeout > DEFAULT_KEEPALIVE_EXPIRY
    server = make_emulator(keep_alive_timeout=0.5)
    with httpx.Client(headers={"Authorization": f"Bearer {server.api_key}"}) as client:
        client.get(f"{server.base_url}/batches")
        with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
            sock.sendall(
                b"GET /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server.api_key.encode()
            )
            sock.sendall(b"\r\n\r\n")
            sock.settimeout(5)
            started = time.monotonic()
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            idle_closed_after = time.monotonic() - started
    assert b"200 OK" in received
    assert 0.4 < idle_closed_after < 2.0
