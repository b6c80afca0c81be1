"""Redirects are never followed, on either path: no credential reaches another origin.

Two scripted servers on 127.0.0.1: the configured one answers with a redirect to the other,
named ``localhost`` (another origin for the same machine). The other must receive nothing.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_batch_provider.client import AsyncBatchClient, BatchClient, ClientSettings, OpenAIBatchAPIError
from tests.support.scripted_server import Reply, ScriptedServer, batch_json, file_json

API_KEY = "sk-redirect-secret-0123456789abcdef"
REDIRECTS = [301, 302, 307, 308]


@pytest.fixture
def origin() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def elsewhere() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def settings_for(server: ScriptedServer, api_type: str) -> ClientSettings:
    return ClientSettings(
        name="connection 'moved'",
        base_url=server.base_url,
        api_key=API_KEY,
        api_type=api_type,
        organization="org-secret",
        project="proj-secret",
        max_retries=2,
    )


def upload(client: BatchClient) -> Any:
    return client.upload_file(io.BytesIO(b'{"a": 1}\n'), filename="in.jsonl")


def download(client: BatchClient, tmp_path: Any) -> Any:
    return client.download_file("file-1", tmp_path, expected_bytes=9)


# (name, method, path the redirect answers, call)
SYNC_CALLS: list[tuple[str, str, str, Callable[[BatchClient, Any], Any]]] = [
    ("get_batch", "GET", "/batches/b1", lambda client, _: client.get_batch("b1")),
    ("create_batch", "POST", "/batches", lambda client, _: client.create_batch("file-1", "/v1/embeddings")),
    ("cancel_batch", "POST", "/batches/b1/cancel", lambda client, _: client.cancel_batch("b1")),
    ("list_batches", "GET", "/batches", lambda client, _: list(client.list_batches())),
    ("upload_file", "POST", "/files", lambda client, _: upload(client)),
    ("download_file", "GET", "/files/file-1/content", download),
    ("delete_file", "DELETE", "/files/file-1", lambda client, _: client.delete_file("file-1")),
]


def redirect_to(elsewhere: ScriptedServer, path: str, status: int) -> tuple[Reply, str]:
    """A redirect to ``path`` on the other server, named by another host name; and its base URL."""
    base = elsewhere.base_url.replace("127.0.0.1", "localhost")
    return Reply(status, headers={"Location": f"{base}{path}?api-key={API_KEY}"}), base


def assert_refused(error: OpenAIBatchAPIError, status: int, base: str) -> None:
    text = str(error)
    assert error.status_code == status
    assert "redirected" in text
    assert "another origin" in text
    assert f"Set the Base URL of connection 'moved' to {base} if that is right" in text
    assert API_KEY not in text


@pytest.mark.parametrize("api_type", ["openai", "azure"])
@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize(("name", "method", "path", "call"), SYNC_CALLS, ids=[c[0] for c in SYNC_CALLS])
def test_the_sync_path_follows_no_redirect(
    origin, elsewhere, tmp_path, api_type, status, name, method, path, call
) -> None:
    reply, base = redirect_to(elsewhere, path, status)
    origin.script(method, path, reply)
    elsewhere.script(method, path, Reply(json=batch_json("b1")))
    client = BatchClient(settings_for(origin, api_type))

    with pytest.raises(OpenAIBatchAPIError) as caught:
        call(client, tmp_path)

    assert_refused(caught.value, status, base)
    assert elsewhere.received() == []
    assert len(origin.received(method, path)) == 1  # not retried
    assert list(tmp_path.iterdir()) == []


ASYNC_CALLS = [
    ("get_batch", "GET", "/batches/b1", lambda client: client.get_batch("b1")),
    ("cancel_batch", "POST", "/batches/b1/cancel", lambda client: client.cancel_batch("b1")),
    ("get_file", "GET", "/files/file-1", lambda client: client.get_file("file-1")),
]


@pytest.mark.parametrize("api_type", ["openai", "azure"])
@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize(("name", "method", "path", "call"), ASYNC_CALLS, ids=[c[0] for c in ASYNC_CALLS])
def test_the_async_path_follows_no_redirect(origin, elsewhere, api_type, status, name, method, path, call):
    reply, base = redirect_to(elsewhere, path, status)
    origin.script(method, path, reply)
    elsewhere.script(method, path, Reply(json=file_json("file-1")))
    client = AsyncBatchClient(settings_for(origin, api_type))

    with pytest.raises(OpenAIBatchAPIError) as caught:
        asyncio.run(call(client))

    assert_refused(caught.value, status, base)
    assert elsewhere.received() == []
    assert len(origin.received(method, path)) == 1


def test_a_redirect_on_the_same_origin_is_named_too(origin) -> None:
    origin.script("GET", "/batches/b1", Reply(308, headers={"Location": "/v2/batches/b1"}))
    client = BatchClient(settings_for(origin, "openai"))

    with pytest.raises(OpenAIBatchAPIError) as caught:
        client.get_batch("b1")

    assert "another origin" not in str(caught.value)
    assert f"to {origin.url_root}/v2 if that is right" in str(caught.value)


def test_a_redirect_without_location_says_so(origin) -> None:
    origin.script("GET", "/batches/b1", Reply(302))

    with pytest.raises(OpenAIBatchAPIError, match="no Location header"):
        BatchClient(settings_for(origin, "openai")).get_batch("b1")


def test_the_session_itself_holds_no_secret(origin) -> None:
    """Whoever borrows the session for a request of their own sends no key with it."""
    session = BatchClient(settings_for(origin, "azure")).session

    assert set(session.headers) == {"User-Agent", "Accept-Encoding", "Accept", "Connection"}
