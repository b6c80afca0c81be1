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


def chat_requests(count: int, prefix: str = "r", **body: Any) -> list[dict[str, Any]]:
    """``count`` chat requests with custom ids ``<prefix>0``, ``<prefix>1``, ..."""
    return [chat_request(f"{prefix}{n}", f"Question {n}?", **body) for n in range(count)]


def jsonl_bytes(lines: Iterable[dict[str, Any] | str]) -> bytes:
    """A JSONL file's bytes; strings are written as they are (to break the format on purpose)."""
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
