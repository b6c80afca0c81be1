"""The plugin's pages through Airflow's own API app (TestClient), with batches on emulators."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_batch_provider.client import BatchClient, ClientSettings
from airflow_batch_provider.models import Batch
from tests.dags.conftest import run_dag  # noqa: F401 (the fixture that runs a DAG with dag.test())
from tests.support.airflow import register_dags
from tests.support.airflow_api import api_test_client, configure_auth, token_for
from tests.support.requests import CHAT_ENDPOINT, chat_requests, jsonl_bytes

START = datetime(2025, 1, 1)
DAG_IDS = ("ui_alpha", "ui_beta", "ui_secret")
#: ``name:role``: one user per role, and ``analyst``, a user denied the DAG ``ui_secret``.
USERS = "admin:admin,op:op,user:user,viewer:viewer,analyst:user"
DENIED = "analyst:ui_secret"


@dataclass
class Pages:
    """The API app's test client, with requests made as one of :data:`USERS`."""

    client: Any

    def get(self, path: str, user: str | None = "admin", **kwargs: Any) -> Any:
        return self.client.get(path, headers=self._auth(user), **kwargs)

    def post(self, path: str, user: str | None = "admin", headers: dict[str, str] | None = None) -> Any:
        return self.client.post(path, headers={**self._auth(user), **(headers or {})})

    @staticmethod
    def _auth(user: str | None) -> dict[str, str]:
        role = dict(pair.split(":") for pair in USERS.split(","))
        return {} if user is None else {"Authorization": f"Bearer {token_for(user, role[user])}"}


def shown_batch_ids(html: str) -> list[str]:
    """The ids of the batches a page shows, in order."""
    return re.findall(r'<tr data-batch-id="([^"]+)"', html)


@pytest.fixture
def pages(airflow_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Pages]:
    """Airflow's API app with the plugin, DAGs :data:`DAG_IDS` registered, users :data:`USERS`."""
    from airflow.sdk import DAG

    configure_auth(monkeypatch, tmp_path, users=USERS, denied=DENIED)
    # As the API server does: connections are read from the metadata database too.
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
    register_dags(*(DAG(dag_id, schedule=None, start_date=START) for dag_id in DAG_IDS))
    with api_test_client() as client:
        yield Pages(client)


def airflow_batch(
    server: Any,
    dag_id: str,
    run_id: str = "manual__2025-01-01T00:00:00+00:00",
    task_id: str = "submit",
    map_index: int = -1,
    requests: list[dict[str, Any]] | None = None,
    **metadata: str,
) -> Batch:
    """A batch on ``server`` as an operator of that task instance makes it (run identity in its metadata).

    :param requests: its input lines (default: two chat requests).
    :param metadata: more metadata, or replacements of the run identity's.
    """
    client = BatchClient(ClientSettings(base_url=server.base_url, api_key=server.api_key))
    uploaded = client.upload_file(io.BytesIO(jsonl_bytes(requests or chat_requests(2))))
    identity = {
        "airflow_dag_id": dag_id,
        "airflow_run_id": run_id,
        "airflow_task_id": task_id,
        "airflow_map_index": str(map_index),
    }
    return client.create_batch(uploaded.id, CHAT_ENDPOINT, metadata={**identity, **metadata})
