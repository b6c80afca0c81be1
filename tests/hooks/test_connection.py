"""How the hook reads its connection, shows its form in the UI, and tests it."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest

from airflow_batch_provider.client.settings import DEFAULT_BASE_URL
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.hooks.connection import prices_from_extra
from tests.support.connections import set_connection
from tests.support.scripted_server import Reply, ScriptedServer, api_error, batch_json

API_KEY = "sk-connection-secret-abcdef123456"


def settings_of(monkeypatch, **fields):
    set_connection(monkeypatch, "under_test", **fields)
    return OpenAIBatchHook("under_test").settings


# -- reading the connection --


def test_every_field_of_an_openai_batch_connection(monkeypatch):
    settings = settings_of(
        monkeypatch,
        conn_type="openai_batch",
        host="https://gw.example/openai/v1/",
        password=API_KEY,
        extra={
            "organization": "org-1",
            "project": "proj_1",
            "timeout": "12.5",
            "max_retries": "3",
            "api_type": "azure",
            "api_version": "2024-10-21",
            "batch_url_template": "https://gw.example/batches/{batch_id}",
        },
    )

    assert settings.base_url == "https://gw.example/openai/v1"
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == API_KEY
    assert (settings.organization, settings.project) == ("org-1", "proj_1")
    assert (settings.timeout, settings.max_retries) == (12.5, 3)
    assert (settings.api_type, settings.api_version) == ("azure", "2024-10-21")
    assert settings.secret_headers["api-key"] == API_KEY
    assert settings.query_params == {"api-version": "2024-10-21"}
    assert API_KEY not in repr(settings)
    assert API_KEY not in settings.model_dump_json()


def test_defaults(monkeypatch):
    settings = settings_of(monkeypatch, conn_type="openai_batch", password=API_KEY)

    assert settings.base_url == DEFAULT_BASE_URL
    assert (settings.timeout, settings.max_retries, settings.api_type) == (60.0, 5, "openai")
    assert settings.secret_headers == {"Authorization": f"Bearer {API_KEY}"}
    assert settings.query_params == {}


def test_official_openai_connection(monkeypatch):
    settings = settings_of(
        monkeypatch,
        conn_type="openai",
        host="https://ignored.example/v1",
        password=API_KEY,
        extra={"openai_client_kwargs": {"base_url": "https://proxy.example/v1", "organization": "org-2"}},
    )

    assert settings.base_url == "https://proxy.example/v1"
    assert settings.organization == "org-2"
    assert settings.secret_headers["OpenAI-Organization"] == "org-2"


def test_a_bare_host_from_a_connection_uri(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_FROM_URI", "openai-batch://:sk-uri-key-12345@127.0.0.1:8123")

    settings = OpenAIBatchHook("from_uri").settings

    assert settings.base_url == "http://127.0.0.1:8123/v1"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("http://127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("http://127.0.0.1:9000/v1/", 8000, "http://127.0.0.1:9000/v1"),
        ("gw.example/openai/v1", None, "https://gw.example/openai/v1"),
        ("localhost", 8000, "http://localhost:8000/v1"),
    ],
)
def test_host_and_port_make_the_base_url(monkeypatch, host, port, expected):
    assert settings_of(monkeypatch, conn_type="openai_batch", host=host, port=port).base_url == expected


def test_prefixed_extras_of_old_forms_are_read(monkeypatch):
    settings = settings_of(monkeypatch, conn_type="openai_batch", extra={"extra__openai_batch__project": "p"})
    assert settings.project == "p"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"api_type": "gcp"}, "api_type"),
        ({"timeout": "soon"}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_a_bad_extra_is_named(monkeypatch, extra, named):
    with pytest.raises(ValueError, match=f"Connection 'under_test' cannot be used: extra '{named}'"):
        settings_of(monkeypatch, conn_type="openai_batch", extra=extra)


# -- the batch page link --


@pytest.mark.parametrize(
    ("host", "extra", "expected"),
    [
        ("https://api.openai.com/v1", {}, "https://platform.openai.com/batches/batch_1"),
        ("http://127.0.0.1:8000/v1", {}, "http://127.0.0.1:8000/batches/batch_1"),
        ("http://localhost:9/v1", {}, "http://localhost:9/batches/batch_1"),
        ("http://[::1]:9/v1", {}, "http://[::1]:9/batches/batch_1"),
        ("http://user:pw@127.0.0.1:8000/v1", {}, "http://127.0.0.1:8000/batches/batch_1"),
        ("https://gw.example/v1", {}, None),
        (
            "https://api.openai.com/v1",
            {"batch_url_template": "https://gw.example/b/{batch_id}?x=1"},
            "https://gw.example/b/batch_1?x=1",
        ),
    ],
)
def test_batch_page_url(monkeypatch, host, extra, expected):
    set_connection(monkeypatch, "linked", conn_type="openai_batch", host=host, extra=extra)
    assert OpenAIBatchHook("linked").batch_page_url("batch_1") == expected


# -- test_connection --


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def test_connection_ok(server, monkeypatch):
    set_connection(monkeypatch, "good", conn_type="openai_batch", host=server.base_url, password=API_KEY)
    server.script("GET", "/batches", Reply(json={"object": "list", "data": [], "has_more": False}))

    ok, message = OpenAIBatchHook("good").test_connection()

    assert ok, message
    assert server.base_url in message
    assert server.received()[0].query == {"limit": ["1"]}


def test_connection_with_a_bad_key(server, monkeypatch):
    set_connection(monkeypatch, "bad_key", conn_type="openai_batch", host=server.base_url, password=API_KEY)
    server.script("GET", "/batches", api_error(401, f"Incorrect API key provided: {API_KEY}"))

    ok, message = OpenAIBatchHook("bad_key").test_connection()

    assert not ok
    assert "Check the API key of this connection" in message
    assert API_KEY not in message
    assert len(server.received()) == 1


def test_connection_with_a_wrong_base_url(server, monkeypatch):
    set_connection(monkeypatch, "bad_url", conn_type="openai_batch", host=server.base_url + "/oops")

    ok, message = OpenAIBatchHook("bad_url").test_connection()

    assert not ok
    assert "HTTP 404" in message
    assert "Base URL of this connection" in message


def test_connection_to_nowhere(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_connection(monkeypatch, "nowhere", conn_type="openai_batch", host=f"http://127.0.0.1:{port}/v1")

    ok, message = OpenAIBatchHook("nowhere").test_connection()

    assert not ok
    assert "Connection refused" in message
    assert "Base URL of this connection" in message


def test_connection_that_does_not_exist():
    ok, message = OpenAIBatchHook("no_such_connection").test_connection()
    assert not ok
    assert "no_such_connection" in message


def test_a_test_never_names_airflows_temporary_connection_id(server, monkeypatch):
    """Airflow tests a form's fields under a random id, e.g. 'mt5YyHSi': the user never chose it."""
    set_connection(
        monkeypatch, "mt5YyHSi", conn_type="openai_batch", host=server.base_url, extra={"timeout": "soon"}
    )
    ok, bad_extra = OpenAIBatchHook("mt5YyHSi").test_connection()
    assert not ok
    assert bad_extra.startswith("This connection cannot be used: extra 'timeout'")

    set_connection(monkeypatch, "mt5YyHSi", conn_type="openai_batch", host=server.base_url, password=API_KEY)
    server.script("GET", "/batches", api_error(401, "Incorrect API key provided."))
    ok, bad_key = OpenAIBatchHook("mt5YyHSi").test_connection()
    assert not ok
    assert "Check the API key of this connection" in bad_key

    for message in (bad_extra, bad_key):
        assert "mt5YyHSi" not in message


