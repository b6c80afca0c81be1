"""The HTML pages, the CLI's arguments, fault wiring and EmulatorServer itself."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from airflow_batch_provider.emulator.cli import build_parser, settings_from_args
from airflow_batch_provider.emulator.faults import FaultRule, FaultSettings
from airflow_batch_provider.emulator.server import EmulatorServer
from tests.support.requests import chat_request
from tests.support.sdk import client_for, submit, submit_and_wait


def _page(emulator: EmulatorServer, path: str) -> httpx.Response:
    return httpx.get(f"{emulator.url}{path}", auth=("anyone", str(emulator.api_key)))


def test_pages_list_batches_and_link_their_files(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = submit_and_wait(client, [chat_request("a"), chat_request("b")])
    assert batch.output_file_id is not None

    listing = _page(emulator, "/")
    assert listing.status_code == 200
    assert listing.headers["content-type"].startswith("text/html")
    assert f'href="/batches/{batch.id}"' in listing.text
    assert f'href="/files/{batch.output_file_id}/content"' in listing.text

    detail = _page(emulator, f"/batches/{batch.id}")
    assert detail.status_code == 200
    assert "completed" in detail.text
    assert "2/2 done" in detail.text
    content = _page(emulator, f"/files/{batch.output_file_id}/content")
    assert content.text == client.files.content(batch.output_file_id).text
    assert _page(emulator, "/batches/batch_nope").status_code == 404


def test_page_shows_input_problems(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = submit_and_wait(client, ["{broken"])

    detail = _page(emulator, f"/batches/{batch.id}").text
    assert "invalid_json_line" in detail
    assert "<td>1</td>" in detail


def test_batch_page_heads_with_the_batch_id_and_escapes_what_clients_sent(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = submit(client, [chat_request("a")], metadata={"note": "<script>alert(1)</script>"})

    detail = _page(emulator, f"/batches/{batch.id}").text

    assert f'<h1 class="batch-id">{batch.id}</h1>' in detail
    assert "<script>" not in detail
    assert "note: &lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_pages_ask_a_browser_for_the_key(emulator: EmulatorServer) -> None:
    response = httpx.get(f"{emulator.url}/")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{emulator.url}/", auth=("u", "sk-wrong")).status_code == 401


def test_page_without_api_key(make_emulator) -> None:  # type: ignore[no-untyped-def]
    server = make_emulator(api_key=None)
    assert httpx.get(f"{server.url}/").status_code == 200
    assert client_for(server).batches.list().data == []


def test_cli_arguments_become_settings(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--api-key",
            "sk-cli",
            "--completion-window-seconds",
            "5",
            "--request-delay",
            "0",
            "--concurrency",
            "3",
            "--fault",
            "GET /v1/batches/*:429:count=2",
            "--fault-seed",
            "7",
            "--enable-admin",
            "--upstream",
            "http://127.0.0.1:1/v1",
            "--upstream-api-key",
            "sk-up",
        ]
    )
    settings = settings_from_args(args)

    assert settings.data_dir == tmp_path
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "sk-cli"
    assert (settings.completion_window_seconds, settings.request_delay, settings.concurrency) == (5, 0, 3)
    assert settings.faults.rules == [FaultRule(method="GET", path="/v1/batches/*", status=429, count=2)]
    assert settings.faults.seed == 7
    assert settings.enable_admin
    assert settings.upstream_url == "http://127.0.0.1:1/v1"
    assert "sk-cli" not in repr(settings)
    assert "sk-up" not in repr(settings)


def test_cli_model_flags_become_settings() -> None:
    settings = settings_from_args(
        build_parser().parse_args(["--model", "ft:a", "--model", "b", "--any-model"])
    )
    defaults = settings_from_args(build_parser().parse_args([]))

    assert (settings.models, settings.any_model) == (("ft:a", "b"), True)
    assert (defaults.models, defaults.any_model) == ((), False)
    assert "--model NAME" in build_parser().format_help()


def test_cli_retention_flags_become_settings() -> None:
    args = ["--retention-seconds", "60", "--batch-retention-seconds", "120"]
    settings = settings_from_args(build_parser().parse_args(args))
    defaults = settings_from_args(build_parser().parse_args([]))

    assert (settings.retention_seconds, settings.batch_retention_seconds) == (60, 120)
    assert (defaults.retention_seconds, defaults.batch_retention_seconds) == (30 * 24 * 60 * 60, None)


def test_cli_rejects_a_bad_fault(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--fault", "/v1/batches:teapot"])
    assert "teapot" in capsys.readouterr().err


def test_faults_from_settings_reach_the_client(make_emulator) -> None:  # type: ignore[no-untyped-def]
    rule = FaultRule(method="GET", path="/v1/batches", status=503, count=1)
    client = client_for(make_emulator(faults=FaultSettings(rules=[rule])))

    with pytest.raises(openai.InternalServerError):
        client.batches.list()
    assert client.batches.list().data == []


def test_admin_endpoint_only_with_the_flag(make_emulator) -> None:  # type: ignore[no-untyped-def]
    plain = make_emulator()
    headers = {"Authorization": f"Bearer {plain.api_key}"}
    assert httpx.get(f"{plain.url}/_emulator/faults", headers=headers).status_code == 404

    admin = make_emulator(enable_admin=True)
    rules = {"rules": [{"method": "GET", "path": "/v1/files", "status": 429, "retry_after": 2}]}
    assert httpx.put(f"{admin.url}/_emulator/faults", json=rules, headers=headers).status_code == 200
    with pytest.raises(openai.RateLimitError) as raised:
        client_for(admin).files.list()
    assert raised.value.response.headers["retry-after"] == "2"
    assert httpx.delete(f"{admin.url}/_emulator/faults", headers=headers).status_code == 200
    assert client_for(admin).files.list().data == []


def test_server_picks_a_free_port_and_cleans_up() -> None:
    with EmulatorServer() as first, EmulatorServer() as second:
        assert first.base_url != second.base_url
        assert first.base_url.startswith("http://127.0.0.1:")
        data_dir = first.data_dir
        assert data_dir.is_dir()
        assert first.api_key is None
    assert not data_dir.exists()


def test_server_keeps_a_given_data_dir_across_restarts(tmp_path: Path) -> None:
    with EmulatorServer(data_dir=tmp_path, request_delay=0, validation_delay=0, finalizing_delay=0) as server:
        client = client_for(server)
        batch_id = submit_and_wait(client, [chat_request("a")]).id
    with EmulatorServer(data_dir=tmp_path) as server:
        assert client_for(server).batches.retrieve(batch_id).status == "completed"
    assert (tmp_path / "emulator.sqlite3").exists()
