"""The pages and actions through Airflow's own API app: authentication, per-DAG permissions, filters,
pagination, escaping, cancel and files, against emulators (and a scripted hostile server)."""

from __future__ import annotations

import io
import json
import re
import time
from typing import Annotated, Any
from urllib.parse import quote

import pytest
from fastapi import Depends, FastAPI

from airflow_batch_provider.client import BatchClient, ClientSettings
from airflow_batch_provider.outputs import estimate_cost
from airflow_batch_provider.plugins import pages as pages_module
from airflow_batch_provider.plugins.auth import _user_from_header_or_cookie
from tests.plugins.conftest import START, Pages, airflow_batch, shown_batch_ids
from tests.support.emulator import batch_status, batches_of
from tests.support.processes import free_port
from tests.support.requests import CHAT_ENDPOINT, chat_requests, jsonl_bytes, rejected_request
from tests.support.scripted_server import Reply, ScriptedServer, batch_json
from tests.support.sdk import client_for, wait_for

APP = "/openai-batches"
RUN_ID = "manual__2025-01-01T00:00:00+00:00"
PRICES = {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6}}
CANCEL_HEADERS = {"X-Requested-By": "openai-batches"}
#: Slow enough that a batch stays in progress for the whole test.
RUNNING = {"request_delay": 60.0, "concurrency": 1}


def nav(pages: Pages, user: str = "admin", **query: Any) -> str:
    response = pages.get(f"{APP}/", user=user, params=query)
    assert response.status_code == 200, response.text
    return response.text


def tab(
    pages: Pages, dag_id: str, task_id: str = "submit", map_index: str = "{MAP_INDEX}", **kwargs: Any
) -> Any:
    return pages.get(
        f"{APP}/task-instance/{dag_id}/{task_id}/{quote(map_index)}/{quote(RUN_ID, safe='')}", **kwargs
    )


def in_progress(server: Any, batch_id: str) -> None:
    wait_for(client_for(server), batch_id, until=lambda batch: batch.status == "in_progress")


def plain_batch(server: Any) -> str:
    """A batch that no Airflow task created (no run identity in its metadata)."""
    client = BatchClient(ClientSettings(base_url=server.base_url, api_key=server.api_key))
    uploaded = client.upload_file(io.BytesIO(jsonl_bytes(chat_requests(1))))
    return client.create_batch(uploaded.id, CHAT_ENDPOINT, metadata={"team": "data"}).id


# -- authentication --

