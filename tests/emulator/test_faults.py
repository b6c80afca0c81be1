"""Fault injection: the CLI syntax, the picking rules, and each fault seen over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from airflow_batch_provider.emulator.faults import (
    ADMIN_PATH,
    FaultRule,
    FaultSettings,
    FaultSpecError,
    FaultState,
    parse_cli_fault,
)
from airflow_batch_provider.emulator.server import EmulatorProcess, EmulatorServer

API_KEY = "sk-faults-test"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


# --- the CLI syntax --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "GET /v1/batches/*:429:rate=0.5:retry_after=1",
            FaultRule(method="GET", path="/v1/batches/*", status=429, rate=0.5, retry_after=1),
        ),
        ("POST /v1/files:500:count=2", FaultRule(method="POST", path="/v1/files", status=500, count=2)),
        ("*:latency=0.2", FaultRule(latency=0.2)),
        (
            "get /v1/files/*/content:drop:rate=0.1",
            FaultRule(method="GET", path="/v1/files/*/content", drop=True, rate=0.1),
        ),
    ],
)
def test_cli_specs_parse_and_describe_themselves(spec: str, expected: FaultRule):
    rule = parse_cli_fault(spec)

    assert rule == expected
    assert parse_cli_fault(rule.describe()) == rule


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("/v1/files", "missing ':ACTION'"),
        ("/v1/files:explode", "unknown action 'explode'"),
        ("/v1/files:500:often=1", "unknown option 'often=1'"),
        ("/v1/files:500:rate=2", "rate: Input should be less than or equal to 1"),
        ("/v1/files:200", "status: Input should be greater than or equal to 400"),
        ("/v1/files:latency=soon", "latency: Input should be a valid number"),
        ("/v1/files:latency=0", "exactly one of 'status', 'drop' or a positive 'latency'"),
    ],
)
def test_bad_cli_specs_name_the_spec_and_the_problem(spec: str, complaint: str):
    with pytest.raises(FaultSpecError) as raised:
        parse_cli_fault(spec)

    assert repr(spec) in str(raised.value)
    assert complaint in str(raised.value)


# --- picking ---------------------------------------------------------------------------------------


def test_count_limits_a_rule_and_shows_what_is_left():
    state = FaultState(FaultSettings(rules=[FaultRule(path="/v1/files", status=500, count=2)]))

    picks = [state.pick("GET", "/v1/files")[1] for _ in range(3)]

    assert [rule.status if rule else None for rule in picks] == [500, 500, None]
    assert state.settings.rules[0].count == 0
    assert not state.active


def test_latencies_add_up_and_the_first_error_wins():
    state = FaultState(
        FaultSettings(
            rules=[
                FaultRule(latency=0.1),
                FaultRule(method="POST", latency=0.2),
                FaultRule(path="/v1/batches*", status=503),
                FaultRule(path="/v1/batches*", status=500),
            ]
        )
    )

    assert state.pick("GET", "/v1/batches/b1") == (0.1, FaultRule(path="/v1/batches*", status=503))
    assert state.pick("POST", "/v1/files") == (pytest.approx(0.3), None)


def test_a_seed_makes_the_picks_reproducible():
    settings = FaultSettings(rules=[FaultRule(status=500, rate=0.3)], seed=42)

    def pattern() -> list[bool]:
        state = FaultState(settings)
        return [state.pick("GET", "/v1/files")[1] is not None for _ in range(200)]

    first = pattern()
    assert first == pattern()
    assert 30 < sum(first) < 90  # about 60 of 200


# --- over real HTTP, changed at runtime through the admin endpoint ---------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(api_key=API_KEY, enable_admin=True) as server:
        yield server


@pytest.fixture
def http(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as client:
        yield client
        client.delete(ADMIN_PATH).raise_for_status()


def set_faults(http: httpx.Client, *specs: str, seed: int | None = None) -> dict:
    settings = FaultSettings(rules=[parse_cli_fault(spec) for spec in specs], seed=seed)
    response = http.put(ADMIN_PATH, json=settings.model_dump(mode="json"))
    response.raise_for_status()
    return response.json()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_in_the_live_shape(http: httpx.Client, status: int):
    set_faults(http, f"GET /v1/files:{status}:count=1")

    failed = http.get("/v1/files")
    recovered = http.get("/v1/files")

    assert failed.status_code == status
    assert failed.json()["error"]["type"] == "server_error"
    assert failed.headers["x-request-id"].startswith("req_")
    assert recovered.status_code == 200
    assert http.get(ADMIN_PATH).json()["rules"][0]["count"] == 0


def test_error_rate_over_many_requests(http: httpx.Client):
    set_faults(http, "GET /v1/batches:503:rate=0.5", seed=7)

    statuses = [http.get("/v1/batches").status_code for _ in range(60)]

    assert set(statuses) == {200, 503}
    assert 15 <= statuses.count(503) <= 45
    set_faults(http, "GET /v1/batches:503:rate=0.5", seed=7)  # same seed, same picks
    assert [http.get("/v1/batches").status_code for _ in range(60)] == statuses


def test_rate_limit_with_retry_after(http: httpx.Client, server: EmulatorServer):
    set_faults(http, "GET /v1/batches/*:429:count=1:retry_after=1.5")

    limited = http.get("/v1/batches/batch_unknown")

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.headers["retry-after-ms"] == "1500"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    # The official SDK retries it after the delay it was given, then gets the real answer.
    set_faults(http, "GET /v1/batches/*:429:count=1:retry_after=0.3")
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=1) as client:
        started = time.monotonic()
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_unknown")
    assert time.monotonic() - started >= 0.3


def test_added_latency(http: httpx.Client):
    set_faults(http, "GET /v1/files:latency=0.4")

    started = time.monotonic()
    response = http.get("/v1/files")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


def read_into(received: bytearray, http: httpx.Client, url: str) -> None:
    with http.stream("GET", url) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += chunk


def test_dropped_connection_mid_response(http: httpx.Client, server: EmulatorServer):
    content = b"".join(b'{"line": %d, "padding": "%s"}\n' % (index, b"x" * 200) for index in range(2_000))
    uploaded = http.post("/v1/files", files={"file": ("data.jsonl", content)}, data={"purpose": "user_data"})
    uploaded.raise_for_status()
    file_id = uploaded.json()["id"]
    set_faults(http, f"GET /v1/files/{file_id}/content:drop:count=1")

    received = bytearray()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        read_into(received, http, f"/v1/files/{file_id}/content")

    assert 0 < len(received) < len(content)
    assert content.startswith(received)
    assert http.get(f"/v1/files/{file_id}/content").content == content


def test_dropped_connection_before_a_small_body_completes(http: httpx.Client):
    set_faults(http, "GET /v1/batches:drop:count=1")

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.get("/v1/batches")

    assert http.get("/v1/batches").status_code == 200


def test_admin_endpoint_shows_replaces_and_clears(http: httpx.Client):
    shown = set_faults(http, "*:500", "POST /v1/files:latency=0.1", seed=3)

    assert shown["seed"] == 3
    assert [FaultRule.model_validate(rule).describe() for rule in shown["rules"]] == [
        "* *:500",
        "POST /v1/files:latency=0.1",
    ]
    assert http.get("/v1/files").status_code == 500
    assert http.get(ADMIN_PATH).status_code == 200  # never faulted itself

    cleared = http.delete(ADMIN_PATH)

    assert cleared.json()["rules"] == []
    assert http.get("/v1/files").status_code == 200


def test_admin_endpoint_rejects_a_bad_rule(http: httpx.Client):
    response = http.put(ADMIN_PATH, json={"rules": [{"path": "*", "status": 200}]})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert http.get(ADMIN_PATH).json()["rules"] == []


def test_admin_endpoint_needs_the_flag():
    with EmulatorServer(api_key=API_KEY) as server:
        response = httpx.get(f"{server.url}{ADMIN_PATH}", headers=AUTH)

    assert response.status_code == 404


def test_faults_from_the_command_line():
    with EmulatorProcess("--api-key", API_KEY, "--fault", "GET /v1/files:503:count=1") as process:
        first = httpx.get(f"{process.base_url}/files", headers=AUTH)
        second = httpx.get(f"{process.base_url}/files", headers=AUTH)

    assert (first.status_code, second.status_code) == (503, 200)
