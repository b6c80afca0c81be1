"""OpenAIBatchHook: an Airflow connection turned into a client of the OpenAI Files and Batches APIs."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

from airflow.sdk import BaseHook

from airflow_batch_provider.client import (
    AsyncBatchClient,
    BatchClient,
    ClientSettings,
    RetryPolicy,
)
from airflow_batch_provider.client.loop_cache import loop_cache
from airflow_batch_provider.hooks.connection import (
    CONN_FIELDS,
    CONN_TYPE,
    UI_FIELD_BEHAVIOUR,
    prices_from_extra,
    settings_from_connection,
)
from airflow_batch_provider.models import Batch, ExpiresAfter, FileDeleted, FileObject

SETTINGS_MAX_AGE = 300.0
"""Seconds the hooks of one event loop share a reading of a connection before reading it again
(which picks up a rotated key)."""


class OpenAIBatchHook(BaseHook):
    """Talk to the OpenAI Batch and Files APIs, or to any server that speaks them.

    The hook reads the connection into :class:`~airflow_batch_provider.client.ClientSettings`
    and hands the calls to the Airflow-free client: sync methods (for operators) to a
    :class:`~airflow_batch_provider.client.BatchClient` on ``requests``, async methods (for
    triggers) to an :class:`~airflow_batch_provider.client.AsyncBatchClient` on ``httpx``,
    whose connections every hook of one event loop shares. Both retry connection errors,
    timeouts, 408, 429 and 5xx alike, and raise
    :class:`~airflow_batch_provider.exceptions.OpenAIBatchAPIError` for everything else.

    The connection (type ``openai_batch``; ``openai`` connections of the official provider
    work too): host = base URL (default ``https://api.openai.com/v1``), password = API key,
    extras ``organization``, ``project``, ``timeout`` (seconds, default 60),
    ``max_retries`` (default 5), ``api_type`` (``openai`` or ``azure``), ``api_version``,
    ``batch_url_template``, and ``prices`` (per million tokens by model: the estimated cost
    on the "OpenAI Batches" page).

    :param conn_id: the Airflow connection to use (default ``openai_batch_default``).
    :param kwargs: passed to :class:`~airflow.sdk.BaseHook` (``logger_name``).
    """

    conn_name_attr = "conn_id"
    default_conn_name = "openai_batch_default"
    conn_type = CONN_TYPE
    hook_name = "OpenAI Batch"

    def __init__(self, conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    # -- connection form (Airflow < 3.2; newer versions read the provider info instead) --

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields of the connection form, as WTForms fields."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import Optional, any_of

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            validators: list[Any] = [Optional()]
            if "enum" in schema:
                validators.append(any_of(schema["enum"]))
            field_class = IntegerField if "integer" in schema["type"] else StringField
            widgets[name] = field_class(
                lazy_gettext(spec["label"]),
                description=spec["description"],
                default=schema.get("default"),
                validators=validators,
                widget=BS3TextFieldWidget(),
            )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabelled, hidden and placeholder fields of the connection form."""
        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    # -- connection and clients --

    @cached_property
    def settings(self) -> ClientSettings:
        """The connection, read once (blocking: use :meth:`aget_settings` in async code)."""
        conn = self.get_connection(self.conn_id)
        return settings_from_connection(conn, conn.extra_dejson)

    async def aget_settings(self) -> ClientSettings:
        """The connection, read without blocking the event loop; it also fills :attr:`settings`.

        The hooks of one event loop share one reading per connection, made again once it is
        :data:`SETTINGS_MAX_AGE` seconds old (picking up a rotated key): a triggerer running a
        thousand triggers reads each connection once, not a thousand times.
        """
        cache = await loop_cache()
        settings = await cache.get(("settings", self.conn_id), self._read_settings, max_age=SETTINGS_MAX_AGE)
        self.__dict__["settings"] = settings
        return settings

    async def aget_prices(self) -> dict[str, dict[str, float]] | None:
        """Prices per million tokens by model, from the connection's extra ``prices`` (None when unset).

        Read without blocking and shared like :meth:`aget_settings`. Shape:
        ``{"gpt-4o-mini": {"input": 0.075, "cached_input": 0.0375, "output": 0.30}}``.

        :raises ValueError: the extra holds prices of another shape; the message says where.
        """
        cache = await loop_cache()

        async def read() -> dict[str, dict[str, float]] | None:
            _, extra = await self._read_connection()
            return prices_from_extra(extra, self.conn_id)

        return await cache.get(("prices", self.conn_id), read, max_age=SETTINGS_MAX_AGE)

    async def _read_settings(self) -> ClientSettings:
        conn, extra = await self._read_connection()
        return settings_from_connection(conn, extra)

    async def _read_connection(self) -> tuple[Any, dict[str, Any]]:
        """The connection and its parsed extra, read without blocking the event loop."""
        try:
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )
        except ImportError:  # pragma: no cover - common-compat older than 1.23
            from asgiref.sync import sync_to_async

            conn = await sync_to_async(self.get_connection)(self.conn_id)
            extra = await sync_to_async(lambda: conn.extra_dejson)()
        else:
            conn = await get_async_connection(self.conn_id, hook=self)
            extra = await get_async_extra_dejson(conn)
        return conn, extra

    @cached_property
    def client(self) -> BatchClient:
        """The blocking client of the sync methods; it logs to the task's log."""
        return BatchClient(self.settings, log=self.log)

    async def aget_client(self) -> AsyncBatchClient:
        """The non-blocking client of the async methods, one per connection reading and event loop
        (the hooks of a triggerer's triggers share it); it logs to the task's (or trigger's) log."""
        settings = await self.aget_settings()

        async def make() -> AsyncBatchClient:
            return AsyncBatchClient(settings, log=self.log)

        client: AsyncBatchClient = await (await loop_cache()).get(("client", settings), make)
        return client

    @property
    def retry_policy(self) -> RetryPolicy:
        """How the sync methods retry: ``max_retries`` from the connection."""
        return self.client.retry_policy

    def get_conn(self) -> BatchClient:
        """The client the sync methods use."""
        return self.client

    def close(self) -> None:
        """Close the sync client's connections (new ones open on next use)."""
        if "client" in self.__dict__:
            self.__dict__.pop("client").close()

    async def aclose(self) -> None:
        """Close the shared async connections of this connection in the running event loop."""
        await (await self.aget_client()).aclose()

    def batch_page_url(self, batch_id: str) -> str | None:
        """The web page of a batch for the operators' extra link, or None if there is none.

        The connection's ``batch_url_template`` wins; ``api.openai.com`` links to
        ``https://platform.openai.com/batches/<id>``; a loopback host (the emulator) to
        its own ``/batches/<id>`` page.
        """
        return self.settings.batch_page_url(batch_id)

    # -- sync API: see BatchClient for each method --

    def upload_file(
        self, file: str | os.PathLike[str] | BinaryIO, purpose: str = "batch", filename: str | None = None
    ) -> FileObject:
        """Upload a file, streamed (:meth:`BatchClient.upload_file`)."""
        return self.client.upload_file(file, purpose=purpose, filename=filename)

    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        output_expires_after: int | Mapping[str, Any] | ExpiresAfter | None = None,
    ) -> Batch:
        """Create a batch from an uploaded input file (:meth:`BatchClient.create_batch`)."""
        return self.client.create_batch(
            input_file_id,
            endpoint,
            completion_window=completion_window,
            metadata=metadata,
            output_expires_after=output_expires_after,
        )

    def get_batch(self, batch_id: str) -> Batch:
        """Retrieve a batch."""
        return self.client.get_batch(batch_id)

    def cancel_batch(self, batch_id: str) -> Batch:
        """Ask the API to cancel a batch; it answers ``cancelling`` and keeps partial results."""
        return self.client.cancel_batch(batch_id)

    def list_batches(self, limit: int = 100) -> Iterator[Batch]:
        """Every batch of the account, newest first, page after page (:meth:`BatchClient.list_batches`)."""
        return self.client.list_batches(limit=limit)

    def get_file(self, file_id: str) -> FileObject:
        """Retrieve a file's metadata."""
        return self.client.get_file(file_id)

    def download_file(
        self, file_id: str, dest: str | os.PathLike[str], expected_bytes: int | None = None
    ) -> Path:
        """Download a file's content, streamed, checked and atomically (:meth:`BatchClient.download_file`).

        A directory ``dest`` gets ``<file id>.jsonl``, its unsafe characters replaced: no file id
        places a file outside it.
        """
        return self.client.download_file(file_id, dest, expected_bytes=expected_bytes)

    def delete_file(self, file_id: str) -> FileDeleted:
        """Delete a file."""
        return self.client.delete_file(file_id)

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap request (list one batch) and say in plain words what went wrong.

        Called by ``POST /api/v2/connections/test`` (the form's "Test" button) and
        ``airflow connections test``. It does not retry. Messages say "this connection": Airflow
        tests a form's fields under a random connection id, which would mean nothing to the user.
        """
        try:
            conn = self.get_connection(self.conn_id)
            settings = settings_from_connection(conn, conn.extra_dejson, name="this connection")
            BatchClient(settings, log=self.log).check()
        except Exception as exc:  # the form shows any reason, e.g. a bad key or an unusable extra
            return False, str(exc)
        return True, f"Connected to {settings.base_url}: the Batch API answered."

    # -- async API (for triggers) --

    async def aget_batch(self, batch_id: str) -> Batch:
        """Retrieve a batch without blocking the event loop."""
        return await (await self.aget_client()).get_batch(batch_id)

    async def acancel_batch(self, batch_id: str) -> Batch:
        """Ask the API to cancel a batch, without blocking the event loop."""
        return await (await self.aget_client()).cancel_batch(batch_id)

    async def aget_file(self, file_id: str) -> FileObject:
        """Retrieve a file's metadata without blocking the event loop."""
        return await (await self.aget_client()).get_file(file_id)
