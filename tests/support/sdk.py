"""The official ``openai`` SDK as an independent client of the emulator: submit, wait, read files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import openai
import pytest
from openai.types import Batch

from tests.support.requests import jsonl_bytes

TERMINAL = ("completed", "failed", "expired", "cancelled")


def client_for(server: Any, **kwargs: Any) -> openai.OpenAI:
    """An official SDK client for an emulator, without retries (so errors surface at once)."""
    return openai.OpenAI(
        base_url=server.base_url, api_key=server.api_key or "unused", max_retries=0, **kwargs
    )


def wait_for(
    client: openai.OpenAI,
    batch_id: str,
    until: Callable[[Batch], bool] = lambda batch: batch.status in TERMINAL,
    timeout: float = 20.0,
) -> Batch:
    """Poll the batch until ``until`` holds (default: a terminal status); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if until(batch):
            return batch
        if time.monotonic() > deadline:
            pytest.fail(f"batch {batch_id} still {batch.status} {batch.request_counts} after {timeout} s")
        time.sleep(0.02)


def submit(
    client: openai.OpenAI,
    lines: Iterable[dict[str, Any] | str],
    endpoint: str = "/v1/chat/completions",
    **kwargs: Any,
) -> Batch:
    """Upload ``lines`` and create a batch over them."""
    file = client.files.create(file=("requests.jsonl", jsonl_bytes(lines)), purpose="batch")
    return client.batches.create(input_file_id=file.id, endpoint=endpoint, completion_window="24h", **kwargs)  # type: ignore[arg-type]


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """The JSON lines of an output or error file (none for a null id)."""
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def submit_and_wait(client: openai.OpenAI, lines: Iterable[dict[str, Any] | str], **kwargs: Any) -> Batch:
    """Upload ``lines``, create a batch over them and return it once terminal."""
    return wait_for(client, submit(client, lines, **kwargs).id)


def gone(call: Callable[[], object], timeout: float = 10.0) -> openai.NotFoundError:
    """Call ``call`` until it raises NotFoundError, which is returned; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
        except openai.NotFoundError as error:
            return error
        if time.monotonic() > deadline:
            pytest.fail(f"still there after {timeout} s")
        time.sleep(0.05)
