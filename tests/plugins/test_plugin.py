"""The plugin's parts one by one: registration, connection ids, rows, error lines, XCom summaries, formats."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from airflow_batch_provider import get_provider_info
from airflow_batch_provider.models import Batch
from airflow_batch_provider.plugins.connections import env_conn_ids
from airflow_batch_provider.plugins.plugin import OpenAIBatchPlugin
from airflow_batch_provider.plugins.rows import RunIdentity, batch_row, external_url
from airflow_batch_provider.plugins.task_instance import TaskInstanceKey, error_lines
from airflow_batch_provider.plugins.templating import cost, duration
from airflow_batch_provider.plugins.xcoms import results_of

NOW = 1_800_000_000


def batch(**fields: Any) -> Batch:
    values = {
        "id": "batch_1",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": "in_progress",
        "created_at": NOW - 100,
        "metadata": {
            "airflow_dag_id": "d",
            "airflow_run_id": "manual__1",
            "airflow_task_id": "t",
            "airflow_map_index": "-1",
        },
    }
    return Batch.model_validate({**values, **fields})


# -- registration --


def test_provider_info_registers_the_plugin_and_its_option() -> None:
    info = get_provider_info()
    assert info["plugins"] == [
        {"name": "openai_batch", "plugin-class": "airflow_batch_provider.plugins.plugin.OpenAIBatchPlugin"}
    ]
    assert "ui_conn_ids" in info["config"]["openai_batch"]["options"]


def test_external_views_are_relative_and_name_the_task_instance() -> None:
    nav, tab = OpenAIBatchPlugin.external_views
    assert (nav["destination"], nav["category"], nav["href"]) == ("nav", "browse", "openai-batches/")
    assert tab["destination"] == "task_instance"
    assert tab["href"] == "openai-batches/task-instance/{DAG_ID}/{TASK_ID}/{MAP_INDEX}/{RUN_ID}"
    assert [app["url_prefix"] for app in OpenAIBatchPlugin.fastapi_apps] == ["/openai-batches"]


@pytest.mark.parametrize("lazy", ["True", "False"])
def test_airflow_loads_the_plugin_once_however_it_discovers_providers(lazy: str) -> None:
    script = textwrap.dedent(
        """
        from airflow import plugins_manager
        plugins, errors = plugins_manager._get_plugins()
        print([plugin.name for plugin in plugins].count("openai_batch"), errors)
        """
    )
    env = {**os.environ, "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": lazy}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1 {}"


# -- connections --


def test_connection_ids_come_from_json_and_uri_variables_of_the_type() -> None:
    environ = {
        "AIRFLOW_CONN_FIRST": json.dumps({"conn_type": "openai_batch", "host": "http://x/v1"}),
        "AIRFLOW_CONN_SECOND_ONE": "openai-batch://:sk-1@api.example/v1",
        "AIRFLOW_CONN_OTHER": json.dumps({"conn_type": "openai"}),
        "AIRFLOW_CONN_BROKEN": "{not json",
        "AIRFLOW_CONN_POSTGRES": "postgres://u:p@h/db",
        "NOT_A_CONNECTION": json.dumps({"conn_type": "openai_batch"}),
    }
    assert env_conn_ids(environ) == {"first", "second_one"}


# -- rows --


def test_a_row_has_progress_eta_tokens_cost_and_relative_paths() -> None:
    running = batch(
        model="gpt-4o-mini",
        in_progress_at=NOW - 90,
        request_counts={"total": 400, "completed": 90, "failed": 10},
        usage={
            "input_tokens": 1_000_000,
            "input_tokens_details": {"cached_tokens": 400_000},
            "output_tokens": 2000,
        },
        metadata={
            **batch().metadata,
            "airflow_run_id": "scheduled__2025-01-01T00:00:00+00:00",
            "airflow_part": "2.r1",
        },
    )
    prices = {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6}}

    row = batch_row("conn", running, None, prices, may_cancel=True, now=NOW)

    assert (row.total, row.completed, row.failed, row.percent) == (400, 90, 10, 25.0)
    assert (row.elapsed_seconds, row.eta_seconds) == (100, 270)
    assert (row.input_tokens, row.cached_tokens, row.output_tokens) == (1_000_000, 400_000, 2000)
    assert row.cost == pytest.approx(0.6 * 0.15 + 0.4 * 0.075 + 0.002 * 0.6)
    assert row.can_cancel
    assert row.running
    assert row.identity is not None
    assert row.identity.part == "2.r1"
    assert (
        row.identity.task_instance_path == "dags/d/runs/scheduled__2025-01-01T00%3A00%3A00%2B00%3A00/tasks/t"
    )
    assert row.files == (("input", "file-in"),)


def test_no_cost_without_a_price_for_the_model_and_no_cancel_once_finished() -> None:
    done = batch(status="completed", model="other-model", usage={"input_tokens": 10, "output_tokens": 5})
    row = batch_row("conn", done, None, {"gpt-4o-mini": {"input": 1, "output": 1}}, may_cancel=True, now=NOW)
    assert row.cost is None
    assert not row.can_cancel
    assert not row.running
    cancelling = batch_row("conn", batch(status="cancelling"), None, None, may_cancel=True, now=NOW)
    assert not cancelling.can_cancel


def test_mapped_task_instance_path_and_digested_ids() -> None:
    mapped = RunIdentity("d", "r", "t", 3)
    assert mapped.task_instance_path == "dags/d/runs/r/tasks/t/mapped/3"
    assert RunIdentity("d", "sha256:" + "0" * 64, "t", -1).linkable is False


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://platform.openai.com/batches/b", True),
        ("http://127.0.0.1:8000/batches/b", True),
        ("javascript:alert(1)//b", False),
        ("JavaScript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        (None, False),
    ],
)
def test_only_http_links_leave_for_a_batch_page(url: str | None, kept: bool) -> None:
    assert external_url(url) == (url if kept else None)


# -- the tab's parts --


def test_a_task_instance_key_matches_its_batches_also_by_digest() -> None:
    long_run = "manual__" + "x" * 600
    key = TaskInstanceKey("d", long_run, "t", -1)
    digested = batch(
        metadata={
            **batch().metadata,
            "airflow_run_id": "sha256:" + hashlib.sha256(long_run.encode()).hexdigest(),
        }
    )
    assert key.created(digested)
    assert not TaskInstanceKey("d", "manual__1", "t", 0).created(batch())


def test_error_lines_keep_request_ids_and_reasons_and_drop_a_cut_last_line() -> None:
    lines = [
        {"custom_id": "a", "response": {"status_code": 400, "body": {"error": {"message": "Bad <input>"}}}},
        {"custom_id": "b", "response": None, "error": {"code": "batch_expired", "message": "expired"}},
        "not json at all",
        {"custom_id": "c", "response": {"status_code": 500, "body": {"error": {"message": "x" * 1000}}}},
    ]
    head = b"".join((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines)

    shown = error_lines(head + b'{"custom_id": "cut', complete=False, limit=10)

    assert [(line.custom_id, line.status_code) for line in shown] == [
        ("a", 400),
        ("b", None),
        ("", None),
        ("c", 500),
    ]
    assert shown[0].message == "Bad <input>"
    assert shown[1].message == "batch_expired: expired"
    assert len(shown[3].message) == 300
    assert shown[3].message.endswith("…")
    assert len(error_lines(head, complete=True, limit=2)) == 2


def test_results_of_read_the_summary_and_the_sensors_batch() -> None:
    one_task = {
        "return_value": {
            "output_path": "/data/out.jsonl",
            "error_path": "s3://bucket/errors.jsonl",
            "batches": {"0": ["b1", "b2"], "1": ["b3"]},
        }
    }
    assert results_of(one_task).batch_ids == ("b1", "b2", "b3")
    assert results_of(one_task).output_path == "/data/out.jsonl"
    assert results_of({"return_value": {"batch_id": "b9", "output_path": None}}).batch_ids == ("b9",)
    assert results_of({"batch": {"id": "b7"}, "return_value": "b7"}).batch_ids == ("b7",)
    assert results_of({"return_value": [1, 2]}) == results_of({})


# -- formats --


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, ""), (0, "0s"), (42, "42s"), (2470, "41m 10s"), (7500, "2h 05m"), (273_600, "3d 04h")],
)
def test_durations(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


def test_costs() -> None:
    assert (cost(None), cost(0.0), cost(0.00001), cost(1234.5)) == ("", "0.0000", "< 0.0001", "1,234.5000")