ROUTES = [
    ("GET", f"{APP}/"),
    ("GET", f"{APP}/?fragment=1"),
    ("GET", f"{APP}/task-instance/ui_alpha/submit/-1/{RUN_ID}"),
    ("POST", f"{APP}/batches/openai_batch_default/batch_1/cancel"),
    ("GET", f"{APP}/batches/openai_batch_default/batch_1/files/output"),
    ("GET", f"{APP}/static/app.js"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_a_request_without_a_valid_token(pages: Pages, method: str, path: str) -> None:
    bare = pages.client.request(method, path, headers=CANCEL_HEADERS)
    assert bare.status_code == 401
    assert bare.headers["content-type"] == "application/json"
    assert "<html" not in bare.text

    forged = pages.client.request(
        method, path, headers={"Authorization": "Bearer not.a.token", **CANCEL_HEADERS}
    )
    assert forged.status_code in (401, 403)
    pages.client.cookies.set("_token", "not.a.token")
    assert pages.client.request(method, path, headers=CANCEL_HEADERS).status_code in (401, 403)
    pages.client.cookies.clear()


def test_the_session_cookie_is_accepted_as_the_iframe_sends_it(
    pages: Pages, make_emulator, emulator_conn
) -> None:
    from tests.support.airflow_api import token_for

    emulator_conn(make_emulator())
    pages.client.cookies.set("_token", token_for("viewer"))
    try:
        response = pages.client.get(f"{APP}/")
    finally:
        pages.client.cookies.clear()
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]


# -- the list --


def test_the_list_shows_airflow_batches_with_numbers_and_links(
    pages: Pages, make_emulator, emulator_conn
) -> None:
    server = make_emulator()
    emulator_conn(server, prices=PRICES)
    labelled = airflow_batch(server, "ui_alpha", task_id="label", map_index=2, airflow_part="1.r1")
    plain_batch(server)
    airflow_batch(server, "dag_this_airflow_does_not_know")
    done = wait_for(client_for(server), labelled.id)

    html = nav(pages)

    assert shown_batch_ids(html) == [labelled.id]
    usage = done.usage
    assert usage is not None
    assert (
        f"{usage.input_tokens:,} / {usage.input_tokens_details.cached_tokens:,} / {usage.output_tokens:,}"
        in html
    )
    tokens = {"gpt-4o-mini": {"input": usage.input_tokens, "cached": 0, "output": usage.output_tokens}}
    expected_cost = estimate_cost(tokens, PRICES)
    assert expected_cost is not None
    assert ("&lt; 0.0001" if expected_cost < 0.0001 else f"{expected_cost:,.4f}") in html
    run = quote(RUN_ID, safe="")
    assert f'href="../dags/ui_alpha/runs/{run}/tasks/label/mapped/2" data-airflow' in html
    assert f'href="../dags/ui_alpha/runs/{run}" data-airflow' in html
    assert f'href="{server.url}/batches/{labelled.id}"' in html
    for kind in ("input", "output"):
        assert f'href="./batches/openai_batch_default/{labelled.id}/files/{kind}"' in html
    assert "part 1.r1" in html
    assert 'data-status="completed"' in html
    assert server.api_key not in html


def test_filters_by_status_dag_and_connection(pages: Pages, make_emulator, emulator_conn) -> None:
    fast, slow = make_emulator(), make_emulator(**RUNNING)
    emulator_conn(fast, "fast_conn")
    emulator_conn(slow, "slow_conn")
    alpha_done, beta_done = airflow_batch(fast, "ui_alpha"), airflow_batch(fast, "ui_beta")
    alpha_running = airflow_batch(slow, "ui_alpha")
    for done in (alpha_done, beta_done):
        wait_for(client_for(fast), done.id)
    in_progress(slow, alpha_running.id)

    def shown(**query: str) -> set[str]:
        return set(shown_batch_ids(nav(pages, **query)))

    assert shown() == {alpha_done.id, beta_done.id, alpha_running.id}
    assert shown(status="completed") == {alpha_done.id, beta_done.id}
    assert shown(status="unfinished") == {alpha_running.id}
    assert shown(status="in_progress") == {alpha_running.id}
    assert shown(status="failed") == set()
    assert shown(dag_id="ui_beta") == {beta_done.id}
    assert shown(conn_id="slow_conn") == {alpha_running.id}
    assert shown(status="completed", dag_id="ui_alpha", conn_id="fast_conn") == {alpha_done.id}
    assert '<section data-live="true">' in nav(pages)
    assert '<section data-live="false">' in nav(pages, status="completed")


def test_the_list_comes_in_pages(pages: Pages, make_emulator, emulator_conn, monkeypatch) -> None:
    monkeypatch.setattr(pages_module, "PAGE_SIZE", 2)
    server = make_emulator()
    emulator_conn(server)
    made = {airflow_batch(server, "ui_alpha").id for _ in range(3)}

    first, second = nav(pages), nav(pages, page="2")

    assert len(shown_batch_ids(first)) == 2
    assert set(shown_batch_ids(first)) | set(shown_batch_ids(second)) == made
    assert "page 1 of 2" in first
    assert 'href="./?status=&amp;dag_id=&amp;conn_id=&amp;page=2" rel="next"' in first
    assert shown_batch_ids(nav(pages, page="99")) == shown_batch_ids(second)


def test_a_fragment_is_only_the_live_part(pages: Pages, make_emulator, emulator_conn) -> None:
    emulator_conn(make_emulator())
    fragment = pages.get(f"{APP}/", params={"fragment": "1"}).text
    assert fragment.lstrip().startswith("<section data-live=")
    assert "<html" not in fragment


# -- permissions per DAG --


def test_a_user_denied_a_dag_sees_and_touches_none_of_its_batches(
    pages: Pages, make_emulator, emulator_conn
) -> None:
    server = make_emulator(**RUNNING)
    emulator_conn(server)
    secret, open_ = airflow_batch(server, "ui_secret"), airflow_batch(server, "ui_alpha")
    in_progress(server, secret.id)

    assert set(shown_batch_ids(nav(pages, user="admin"))) == {secret.id, open_.id}
    analyst_view = nav(pages, user="analyst")
    assert shown_batch_ids(analyst_view) == [open_.id]
    assert "ui_secret" not in analyst_view
    assert tab(pages, "ui_secret", user="analyst").status_code == 403
    cancel = pages.post(f"{APP}/batches/openai_batch_default/{secret.id}/cancel", "analyst", CANCEL_HEADERS)
    assert cancel.status_code == 403
    file = pages.get(f"{APP}/batches/openai_batch_default/{secret.id}/files/input", user="analyst")
    assert file.status_code == 403
    assert batch_status(server, secret.id) == "in_progress"
    assert tab(pages, "ui_secret", user="admin").status_code == 200
    assert tab(pages, "dag_this_airflow_does_not_know", user="admin").status_code == 403


def test_only_users_who_may_edit_task_instances_cancel(pages: Pages, make_emulator, emulator_conn) -> None:
    server = make_emulator(**RUNNING)
    emulator_conn(server)
    running = airflow_batch(server, "ui_alpha")
    in_progress(server, running.id)
    cancel_path = f"{APP}/batches/openai_batch_default/{running.id}/cancel"

    assert "data-cancel=" not in nav(pages, user="viewer")
    assert pages.post(cancel_path, "viewer", CANCEL_HEADERS).status_code == 403
    assert batch_status(server, running.id) == "in_progress"

    assert f'data-cancel="./batches/openai_batch_default/{running.id}/cancel"' in nav(pages, user="user")
    assert pages.post(cancel_path, "user").status_code == 400  # no X-Requested-By: a cross-site form
    answer = pages.post(cancel_path, "user", CANCEL_HEADERS)
    assert answer.status_code == 200
    assert answer.json() == {"id": running.id, "status": "cancelling"}
    assert batch_status(server, running.id) in ("cancelling", "cancelled")
    assert "data-cancel=" not in nav(pages, user="user")  # the listing was read again

    assert (
        pages.post(
            f"{APP}/batches/openai_batch_default/{plain_batch(server)}/cancel", "admin", CANCEL_HEADERS
        ).status_code
        == 404
    )
    assert (
        pages.post(f"{APP}/batches/no_such_conn/{running.id}/cancel", "admin", CANCEL_HEADERS).status_code
        == 404
    )


def test_files_stream_as_plain_text_to_those_who_may_read_xcoms(
    pages: Pages, make_emulator, emulator_conn
) -> None:
    server = make_emulator()
    emulator_conn(server)
    done = wait_for(client_for(server), airflow_batch(server, "ui_alpha", requests=chat_requests(3)).id)
    base = f"{APP}/batches/openai_batch_default/{done.id}/files"

    output = pages.get(f"{base}/output", user="viewer")

    assert output.status_code == 200
    assert output.headers["content-type"] == "text/plain; charset=utf-8"
    assert output.headers["x-content-type-options"] == "nosniff"
    assert sorted(json.loads(line)["custom_id"] for line in output.text.splitlines()) == ["r0", "r1", "r2"]
    assert pages.get(f"{base}/error", user="viewer").status_code == 404  # every request succeeded
    assert pages.get(f"{base}/secrets", user="viewer").status_code == 404


# -- escaping and secrets --


HOSTILE = "<script>alert(1)</script>"


def test_hostile_values_are_escaped_and_no_secret_reaches_a_page(pages: Pages, monkeypatch) -> None:
    from tests.support.connections import set_connection

    hostile = batch_json(
        'batch_"><img src=x onerror=alert(2)>',
        status=HOSTILE,
        model="<img src=x onerror=alert(3)>",
        metadata={
            "airflow_dag_id": "ui_alpha",
            "airflow_run_id": f"r\"'>{HOSTILE}",
            "airflow_task_id": "<svg onload=alert(4)>",
            "airflow_map_index": "-1",
            "airflow_part": "<b>part</b>",
        },
        request_counts={"total": 2, "completed": 1, "failed": 0},
        created_at=int(time.time()),
    )
    page = {"object": "list", "data": [hostile], "has_more": False}
    with ScriptedServer() as server:
        server.script("GET", "/batches", Reply(json=page))
        set_connection(
            monkeypatch,
            "hostile",
            conn_type="openai_batch",
            host=server.base_url,
            password="sk-hostile-secret-key-123456",
            extra={"batch_url_template": "javascript:alert(5)//{batch_id}"},
        )
        html = nav(pages)

    assert len(shown_batch_ids(html)) == 1
    for raw in ("<script>", "<img", "<svg", "<b>part", "javascript:", "onerror=alert(2)>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-status="unknown"' in html
    assert "sk-hostile-secret-key-123456" not in html
    assert server.base_url not in html


def test_an_unreachable_connection_is_named_without_its_address(pages: Pages, monkeypatch) -> None:
    from tests.support.connections import set_connection

    address = f"127.0.0.1:{free_port()}"
    set_connection(
        monkeypatch,
        "down",
        conn_type="openai_batch",
        host=f"http://{address}/v1",
        password="sk-down-key-98765",
        extra={"max_retries": 0},
    )

    html = nav(pages)

    assert "Connection <code>down</code>: the batches could not be listed (no answer)" in html
    assert address not in html
    assert "sk-down-key-98765" not in html


# -- the task instance tab --


def test_the_tab_shows_only_its_map_index(pages: Pages, make_emulator, emulator_conn) -> None:
    server = make_emulator(**RUNNING)
    emulator_conn(server)
    first, second = (airflow_batch(server, "ui_beta", task_id="embed", map_index=index) for index in (0, 1))

    assert shown_batch_ids(tab(pages, "ui_beta", "embed", "0").text) == [first.id]
    assert shown_batch_ids(tab(pages, "ui_beta", "embed", "1").text) == [second.id]
    assert shown_batch_ids(tab(pages, "ui_beta", "embed").text) == []  # unmapped: {MAP_INDEX} unfilled
    assert tab(pages, "ui_beta", "embed", "first").status_code == 404
    page = tab(pages, "ui_beta", "embed", "1").text
    # Assets are relative to the page's depth, whatever the base path.
    assert re.search(r'<script src="(\.\./){4}static/app\.js"', page)


def test_the_tab_of_a_real_run_shows_its_parts_their_errors_and_the_results(
    pages: Pages, run_dag, make_emulator, emulator_conn, tmp_path
) -> None:
    from airflow.sdk import DAG

    from airflow_batch_provider.operators.batch import OpenAIBatchOperator

    server = make_emulator()
    emulator_conn(server)
    requests = chat_requests(5)
    requests[1] = rejected_request("<i>rejected</i>")
    with DAG("ui_tab_run", schedule=None, start_date=START) as dag:
        OpenAIBatchOperator(
            task_id="run",
            requests=requests,
            max_requests_per_batch=3,
            destination=str(tmp_path),
            failure_threshold=0.5,
            poll_interval=0.1,
        )

    result = run_dag(dag)

    assert result.state == "success", result.states
    parts = batches_of(server, "ui_tab_run")
    assert len(parts) == 2
    run_id = parts[0]["metadata"]["airflow_run_id"]
    url = f"{APP}/task-instance/ui_tab_run/run/{{MAP_INDEX}}/{quote(run_id, safe='')}"
    html = pages.get(url, user="viewer").text
    assert set(shown_batch_ids(html)) == {part["id"] for part in parts}
    assert "First errors of" in html
    assert "&lt;i&gt;rejected&lt;/i&gt;</code></td><td>400</td>" in html
    summary = result.xcom("run")
    assert f"<code>{summary['output_path']}</code>" in html
    assert f"<code>{summary['error_path']}</code>" in html


def test_the_airflow_3_1_user_dependency_reads_the_header_or_the_cookie(pages: Pages) -> None:
    """Airflow 3.1's get_user ignores the session cookie; the plugin's twin (used there) reads both."""
    from fastapi.testclient import TestClient

    from tests.support.airflow_api import token_for

    app = FastAPI()

    @app.get("/who")
    async def who(user: Annotated[Any, Depends(_user_from_header_or_cookie)]) -> str:
        return str(user.username)

    with TestClient(app) as client:
        assert (
            client.get("/who", headers={"Authorization": f"Bearer {token_for('viewer')}"}).json() == "viewer"
        )
        client.cookies.set("_token", token_for("op"))
        assert client.get("/who").json() == "op"
        client.cookies.set("_token", "forged")
        assert client.get("/who").status_code == 403
        client.cookies.clear()
        assert client.get("/who").status_code == 401
