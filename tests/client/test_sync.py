"""The blocking client over real HTTP against a scripted server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest
import python_multipart

from airflow_batch_provider.client import BatchClient, ClientSettings, OpenAIBatchAPIError
from airflow_batch_provider.client.multipart import CHUNK_SIZE, MultipartFileBody
from airflow_batch_provider.models import BatchStatus
from tests.support.scripted_server import Reply, ScriptedServer, api_error, batch_json, file_json

API_KEY = "sk-test-never-print-this-0123456789"


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def make_client(server: ScriptedServer, **fields) -> BatchClient:
    settings = {"name": "connection 'batch_api'", "base_url": server.base_url, "api_key": API_KEY, **fields}
    return BatchClient(ClientSettings.model_validate(settings))


@pytest.fixture
def client(server) -> BatchClient:
    return make_client(server)


def parse_form(request) -> dict[str, tuple[str | None, bytes]]:
    """Parse a recorded multipart body with python-multipart (the parser FastAPI uses)."""
    parts: dict[str, tuple[str | None, bytes]] = {}

    def on_field(field) -> None:
        parts[field.field_name.decode()] = (None, field.value or b"")

    def on_file(file) -> None:
        file.file_object.seek(0)
        parts[file.field_name.decode()] = (file.file_name.decode(), file.file_object.read())

    headers = {"Content-Type": request.headers["content-type"].encode()}
    python_multipart.parse_form(headers, io.BytesIO(request.body), on_field, on_file)
    return parts


def gap(first, second) -> float:
    return second.at - first.at


# -- requests and answers --


def test_get_batch_sends_the_key_and_parses_the_answer(server, client):
    server.script("GET", "/batches/batch_1", Reply(json=batch_json(usage={"input_tokens": 5})))

    batch = client.get_batch("batch_1")

    assert batch.status is BatchStatus.IN_PROGRESS
    assert batch.usage is not None
    assert batch.usage.input_tokens == 5
    (request,) = server.received()
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["user-agent"].startswith("airflow-batch-provider/")


def test_ids_cannot_reach_another_endpoint(server, client):
    server.script("GET", "/batches/a%2F..%2Ffiles", Reply(json=batch_json("a/../files")))

    assert client.get_batch("a/../files").id == "a/../files"


@pytest.mark.parametrize("batch_id", ["..", ".", ""])
def test_dot_ids_are_refused_before_they_reach_another_path(server, client, batch_id):
    for call in (client.get_batch, client.cancel_batch, client.delete_file, client.get_file):
        with pytest.raises(ValueError, match="is not an id"):
            call(batch_id)
    assert server.received() == []


def test_create_batch_sends_every_field(server, client):
    server.script("POST", "/batches", Reply(json=batch_json(status="validating")))

    client.create_batch("file-in", "/v1/embeddings", metadata={"run": "r1"}, output_expires_after=3600)

    body = json.loads(server.received()[0].body)
    token = body["metadata"]["batch_create_token"]
    assert len(token) == 32
    assert body == {
        "input_file_id": "file-in",
        "endpoint": "/v1/embeddings",
        "completion_window": "24h",
        "metadata": {"run": "r1", "batch_create_token": token},
        "output_expires_after": {"anchor": "created_at", "seconds": 3600},
    }


def test_list_batches_follows_every_page(server, client):
    server.script(
        "GET",
        "/batches",
        Reply(json={"data": [batch_json("b3"), batch_json("b2")], "last_id": "b2", "has_more": True}),
        Reply(json={"data": [batch_json("b1")], "last_id": "b1", "has_more": True}),
        Reply(json={"data": [batch_json("b0")], "last_id": "b0", "has_more": False}),
    )

    ids = [batch.id for batch in client.list_batches(limit=2)]

    assert ids == ["b3", "b2", "b1", "b0"]
    assert [r.query.get("after") for r in server.received()] == [None, ["b2"], ["b1"]]
    assert {r.query["limit"][0] for r in server.received()} == {"2"}


def test_get_and_delete_file(server, client):
    server.script("GET", "/files/file-1", Reply(json=file_json()))
    server.script("DELETE", "/files/file-1", Reply(json={"id": "file-1", "object": "file", "deleted": True}))

    assert client.get_file("file-1").filename == "input.jsonl"
    assert client.delete_file("file-1").deleted is True


def test_an_answer_that_is_not_the_model_says_so(server, client):
    server.script("GET", "/batches/b1", Reply(body=b"<html>login</html>"))

    with pytest.raises(OpenAIBatchAPIError, match=r"not a Batch.*Base URL of connection 'batch_api'"):
        client.get_batch("b1")


# -- retries --


def test_429_waits_as_long_as_retry_after_says(server, client):
    server.script(
        "GET",
        "/batches/b1",
        Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"}),
        Reply(json=batch_json("b1")),
    )

    assert client.get_batch("b1").id == "b1"

    first, second = server.received()
    assert gap(first, second) >= 1.0


def test_retry_after_ms_wins_over_retry_after(server, client):
    server.script(
        "GET",
        "/batches/b1",
        Reply(429, headers={"retry-after-ms": "300", "Retry-After": "30"}),
        Reply(json=batch_json("b1")),
    )

    started = time.monotonic()
    client.get_batch("b1")

    first, second = server.received()
    assert gap(first, second) >= 0.3
    assert time.monotonic() - started < 10


def test_retry_after_as_an_http_date(server, client):
    # HTTP dates have whole seconds: two seconds ahead is at least one second's wait.
    server.script(
        "GET",
        "/batches/b1",
        Reply(503, headers={"Retry-After": formatdate(time.time() + 2, usegmt=True)}),
        Reply(json=batch_json("b1")),
    )

    client.get_batch("b1")

    first, second = server.received()
    assert gap(first, second) >= 0.9


def test_a_retry_after_beyond_the_time_budget_fails_at_once(server, client):
    server.script("GET", "/batches/b1", Reply(429, headers={"Retry-After": "3600"}))

    with pytest.raises(OpenAIBatchAPIError, match="asked to wait 3600 s") as caught:
        client.get_batch("b1")

    assert caught.value.status_code == 429
    assert len(server.received()) == 1


def test_500_then_success(server, client):
    server.script("GET", "/batches/b1", api_error(500, "boom", "server_error"), Reply(json=batch_json("b1")))

    assert client.get_batch("b1").id == "b1"
    assert len(server.received()) == 2


def test_400_is_not_retried_and_carries_the_details(server, client):
    server.script(
        "POST",
        "/batches",
        api_error(400, "Invalid value: '/v1/nope'.", param="endpoint", code="invalid_value"),
    )

    with pytest.raises(OpenAIBatchAPIError) as caught:
        client.create_batch("file-in", "/v1/nope")

    error = caught.value
    assert (error.status_code, error.type, error.code, error.param, error.request_id) == (
        400,
        "invalid_request_error",
        "invalid_value",
        "endpoint",
        "req_400",
    )
    assert "Invalid value: '/v1/nope'." in str(error)
    assert len(server.received()) == 1


def test_retries_stop_after_max_retries(server):
    client = make_client(server, max_retries=2)
    server.script("GET", "/batches/b1", api_error(503, "overloaded", "server_error"))

    with pytest.raises(OpenAIBatchAPIError, match="HTTP 503") as caught:
        client.get_batch("b1")

    assert caught.value.status_code == 503
    assert len(server.received()) == 3


def test_x_should_retry_false_is_obeyed(server, client):
    server.script("GET", "/batches/b1", Reply(503, headers={"x-should-retry": "false"}))

    with pytest.raises(OpenAIBatchAPIError):
        client.get_batch("b1")

    assert len(server.received()) == 1


def test_a_timeout_is_retried(server):
    client = make_client(server, timeout=0.3)
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1"), delay=1.5), Reply(json=batch_json("b1")))

    assert client.get_batch("b1").id == "b1"
    assert len(server.received()) == 2


def test_an_unreachable_server_is_retried_then_named():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ClientSettings(
        name="connection 'nowhere'", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1
    )

    with pytest.raises(OpenAIBatchAPIError, match="Connection refused") as caught:
        BatchClient(settings).get_batch("b1")

    assert caught.value.status_code is None
    assert "connection 'nowhere'" in str(caught.value)


# -- messages and secrets --


def test_401_says_which_connection_to_fix_and_never_shows_the_key(server, client, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    server.script(
        "GET",
        "/batches/b1",
        api_error(503, "busy", "server_error"),
        api_error(
            401,
            f"Incorrect API key provided: {API_KEY[:7]}****{API_KEY[-4:]}. And again: {API_KEY}",
            "invalid_request_error",
            code="invalid_api_key",
        ),
    )

    with pytest.raises(OpenAIBatchAPIError) as caught:
        client.get_batch("b1")

    assert "Check the API key of connection 'batch_api'" in str(caught.value)
    captured = capsys.readouterr()
    seen = "\n".join(
        [
            str(caught.value),
            repr(caught.value),
            caplog.text,
            captured.out,
            captured.err,
            repr(client.settings),
        ]
    )
    assert "retry 1 of 5" in seen.lower()  # the retry was logged...
    assert API_KEY not in seen  # ...and nothing carried the key
    assert API_KEY[-12:] not in seen


def test_404_points_at_the_base_url(server, client):
    with pytest.raises(OpenAIBatchAPIError, match="Base URL of connection 'batch_api'") as caught:
        client.get_batch("missing")
    assert caught.value.status_code == 404


# -- Azure --


def test_azure_sends_api_key_header_and_api_version(server, tmp_path):
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1")))
    server.script("POST", "/files", Reply(json=file_json()))
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")

    client = make_client(server, api_type="azure", api_version="2024-10-21")
    client.get_batch("b1")
    client.upload_file(source)

    for request in server.received():
        assert request.headers["api-key"] == API_KEY
        assert "authorization" not in request.headers
        assert request.query["api-version"] == ["2024-10-21"]


# -- upload --


def test_upload_streams_a_path_with_content_length(server, client, tmp_path):
    server.script("POST", "/files", Reply(json=file_json(filename="requests.jsonl")))
    source = tmp_path / "requests.jsonl"
    source.write_bytes(b'{"custom_id": "a"}\n' * 1000)

    uploaded = client.upload_file(source)

    assert uploaded.id == "file-1"
    (request,) = server.received()
    assert "transfer-encoding" not in request.headers
    assert int(request.headers["content-length"]) == len(request.body)
    assert parse_form(request) == {
        "purpose": (None, b"batch"),
        "file": ("requests.jsonl", source.read_bytes()),
    }


def test_the_multipart_body_reads_the_file_as_it_is_sent():
    content = os.urandom(3 * CHUNK_SIZE + 5)
    stream = io.BytesIO(content)
    body = MultipartFileBody({"purpose": "batch"}, stream, len(content), "big.jsonl")

    chunks = iter(body)
    sent = [next(chunks), next(chunks)]  # the form head, then the first piece of the file
    assert stream.tell() == CHUNK_SIZE  # nothing read ahead

    sent.extend(chunks)
    assert max(len(chunk) for chunk in sent) <= CHUNK_SIZE
    assert len(body) == len(b"".join(sent))


def test_upload_of_a_file_object_is_resent_whole_after_a_500(server, client):
    server.script("POST", "/files", api_error(500, "boom", "server_error"), Reply(json=file_json()))
    content = b'{"custom_id": "a"}\n' * 100
    stream = io.BytesIO(b"HEADER-NOT-SENT" + content)
    stream.seek(len(b"HEADER-NOT-SENT"))

    client.upload_file(stream, filename='odd "name".jsonl')

    first, second = server.received()
    assert parse_form(first) == parse_form(second)
    assert parse_form(second)["file"] == ("odd %22name%22.jsonl", content)


def test_upload_of_a_pipe_goes_out_chunked(server, client):
    server.script("POST", "/files", Reply(json=file_json()))
    content = b'{"custom_id": "a"}\n' * 50_000
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_end, content), os.close(write_end)))
    writer.start()

    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        client.upload_file(pipe, purpose="batch", filename="piped.jsonl")
    writer.join()

    (request,) = server.received()
    assert request.headers["transfer-encoding"] == "chunked"
    assert parse_form(request)["file"] == ("piped.jsonl", content)


# -- download --


def test_download_writes_the_whole_file(server, client, tmp_path):
    content = b'{"custom_id": "a"}\n' * 5000
    server.script("GET", "/files/file-out", Reply(json=file_json("file-out", bytes=len(content))))
    server.script("GET", "/files/file-out/content", Reply(body=content))

    written = client.download_file("file-out", tmp_path)

    assert written == tmp_path / "file-out.jsonl"
    assert written.read_bytes() == content
    assert os.listdir(tmp_path) == ["file-out.jsonl"]


def test_a_download_cut_mid_file_leaves_nothing_behind(server, tmp_path):
    client = make_client(server, max_retries=1)
    dest = tmp_path / "results.jsonl"
    dest.write_bytes(b"previous results\n")
    server.script("GET", "/files/file-out/content", Reply(body=b"x" * 100_000, cut_after=30_000))

    with pytest.raises(OpenAIBatchAPIError, match="GET /files/file-out/content"):
        client.download_file("file-out", dest, expected_bytes=100_000)

    assert dest.read_bytes() == b"previous results\n"
    assert os.listdir(tmp_path) == ["results.jsonl"]
    assert len(server.received()) == 2


def test_a_download_cut_once_is_retried_whole(server, client, tmp_path):
    content = bytes(range(256)) * 1000
    server.script(
        "GET",
        "/files/file-out/content",
        Reply(body=content, cut_after=1000),
        Reply(body=content),
    )

    server.script("GET", "/files/file-out", Reply(json=file_json("file-out", bytes=len(content))))

    written = client.download_file("file-out", tmp_path / "out.jsonl")

    assert written.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl"]


def test_a_failed_download_leaves_no_temporary_file(server, client, tmp_path):
    with pytest.raises(OpenAIBatchAPIError, match="404"):
        client.download_file("gone", tmp_path / "out.jsonl")
    assert list(Path(tmp_path).iterdir()) == []


def test_upload_of_a_path_under_another_name(server, client, tmp_path):
    server.script("POST", "/files", Reply(json=file_json()))
    source = tmp_path / "tmp123"
    source.write_bytes(b"{}\n")

    client.upload_file(source, purpose="batch", filename="renamed.jsonl")

    assert parse_form(server.received()[0])["file"] == ("renamed.jsonl", b"{}\n")


def test_a_download_into_a_missing_directory_says_so(server, client, tmp_path):
    with pytest.raises(FileNotFoundError, match="no directory"):
        client.download_file("file-out", tmp_path / "missing" / "out.jsonl")
    assert server.received() == []