def test_the_official_openai_connection_shape_works(server, monkeypatch):
    set_connection(
        monkeypatch,
        "openai_default",
        conn_type="openai",
        password=API_KEY,
        extra={
            "openai_client_kwargs": {
                "base_url": server.base_url,
                "organization": "org-1",
                "project": "proj_1",
            }
        },
    )
    server.script("GET", "/batches/b1", Reply(json=batch_json("b1")))

    OpenAIBatchHook("openai_default").get_batch("b1")

    (request,) = server.received()
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["openai-organization"] == "org-1"
    assert request.headers["openai-project"] == "proj_1"


# -- the connection form in Airflow's UI --


@pytest.fixture(scope="module")
def providers_manager():
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_airflow_knows_the_hook():
    try:  # Airflow 3.2+: what workers read
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:  # Airflow 3.1
        from airflow.providers_manager import ProvidersManager as Manager

    hook_info = Manager().hooks["openai_batch"]

    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_batch_provider.hooks.batch.OpenAIBatchHook"
    assert hook_info.hook_name == "OpenAI Batch"
    assert hook_info.connection_testable


def test_providers_manager_reads_the_form(providers_manager):
    if hasattr(providers_manager, "_connection_form_widgets_from_metadata"):  # Airflow 3.2+
        widgets = providers_manager._connection_form_widgets_from_metadata
        behaviour = providers_manager._field_behaviours_from_metadata["openai_batch"]
    else:  # Airflow 3.1 builds the form from the hook's WTForms fields, with flask_appbuilder only
        pytest.importorskip("flask_appbuilder", reason="Airflow 3.1 shows provider forms only with FAB")
        widgets = providers_manager.connection_form_widgets
        behaviour = providers_manager.field_behaviours["openai_batch"]

    assert {
        name.removeprefix("extra__openai_batch__")
        for name in widgets
        if name.startswith("extra__openai_batch__")
    } == {
        "organization",
        "project",
        "timeout",
        "max_retries",
        "api_type",
        "api_version",
        "batch_url_template",
    }
    assert widgets["extra__openai_batch__api_type"].field["schema"]["enum"] == ["openai", "azure"]
    assert behaviour["hidden_fields"] == ["schema", "port", "login"]
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert behaviour["placeholders"]["extra__openai_batch__organization"] == "org-..."


