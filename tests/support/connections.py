"""Airflow connections for tests, defined through environment variables."""

from __future__ import annotations

import json
from typing import Any


def set_connection(monkeypatch: Any, conn_id: str, **fields: Any) -> None:
    """Define an Airflow connection through its ``AIRFLOW_CONN_<ID>`` variable (JSON form)."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
