"""Airflow's UI in Debian's chromium, on the session's LocalExecutor deployment.

A run whose sensor waits in the triggerer for a batch the emulator holds; then, in the browser:
the connection form of type "OpenAI Batch", the "OpenAI Batch" extra link of the submit and
sensor task instances, and the sensor's log with the trigger's progress lines. Screenshots are
kept in ``tests/artifacts/system/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.browser import open_page, save_screenshot
from tests.support.deployment import AirflowDeployment
from tests.support.emulator import EmulatorControl
from tests.support.processes import wait_until

DAG_ID = "system_wait"
PROGRESS = "{batch_id} in_progress: 0/3 done (0.0%), 0 failed"
"""A progress line of the sensor and of its trigger while the emulator holds the batch."""
EXTRA_LABELS = (
    "Organization ID",
    "Project ID",
    "Timeout (seconds)",
    "Max retries",
    "API type",
    "API version",
    "Batch page URL template",
)


@dataclass
class WaitingRun:
    """A run of :data:`DAG_ID` whose sensor is deferred, waiting for ``batch_id``."""

    run_id: str
    batch_id: str
    batch_url: str

    def task_url(self, airflow: AirflowDeployment, task_id: str, tab: str = "") -> str:
        path = f"dags/{DAG_ID}/runs/{quote(self.run_id, safe='')}/tasks/{task_id}"
        return f"{airflow.base_url}{path}{'/' + tab if tab else ''}"


@pytest.fixture(scope="module")
def waiting_run(local_airflow: AirflowDeployment, emulator: EmulatorControl) -> Iterator[WaitingRun]:
    emulator.hold()
    rest = local_airflow.rest
    rest.wait_for_dags([DAG_ID])
    run_id = rest.trigger_run(DAG_ID)
    rest.wait_for_task(
        DAG_ID, run_id, "wait", {"deferred"}, 120, condition=lambda ti: ti.get("triggerer_job")
    )
    (batch,) = emulator.batches_of(DAG_ID, run_id)
    # The sensor's first look and two reads of its trigger, in the triggerer.
    rest.wait_for_log(DAG_ID, run_id, "wait", 1, f"trigger {DAG_ID}/{run_id}/wait/-1/1 (ID")
    wait_until(
        lambda: rest.task_log(DAG_ID, run_id, "wait", 1).count(PROGRESS.format(batch_id=batch["id"])) >= 3,
        30,
        "two polls of the trigger in the sensor's log",
    )
    yield WaitingRun(run_id, batch["id"], f"{emulator.url}/batches/{batch['id']}")
    local_airflow.wait_for_executor_event(DAG_ID, run_id, "wait", try_number=1)
    emulator.release()
    rest.wait_for_run(DAG_ID, run_id, timeout=120)


@pytest.fixture
def page(browser: Any, local_airflow: AirflowDeployment) -> Iterator[Any]:
    page = open_page(browser, local_airflow.base_url, local_airflow.token())
    yield page
    assert not page.problems, page.problems
    page.context.close()


def test_the_connection_form_of_type_openai_batch_shows_our_fields_and_labels(
    page: Any, local_airflow: AirflowDeployment
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{local_airflow.base_url}connections")
    page.get_by_role("button", name="Add Connection").click()
    page.get_by_role("combobox").first.click()
    page.keyboard.type("OpenAI Batch")
    page.get_by_role("option", name="OpenAI Batch").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Base URL", exact=True)).to_be_visible()
    expect(dialog.get_by_placeholder("https://api.openai.com/v1")).to_be_visible()
    expect(dialog.get_by_text("API key", exact=True)).to_be_visible()
    expect(dialog.get_by_placeholder("sk-...")).to_be_visible()
    for hidden in ("Host", "Login", "Port", "Schema", "Password"):
        expect(dialog.get_by_text(hidden, exact=True)).to_have_count(0)
    save_screenshot(page, "system/connection_form.png")

    dialog.get_by_text("Extra Fields", exact=True).click()
    for label in EXTRA_LABELS:
        expect(dialog.get_by_text(label, exact=True)).to_be_visible()
    save_screenshot(page, "system/connection_form_extra_fields.png")


@pytest.mark.parametrize("task_id", ["submit", "wait"])
def test_the_submit_and_sensor_tasks_show_the_openai_batch_link_to_the_batch(
    page: Any, local_airflow: AirflowDeployment, waiting_run: WaitingRun, task_id: str
) -> None:
    from playwright.sync_api import expect

    page.goto(waiting_run.task_url(local_airflow, task_id, "details"))
    link = page.get_by_role("link", name="OpenAI Batch")
    expect(link).to_have_attribute("href", waiting_run.batch_url)
    expect(page.get_by_text("Extra Links")).to_be_visible()
    save_screenshot(page, f"system/extra_link_{task_id}.png")
    links = local_airflow.rest.extra_links(DAG_ID, waiting_run.run_id, task_id)
    assert links == {"OpenAI Batch": waiting_run.batch_url}


def test_the_sensors_log_shows_the_triggers_progress_lines(
    page: Any, local_airflow: AirflowDeployment, waiting_run: WaitingRun
) -> None:
    from playwright.sync_api import expect

    page.goto(waiting_run.task_url(local_airflow, "wait"))
    progress = page.get_by_text(re.compile(re.escape(PROGRESS.format(batch_id=waiting_run.batch_id))))
    expect(progress.first).to_be_visible(timeout=30_000)
    assert progress.count() >= 3  # the sensor's first look, then a line per read of its trigger
    save_screenshot(page, "system/sensor_log.png")
