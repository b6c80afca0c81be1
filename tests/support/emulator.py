"""Talking to a running emulator from tests: its API over plain HTTP, faults, batches end to end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from airflow_batch_provider.emulator.server import EmulatorServer


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
