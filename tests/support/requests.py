"""Batch requests and input files for tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

CHAT_ENDPOINT = "/v1/chat/completions"
CHAT_MODEL = "gpt-4o-mini"


def chat_request(custom_id: str, text: str = "hello", model: str = CHAT_MODEL, **body: Any) -> dict[str, Any]:
    """One input line for ``/v1/chat/completions``; ``body`` adds or replaces body fields."""
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT_ENDPOINT,
        "body": {"model": model, "messages": [{"role": "user", "content": text}], **body},
    }


def rejected_request(custom_id: str, model: str = CHAT_MODEL) -> dict[str, Any]:
    """A chat request that passes batch validation but that the endpoint answers with 400 when it runs.

    Its ``messages`` array is empty: the live endpoint refuses it (``empty_array``, param
    ``messages``) when the request runs, so the line lands in the batch's error file. (A body
    that lacks ``messages`` altogether fails the whole batch at validation instead.)
    """
    return chat_request(custom_id, model=model) | {
        "body": {"model": model, "messages": []},
    }


REJECTED_CODE = "empty_array"
"""The error code the endpoint gives a :func:`rejected_request`."""


def chat_requests(count: int, prefix: str = "r", **body: Any) -> list[dict[str, Any]]:
    """``count`` chat requests with custom ids ``<prefix>0``, ``<prefix>1``, ..."""
    return [chat_request(f"{prefix}{n}", f"Question {n}?", **body) for n in range(count)]


def jsonl_bytes(lines: Iterable[dict[str, Any] | str]) -> bytes:
    """A JSONL file's bytes; strings are written as they are (to break the format on purpose)."""
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
