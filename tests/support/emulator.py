"""Talking to a running emulator from tests: its API over plain HTTP, faults, batches end to end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_batch_provider.emulator.server import EmulatorServer
from airflow_batch_provider.rules import TERMINAL_STATUSES
from tests.support.requests import CHAT_ENDPOINT, jsonl_bytes


def api(server: EmulatorServer, method: str, path: str, **kwargs: Any) -> Any:
    """Call the emulator at ``path`` below its root (``/v1/...``, ``/_emulator/...``); return the JSON."""
    headers = {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}
    response = httpx.request(method, f"{server.url}{path}", headers=headers, timeout=10, **kwargs)
    return response.raise_for_status().json()


def batch_status(server: EmulatorServer, batch_id: str) -> str:
    """The batch's status as the emulator answers it now."""
    return str(api(server, "GET", f"/v1/batches/{batch_id}")["status"])


def batches_of(server: EmulatorServer, dag_id: str) -> list[dict[str, Any]]:
    """The emulator's batches (newest 100) whose metadata names ``dag_id``."""
    batches = api(server, "GET", "/v1/batches", params={"limit": 100})["data"]
    return [batch for batch in batches if (batch.get("metadata") or {}).get("airflow_dag_id") == dag_id]


def set_faults(server: EmulatorServer, rules: list[dict[str, Any]]) -> Callable[[], list[dict[str, Any]]]:
    """Inject faults (the emulator needs ``enable_admin``); return a function reading the rules back."""
    api(server, "PUT", "/_emulator/faults", json={"rules": rules})
    return lambda: api(server, "GET", "/_emulator/faults")["rules"]


def submit(
    server: EmulatorServer, lines: list[dict[str, Any] | str], endpoint: str = CHAT_ENDPOINT, **fields: Any
) -> dict[str, Any]:
    """Upload ``lines`` and create a batch over them; return the new batch."""
    upload = api(
        server,
        "POST",
        "/v1/files",
        files={"file": ("requests.jsonl", jsonl_bytes(lines))},
        data={"purpose": "batch"},
    )
    body = {"input_file_id": upload["id"], "endpoint": endpoint, "completion_window": "24h", **fields}
    return dict(api(server, "POST", "/v1/batches", json=body))


def wait_for(
    server: EmulatorServer,
    batch_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda batch: batch["status"] in TERMINAL_STATUSES,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Read the batch until ``until`` holds (default: a terminal status); fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        batch = dict(api(server, "GET", f"/v1/batches/{batch_id}"))
        if until(batch):
            return batch
        if time.monotonic() > deadline:
            pytest.fail(
                f"batch {batch_id} still {batch['status']} {batch['request_counts']} after {timeout} s"
            )
        time.sleep(0.02)


def submit_and_wait(
    server: EmulatorServer, lines: list[dict[str, Any] | str], endpoint: str = CHAT_ENDPOINT, **fields: Any
) -> dict[str, Any]:
    """Submit a batch and return it once terminal."""
    return wait_for(server, submit(server, lines, endpoint, **fields)["id"])
