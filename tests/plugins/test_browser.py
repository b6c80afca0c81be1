"""The pages in a real ``airflow api-server`` below a base path, over HTTP and in Debian's chromium.

One module-wide set-up: an emulator that runs requests slowly, a DAG run whose task created a
batch that is still running, and an API server below ``/airflow`` (as behind a reverse proxy)
with the connection pointing at the emulator. The browser is the shared fixture of
:mod:`tests.support.browser`. Screenshots go to ``tests/artifacts/``; with ``UPDATE_SCREENSHOTS=1``
they also replace the ones the README shows (``tests/plugins/screenshots/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx
import pytest

from airflow_batch_provider.emulator.server import EmulatorServer
from tests.conftest import EMULATOR_API_KEY
from tests.plugins.conftest import START
from tests.support.airflow import register_dags
from tests.support.api_server import AirflowAPIServer
from tests.support.browser import ARTIFACTS, save_screenshot
from tests.support.requests import chat_requests

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DAG_ID = "ui_browser_reviews"
BASE_PATH = "/airflow"
PRICES = {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6}}
USERS = {"admin": "admin", "viewer": "viewer"}


@dataclass
class World:
    """The running pieces: the API server, the emulator, and the DAG run's batch."""

    server: AirflowAPIServer
    emulator: EmulatorServer
    run_id: str
    batch_id: str

    @property
    def tab_path(self) -> str:
        return f"openai-batches/task-instance/{DAG_ID}/submit/%7BMAP_INDEX%7D/{quote(self.run_id, safe='')}"


def _run_submitting_dag(monkeypatch: pytest.MonkeyPatch, connection: str) -> str:
    """Run a DAG whose only task submits a batch (and does not wait for it); return the run id."""
    from airflow.sdk import DAG

    from airflow_batch_provider.operators.batch import OpenAIBatchSubmitOperator

    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_BATCH_DEFAULT", connection)
    with DAG(DAG_ID, schedule=None, start_date=START) as dag:
        OpenAIBatchSubmitOperator(task_id="submit", requests=chat_requests(40, prefix="review-"))
    register_dags(dag)
    dag_run = dag.test()
    assert str(dag_run.state) == "success"
    return str(dag_run.run_id)


@pytest.fixture(scope="module")
def world(airflow_db: None) -> Iterator[World]:
    # Two seconds a request, one at a time: the batch runs for over a minute, visibly progressing.
    emulator = EmulatorServer(
        api_key=EMULATOR_API_KEY, validation_delay=0.05, request_delay=2.0, concurrency=1
    )
    with pytest.MonkeyPatch.context() as monkeypatch, emulator:
        connection = json.dumps(
            {
                "conn_type": "openai_batch",
                "host": emulator.base_url,
                "password": EMULATOR_API_KEY,
                "extra": {"prices": PRICES},
            }
        )
        run_id = _run_submitting_dag(monkeypatch, connection)
        batches = httpx.get(
            f"{emulator.base_url}/batches", headers={"Authorization": f"Bearer {EMULATOR_API_KEY}"}
        )
        (batch,) = [b for b in batches.json()["data"] if b["metadata"]["airflow_dag_id"] == DAG_ID]
        env = {"AIRFLOW_CONN_OPENAI_BATCH_DEFAULT": connection}
        with AirflowAPIServer(USERS, base_path=BASE_PATH, env=env) as server:
            yield World(server, emulator, run_id, batch["id"])


