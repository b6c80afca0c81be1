"""Downloads land inside the directory given, and only whole: checked against the file's size."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_batch_provider.client import BatchClient, ClientSettings, OpenAIBatchAPIError
from airflow_batch_provider.client.protocol import segment
from tests.support.scripted_server import Reply, ScriptedServer, file_json

CONTENT = b'{"custom_id": "a", "response": {"status_code": 200, "body": {}}}\n' * 2_000


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def make_client(server: ScriptedServer, **fields) -> BatchClient:
    return BatchClient(ClientSettings(base_url=server.base_url, api_key="sk-download-0123", **fields))


def serve(server: ScriptedServer, file_id: str, *content: Reply, size: int | None = len(CONTENT)) -> None:
    path = f"/files/{segment(file_id)}"
    server.script("GET", path, Reply(json=file_json(file_id, bytes=size)))
    server.script("GET", f"{path}/content", *content)


def every_file(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize(
    "file_id",
    ["../../escaped", "/etc/passwd-copy", "a/../../b", "..\\..\\win", "x\x00y", "file-\n-1", "..."],
)
def test_no_file_id_places_a_file_outside_the_directory(server, tmp_path, file_id) -> None:
    directory = tmp_path / "inside" / "results"
    directory.mkdir(parents=True)
    serve(server, file_id, Reply(body=CONTENT))

    written = make_client(server).download_file(file_id, directory)

    assert written.parent == directory
    assert written.name.endswith(".jsonl")
    assert every_file(tmp_path) == [written]
    assert written.read_bytes() == CONTENT


@pytest.mark.parametrize("file_id", ["..", ".", ""])
def test_ids_naming_a_path_are_refused(server, tmp_path, file_id) -> None:
    with pytest.raises(ValueError, match="is not an id"):
        make_client(server).download_file(file_id, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert server.received() == []


def test_a_close_framed_download_cut_halfway_is_not_a_file(server, tmp_path) -> None:
    dest = tmp_path / "out.jsonl"
    dest.write_bytes(b"previous\n")
    serve(server, "f1", Reply(body=CONTENT, framing="close", cut_after=len(CONTENT) // 2))

    with pytest.raises(OpenAIBatchAPIError, match=f"brought {len(CONTENT) // 2} bytes, but the file has"):
        make_client(server, max_retries=1).download_file("f1", dest)

    assert dest.read_bytes() == b"previous\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]
    assert len(server.received("GET", "/files/f1/content")) == 2  # retried, as a transient failure


def test_a_close_framed_download_cut_once_is_retried_whole(server, tmp_path) -> None:
    serve(
        server,
        "f1",
        Reply(body=CONTENT, framing="close", cut_after=1000),
        Reply(body=CONTENT, framing="close"),
    )

    written = make_client(server).download_file("f1", tmp_path)

    assert written.read_bytes() == CONTENT


def test_the_size_the_caller_gives_saves_the_metadata_request(server, tmp_path) -> None:
    server.script("GET", "/files/f1/content", Reply(body=CONTENT, framing="close"))

    make_client(server).download_file("f1", tmp_path, expected_bytes=len(CONTENT))

    assert [r.path for r in server.received()] == ["/files/f1/content"]


def test_without_a_size_a_cut_line_shows_the_cut(server, tmp_path) -> None:
    serve(server, "f1", Reply(body=CONTENT, framing="close", cut_after=100), size=None)

    with pytest.raises(OpenAIBatchAPIError, match="in the middle of a line"):
        make_client(server, max_retries=0).download_file("f1", tmp_path)

    assert list(tmp_path.iterdir()) == []


def test_without_a_size_a_whole_file_passes(server, tmp_path) -> None:
    serve(server, "f1", Reply(body=CONTENT, framing="close"), size=None)

    assert make_client(server).download_file("f1", tmp_path).read_bytes() == CONTENT


def test_a_file_without_a_final_newline_of_the_right_size_passes(server, tmp_path) -> None:
    content = CONTENT.rstrip(b"\n")
    serve(server, "f1", Reply(body=content, framing="close"), size=len(content))

    assert make_client(server).download_file("f1", tmp_path).read_bytes() == content


def test_more_bytes_than_the_file_has_fail_too(server, tmp_path) -> None:
    serve(server, "f1", Reply(body=CONTENT + CONTENT), size=len(CONTENT))

    with pytest.raises(OpenAIBatchAPIError, match="but the file has"):
        make_client(server, max_retries=0).download_file("f1", tmp_path)