def test_the_ui_form_metadata(providers_manager):
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    if not hasattr(providers_manager, "_connection_form_widgets_from_metadata"):  # Airflow 3.1
        pytest.importorskip("flask_appbuilder", reason="Airflow 3.1 shows provider forms only with FAB")

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "openai_batch"]

    assert meta.hook_name == "OpenAI Batch"
    assert meta.standard_fields is not None
    assert meta.standard_fields.host is not None
    assert meta.standard_fields.host.title == "Base URL"
    assert meta.standard_fields.password is not None
    assert meta.standard_fields.password.title == "API key"
    assert meta.standard_fields.login is not None
    assert meta.standard_fields.login.hidden
    assert meta.extra_fields is not None
    assert meta.extra_fields["max_retries"]["schema"]["type"] == ["integer", "null"]
    assert meta.extra_fields["timeout"]["value"] == 60.0


def test_the_legacy_behaviour_passes_airflows_schema(providers_manager):
    # Airflow < 3.2 reads the form from the hook's methods instead of the provider info.
    behaviour = OpenAIBatchHook.get_ui_field_behaviour()

    providers_manager._customized_form_fields_schema_validator.validate(behaviour)
    assert behaviour["relabeling"]["host"] == "Base URL"


def test_the_legacy_widgets_render_like_the_declared_fields(monkeypatch):
    # Airflow < 3.2 builds the form from WTForms fields; without FAB installed its UI
    # service swaps in stand-ins, as done here.
    import sys
    from unittest import mock

    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ConnectionFormWidgetInfo

    stand_ins = {
        "wtforms": {
            "StringField": HookMetaService.MockStringField,
            "IntegerField": HookMetaService.MockIntegerField,
        },
        "wtforms.validators": {"Optional": HookMetaService.MockOptional, "any_of": HookMetaService.MockEnum},
        "flask_babel": {"lazy_gettext": str},
        "flask_appbuilder.fieldwidgets": {"BS3TextFieldWidget": HookMetaService.MockAnyWidget},
    }
    for module_name, attributes in stand_ins.items():
        monkeypatch.setitem(sys.modules, module_name, mock.MagicMock(**attributes))

    widgets = {
        f"extra__openai_batch__{name}": ConnectionFormWidgetInfo("OpenAIBatchHook", "p", field, name, False)
        for name, field in OpenAIBatchHook.get_connection_form_widgets().items()
    }
    rendered = HookMetaService._convert_extra_fields(widgets)["openai_batch"]

    assert rendered["api_type"]["schema"]["enum"] == ["openai", "azure"]
    assert rendered["max_retries"]["schema"]["type"] == ["integer", "null"]
    assert rendered["max_retries"]["value"] == 5
    assert rendered["organization"]["schema"]["title"] == "Organization ID"


# -- prices for the estimated cost --


def test_prices_come_from_the_extra_as_an_object_or_a_json_string(monkeypatch):
    prices = {"gpt-4o-mini": {"input": 0.075, "output": 0.3, "cached_input": 0.0375}}
    set_connection(monkeypatch, "priced", conn_type="openai_batch", extra={"prices": prices})
    set_connection(monkeypatch, "as_text", conn_type="openai_batch", extra={"prices": json.dumps(prices)})
    set_connection(monkeypatch, "unpriced", conn_type="openai_batch")

    assert asyncio.run(OpenAIBatchHook("priced").aget_prices()) == prices
    assert asyncio.run(OpenAIBatchHook("as_text").aget_prices()) == prices
    assert asyncio.run(OpenAIBatchHook("unpriced").aget_prices()) is None


@pytest.mark.parametrize(
    ("prices", "where"),
    [
        ({"gpt-4o": {"input": 1}}, "prices.gpt-4o.output"),
        ({"gpt-4o": {"input": -1, "output": 1}}, "prices.gpt-4o.input"),
        ({"gpt-4o": {"input": 1, "output": 1, "per": "token"}}, "prices.gpt-4o.per"),
        ("{not json", "prices"),
    ],
)
def test_bad_prices_are_named(prices, where):
    with pytest.raises(ValueError, match=f"Connection 'priced' cannot be used: extra '{re.escape(where)}'"):
        prices_from_extra({"prices": prices}, "priced")
