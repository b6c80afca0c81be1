"""The Files and Uploads APIs, driven with the official SDK."""

from __future__ import annotations

import hashlib
from pathlib import Path

import openai
import pytest
from openai.types import FileDeleted, FileObject, Upload

from tests.support.requests import chat_request, jsonl_bytes

CONTENT = jsonl_bytes([chat_request(f"r{i}") for i in range(5)])


def test_upload_retrieve_content_delete(client: openai.OpenAI) -> None:
    file = client.files.create(file=("my requests.jsonl", CONTENT), purpose="batch")

    assert isinstance(file, FileObject)
    assert file.id.startswith("file-")
    assert (file.bytes, file.filename, file.purpose, file.status) == (
        len(CONTENT),
        "my requests.jsonl",
        "batch",
        "processed",
    )
    assert client.files.retrieve(file.id) == file
    assert client.files.content(file.id).content == CONTENT

    deleted = client.files.delete(file.id)
    assert isinstance(deleted, FileDeleted)
    assert (deleted.id, deleted.deleted) == (file.id, True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(file.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(file.id)


def test_filename_never_becomes_a_path(client: openai.OpenAI, emulator) -> None:  # type: ignore[no-untyped-def]
    name = "../../escape.jsonl"
    file = client.files.create(file=(name, CONTENT), purpose="batch")

    assert file.filename == name
    stored = [path.name for path in Path(emulator.data_dir).rglob("*") if path.is_file()]
    assert "escape.jsonl" not in stored
    assert file.id in stored


def test_batch_file_must_be_jsonl(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.files.create(file=("requests.csv", CONTENT), purpose="batch")
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["message"] == "Invalid file format for Batch API. Must be .jsonl"


def test_unknown_purpose(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.files.create(file=("a.jsonl", CONTENT), purpose="batch_output")  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict)
    assert (raised.value.body["param"], raised.value.body["code"]) == ("purpose", "invalid_value")


def test_expires_after(client: openai.OpenAI) -> None:
    file = client.files.create(
        file=("a.jsonl", CONTENT), purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert file.expires_at == file.created_at + 3600


def test_list_filters_orders_and_pages(make_emulator) -> None:  # type: ignore[no-untyped-def]
    from tests.support.sdk import client_for

    client = client_for(make_emulator())
    batch_ids = [client.files.create(file=(f"{i}.jsonl", CONTENT), purpose="batch").id for i in range(3)]
    other = client.files.create(file=("notes.txt", b"hello"), purpose="user_data").id

    assert [file.id for file in client.files.list()] == [other, *batch_ids[::-1]]
    assert [file.id for file in client.files.list(purpose="batch", order="asc")] == batch_ids
    page = client.files.list(purpose="batch", limit=2, order="asc")
    assert [file.id for file in page.data] == batch_ids[:2]
    assert page.has_more is True
    assert [file.id for file in client.files.list(purpose="batch", limit=2, order="asc")] == batch_ids
    assert [file.id for file in client.files.list(after=batch_ids[2])] == batch_ids[1::-1]


def test_uploads_api_in_parts(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    content = jsonl_bytes([chat_request(f"r{i}", "x" * 100) for i in range(200)])
    path.write_bytes(content)

    upload = client.uploads.upload_file_chunked(
        file=path, mime_type="application/jsonl", purpose="batch", part_size=len(content) // 4 + 1
    )

    assert isinstance(upload, Upload)
    assert upload.status == "completed"
    assert upload.file is not None
    assert (upload.file.bytes, upload.file.filename, upload.file.purpose) == (
        len(content),
        "big.jsonl",
        "batch",
    )
    assert client.files.content(upload.file.id).content == content


def test_upload_parts_are_joined_in_the_order_given(client: openai.OpenAI) -> None:
    upload = client.uploads.create(
        bytes=6, filename="x.jsonl", mime_type="application/jsonl", purpose="batch"
    )
    first = client.uploads.parts.create(upload.id, data=b"abc")
    second = client.uploads.parts.create(upload.id, data=b"def")
    assert first.object == "upload.part"

    done = client.uploads.complete(
        upload.id, part_ids=[second.id, first.id], md5=hashlib.md5(b"defabc").hexdigest()
    )

    assert done.file is not None
    assert client.files.content(done.file.id).content == b"defabc"


def test_upload_byte_count_and_parts_are_checked(client: openai.OpenAI) -> None:
    upload = client.uploads.create(
        bytes=10, filename="x.jsonl", mime_type="application/jsonl", purpose="batch"
    )
    part = client.uploads.parts.create(upload.id, data=b"abc")

    with pytest.raises(openai.BadRequestError, match="10 bytes"):
        client.uploads.complete(upload.id, part_ids=[part.id])
    with pytest.raises(openai.BadRequestError, match="part_nope"):
        client.uploads.complete(upload.id, part_ids=["part_nope"])
    other = client.uploads.create(bytes=3, filename="y.jsonl", mime_type="application/jsonl", purpose="batch")
    other_part = client.uploads.parts.create(other.id, data=b"xyz")
    with pytest.raises(openai.BadRequestError, match="md5"):
        client.uploads.complete(other.id, part_ids=[other_part.id], md5="0" * 32)


def test_upload_cancel(client: openai.OpenAI) -> None:
    upload = client.uploads.create(
        bytes=3, filename="x.jsonl", mime_type="application/jsonl", purpose="batch"
    )
    part = client.uploads.parts.create(upload.id, data=b"abc")

    cancelled = client.uploads.cancel(upload.id)

    assert cancelled.status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload.id, part_ids=[part.id])
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("upload_nope")


def test_upload_of_a_batch_file_checks_name_and_size(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        client.uploads.create(bytes=3, filename="x.txt", mime_type="text/plain", purpose="batch")
    with pytest.raises(openai.BadRequestError, match="too large"):
        client.uploads.create(
            bytes=201 * 1024 * 1024, filename="x.jsonl", mime_type="application/jsonl", purpose="batch"
        )
