"""Testing a connection in Airflow 3.1 and 3.3.2: what works with this connection type, and what does not.

In 3.3.2 the UI form's Test button answers "Bad Request" (Airflow's own: the form sends port 0 for the
hidden port field and the masked password, and Airflow then refuses to reuse the stored key for
"another" port). ``POST /api/v2/connections/test`` with the real fields, and
``airflow connections test <conn_id>``, work; both need ``[core] test_connection = Enabled``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
from packaging.version import Version

from tests.support.airflow_api import api_test_client, token_for

EMULATOR_KEY = "sk-emulator-test"
AIRFLOW_V_3_3_PLUS = Version(version("apache-airflow")) >= Version("3.3")


@pytest.fixture
def api_client(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Airflow's REST API in process, connection testing enabled, the caller an admin with a token."""
    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "a-secret-for-the-tests-only")
    with api_test_client() as client:
        client.headers["Authorization"] = f"Bearer {token_for('admin')}"
        yield client


@pytest.fixture
def stored(airflow_db: None, emulator: Any) -> Iterator[str]:
    """A connection stored in Airflow's database, pointing at the emulator."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    conn_id = "emu_stored_for_test"
    with create_session() as session:
        session.query(Connection).filter_by(conn_id=conn_id).delete()
        session.add(
            Connection(
                conn_id=conn_id, conn_type="openai_batch", host=emulator.base_url, password=EMULATOR_KEY
            )
        )
    yield conn_id
    with create_session() as session:
        session.query(Connection).filter_by(conn_id=conn_id).delete()


def test_the_rest_api_tests_the_real_fields(api_client, emulator) -> None:
    fields = {"connection_id": "anything", "conn_type": "openai_batch", "host": emulator.base_url}

    good = api_client.post("/api/v2/connections/test", json={**fields, "password": EMULATOR_KEY}).json()
    bad = api_client.post("/api/v2/connections/test", json={**fields, "password": "sk-wrong-0123"}).json()

    assert good == {"status": True, "message": f"Connected to {emulator.base_url}: the Batch API answered."}
    assert bad["status"] is False
    assert "Check the API key of this connection" in bad["message"]
    assert "sk-wrong-0123" not in bad["message"]


def test_the_rest_api_tests_a_stored_connection_by_its_id(api_client, stored, emulator) -> None:
    answer = api_client.post(
        "/api/v2/connections/test",
        json={
            "connection_id": stored,
            "conn_type": "openai_batch",
            "host": emulator.base_url,
            "password": "***",
        },
    )

    assert answer.json()["status"] is True


def test_the_ui_forms_request_works_on_3_1_is_refused_by_3_3(api_client, stored, emulator) -> None:
    """What the form's Test button sends. If 3.3 starts accepting it, update the README."""
    form = {
        "connection_id": stored,
        "conn_type": "openai_batch",
        "host": emulator.base_url,
        "port": 0,
        "password": "***",
        "extra": "{}",
    }

    answer = api_client.post("/api/v2/connections/test", json=form)

    if AIRFLOW_V_3_3_PLUS:
        assert answer.status_code == 400
        assert "differs from the stored connection" in answer.json()["detail"]
    else:
        assert answer.json() == {
            "status": True,
            "message": f"Connected to {emulator.base_url}: the Batch API answered.",
        }


def test_the_cli_tests_a_connection(airflow_db, emulator) -> None:
    env = {
        **os.environ,
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW_CONN_EMU_CLI": json.dumps(
            {"conn_type": "openai_batch", "host": emulator.base_url, "password": EMULATOR_KEY}
        ),
    }

    done = subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "test", "emu_cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Connection success!" in done.stdout