class _Links(HTMLParser):
    """Every URL a page refers to: links, scripts, style sheets, form actions, cancel targets."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src", "action", "data-cancel") and value:
                self.urls.append(value)


def referenced_urls(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


# -- over HTTP --


def test_the_pages_work_below_a_base_path_with_relative_urls_only(world: World) -> None:
    server = world.server
    headers = {"Authorization": f"Bearer {server.token('admin')}"}
    for path in ("openai-batches/", world.tab_path):
        page_url = server.url(path)
        page = httpx.get(page_url, headers=headers)
        assert page.status_code == 200, page.text
        assert world.batch_id in page.text
        own = [url for url in referenced_urls(page.text) if not url.startswith("http")]
        assert own
        for url in own:
            assert not url.startswith("/"), url
            assert urlsplit(urljoin(page_url, url)).path.startswith(f"{BASE_PATH}/"), url
        for asset in (url for url in own if "/static/" in url or url.startswith("./static/")):
            assert httpx.get(urljoin(page_url, asset), headers=headers).status_code == 200, asset
        assert httpx.get(page_url).status_code == 401


def test_the_api_server_lists_the_plugin_and_a_viewer_gets_no_cancel_button(world: World) -> None:
    server = world.server
    viewer = {"Authorization": f"Bearer {server.token('viewer')}"}
    plugins = httpx.get(server.url("api/v2/plugins"), headers=viewer).json()["plugins"]
    (plugin,) = [plugin for plugin in plugins if plugin["name"] == "openai_batch"]
    assert {view["url_route"] for view in plugin["external_views"]} == {"openai-batches", "openai-batch"}
    page = httpx.get(server.url("openai-batches/"), headers=viewer).text
    assert world.batch_id in page
    assert "data-cancel" not in page
    cancel = httpx.post(
        server.url(f"openai-batches/batches/openai_batch_default/{world.batch_id}/cancel"),
        headers={**viewer, "X-Requested-By": "openai-batches"},
    )
    assert cancel.status_code == 403
    assert EMULATOR_API_KEY not in page


# -- in a browser --


def screenshot(page: Any, name: str) -> None:
    """Keep a screenshot as a test artifact, and as the README's when asked (UPDATE_SCREENSHOTS=1)."""
    save_screenshot(page, name)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / name, SCREENSHOTS / name)


def test_the_nav_page_and_the_tab_render_refresh_link_and_cancel_in_the_airflow_ui(
    world: World, browser: Any
) -> None:
    from playwright.sync_api import expect

    server = world.server
    context = browser.new_context(viewport={"width": 1440, "height": 720})
    context.add_cookies([{"name": "_token", "value": server.token("admin"), "url": server.base_url}])
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(server.url("plugin/openai-batches"))
    frame = page.frame_locator("iframe")
    row = frame.locator(f'tr[data-batch-id="{world.batch_id}"]')
    expect(row.locator(".status")).to_have_text("in_progress", timeout=30_000)
    done = row.locator(".progress .muted")
    expect(done).to_have_text(re.compile(r"[1-9]\d* / 40 done"), timeout=30_000)
    seen = done.inner_text()
    expect(done).not_to_have_text(seen, timeout=30_000)  # the page refreshed itself
    screenshot(page, "openai_batches.png")

    page.goto(
        server.url(f"dags/{DAG_ID}/runs/{quote(world.run_id, safe='')}/tasks/submit/plugin/openai-batch")
    )
    tab = page.frame_locator("iframe")
    expect(tab.locator(f'tr[data-batch-id="{world.batch_id}"] .status')).to_have_text("in_progress")
    expect(tab.locator("h1")).to_contain_text("submit")
    expect(page.get_by_text("No Task Instance found")).to_have_count(0)  # the UI has loaded it
    screenshot(page, "batch_tab.png")

    # A link to an Airflow page moves the Airflow UI itself, not the iframe.
    page.goto(server.url("plugin/openai-batches"))
    page.frame_locator("iframe").locator(
        f'tr[data-batch-id="{world.batch_id}"] a[data-airflow]'
    ).first.click()
    page.wait_for_url(re.compile(rf"{BASE_PATH}/dags/{DAG_ID}/runs/.+/tasks/submit$"))

    # Cancelling asks first, then the batch stops.
    page.goto(server.url("plugin/openai-batches"))
    frame = page.frame_locator("iframe")
    frame.locator(f'tr[data-batch-id="{world.batch_id}"] button[data-cancel]').click()
    dialog = frame.locator("dialog#cancel-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(world.batch_id)
    dialog.locator("button[value=cancel]").click()
    expect(frame.locator("#notice")).to_have_text(f"Batch {world.batch_id} is now cancelling.")
    expect(frame.locator(f'tr[data-batch-id="{world.batch_id}"] .status')).to_have_text(re.compile("cancel"))
    assert not problems, problems
    context.close()
