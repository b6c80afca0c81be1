"""OpenAIBatchHook: the provider's only client of the OpenAI Files and Batches APIs."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar
from urllib.parse import quote

import httpx
import requests
from airflow.sdk import BaseHook
from pydantic import BaseModel, ValidationError

from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.hooks._clients import aclose_client, get_client
from airflow_batch_provider.hooks._connection import (
    CONN_FIELDS,
    CONN_TYPE,
    UI_FIELD_BEHAVIOUR,
    ConnectionSettings,
)
from airflow_batch_provider.hooks._http import (
    RetryPolicy,
    TransientError,
    check_answer,
    interrupted_error,
    request_headers,
    unreachable_error,
)
from airflow_batch_provider.hooks._multipart import CHUNK_SIZE, MultipartFileBody
from airflow_batch_provider.models import Batch, BatchList, ExpiresAfter, FileDeleted, FileObject

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_UPLOAD_FILENAME = "batch_input.jsonl"


class OpenAIBatchHook(BaseHook):
    """Talk to the OpenAI Batch and Files APIs, or to any server that speaks them.

    Sync methods (for operators) share one ``requests.Session`` per hook; async methods
    (for triggers) share one ``httpx.AsyncClient`` per connection and event loop. Both
    retry connection errors, timeouts, 408, 429 and 5xx the same way (see
    :class:`~airflow_batch_provider.hooks._http.RetryPolicy`), and raise
    :class:`~airflow_batch_provider.exceptions.OpenAIBatchAPIError` for everything else.

    The connection (type ``openai_batch``; ``openai`` connections of the official provider
    work too): host = base URL (default ``https://api.openai.com/v1``), password = API key,
    extras ``organization``, ``project``, ``timeout`` (seconds, default 60),
    ``max_retries`` (default 5), ``api_type`` (``openai`` or ``azure``), ``api_version``
    and ``batch_url_template``.

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

    # -- connection --

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection, read once (blocking: use :meth:`aget_settings` in async code)."""
        conn = self.get_connection(self.conn_id)
        return ConnectionSettings.from_connection(conn, conn.extra_dejson)

    async def aget_settings(self) -> ConnectionSettings:
        """The connection, read once without blocking the event loop; shared with :attr:`settings`."""
        if "settings" not in self.__dict__:
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
            # Fill the cached property, so the sync and async paths read the connection once.
            self.__dict__["settings"] = ConnectionSettings.from_connection(conn, extra)
        return self.settings

    @property
    def retry_policy(self) -> RetryPolicy:
        """How the sync methods retry: ``max_retries`` from the connection."""
        return _retry_policy(self.settings)

    @cached_property
    def session(self) -> requests.Session:
        """The HTTP session of the sync methods; it carries the API key in its headers."""
        session = requests.Session()
        session.headers.update(request_headers(self.settings))
        session.params = dict(self.settings.query_params)
        return session

    def get_conn(self) -> requests.Session:
        """The ``requests.Session`` the sync methods use."""
        return self.session

    def close(self) -> None:
        """Close the sync session (a new one opens on next use)."""
        if "session" in self.__dict__:
            self.__dict__.pop("session").close()

    async def aclose(self) -> None:
        """Close the shared async client of this connection in the running event loop."""
        await aclose_client(await self.aget_settings())

    def batch_page_url(self, batch_id: str) -> str | None:
        """The web page of a batch for the operator's extra link, or None if there is none.

        The connection's ``batch_url_template`` wins; ``api.openai.com`` links to
        ``https://platform.openai.com/batches/<id>``; a loopback host (the emulator) to
        its own ``/batches/<id>`` page.
        """
        return self.settings.batch_page_url(batch_id)

    # -- sync API --

    def upload_file(
        self,
        file: str | os.PathLike[str] | BinaryIO,
        purpose: str = "batch",
        filename: str | None = None,
    ) -> FileObject:
        """Upload a file, streaming it: memory use does not grow with the file's size.

        :param file: a path, or a binary file object. A seekable file object is sent from
            its current position and can be retried; any other is sent once, chunked.
        :param purpose: the file's purpose (default ``"batch"``).
        :param filename: the name the API records (default: the path's name, or
            ``batch_input.jsonl``). The Batch API wants it to end in ``.jsonl``.
        """
        if isinstance(file, (str, os.PathLike)):
            path = Path(file)

            def attempt() -> FileObject:
                with path.open("rb") as stream:
                    size = os.fstat(stream.fileno()).st_size
                    return self._upload(stream, size, purpose, filename or path.name)

            return self.retry_policy.call(attempt, self.log)

        name = filename or _file_name(file) or DEFAULT_UPLOAD_FILENAME
        try:
            start = file.tell()
            size: int | None = file.seek(0, os.SEEK_END) - start
            file.seek(start)
        except (AttributeError, OSError, ValueError):
            # A pipe or socket: send it once, as it comes.
            return RetryPolicy(max_retries=0).call(lambda: self._upload(file, None, purpose, name), self.log)

        def attempt_from_start() -> FileObject:
            file.seek(start)
            return self._upload(file, size, purpose, name)

        return self.retry_policy.call(attempt_from_start, self.log)

    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        output_expires_after: int | Mapping[str, Any] | ExpiresAfter | None = None,
    ) -> Batch:
        """Create a batch from an uploaded input file.

        :param input_file_id: the id of a file uploaded with purpose ``batch``.
        :param endpoint: the endpoint every request of the file calls, e.g.
            ``/v1/chat/completions``.
        :param completion_window: the time the batch may take (the API accepts ``"24h"``).
        :param metadata: up to 16 string pairs stored with the batch (default none).
        :param output_expires_after: seconds after creation when the output and error files
            expire, or an ``{"anchor": "created_at", "seconds": n}`` mapping (default: the
            API's retention).

        Like every call this one is retried after a timeout or a 5xx, as the official SDK
        does; a batch created by a try whose answer was lost can be found by its metadata.
        """
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": completion_window,
        }
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if output_expires_after is not None:
            body["output_expires_after"] = _expires_after(output_expires_after)
        return self._call(Batch, "POST", "/batches", json=body)

    def get_batch(self, batch_id: str) -> Batch:
        """Retrieve a batch."""
        return self._call(Batch, "GET", f"/batches/{_segment(batch_id)}")

    def cancel_batch(self, batch_id: str) -> Batch:
        """Ask the API to cancel a batch; it answers ``cancelling`` and keeps partial results."""
        return self._call(Batch, "POST", f"/batches/{_segment(batch_id)}/cancel")

    def list_batches(self, limit: int = 100) -> Iterator[Batch]:
        """Every batch of the account, newest first, fetching page after page lazily.

        :param limit: batches per page (default 100, the API's maximum).
        """
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if after is not None:
                params["after"] = after
            page = self._call(BatchList, "GET", "/batches", params=params)
            yield from page.data
            last_id = page.last_id or (page.data[-1].id if page.data else None)
            if not page.has_more or last_id is None or last_id == after:
                return
            after = last_id

    def get_file(self, file_id: str) -> FileObject:
        """Retrieve a file's metadata."""
        return self._call(FileObject, "GET", f"/files/{_segment(file_id)}")

    def download_file(self, file_id: str, dest: str | os.PathLike[str]) -> Path:
        """Download a file's content, streamed and atomically.

        The bytes go to a temporary file beside ``dest``, which is renamed to ``dest`` only
        once the whole body has arrived (checked against ``Content-Length`` when the server
        sends it). On any failure the temporary file is removed and ``dest`` is untouched.

        :param file_id: the file to download, e.g. a batch's ``output_file_id``.
        :param dest: the path to write; if it is a directory, ``<file_id>.jsonl`` in it.
        :return: the path written.
        """
        target = Path(dest)
        if target.is_dir():
            target = target / f"{file_id}.jsonl"
        if not target.parent.is_dir():
            raise FileNotFoundError(f"Cannot download {file_id} to {target}: no directory {target.parent}")
        action = f"GET /files/{file_id}/content"

        def attempt() -> Path:
            started = time.monotonic()
            with self._send("GET", f"/files/{_segment(file_id)}/content", stream=True) as response:
                expected = response.headers.get("content-length")
                with _atomic_writer(target) as out, self._transport_errors(action):
                    for chunk in response.iter_content(CHUNK_SIZE):
                        out.write(chunk)
                    received = response.raw.tell()  # bytes off the wire, before any decoding
                    if expected is not None and expected.isdigit() and received != int(expected):
                        raise TransientError(
                            OpenAIBatchAPIError(
                                f"{action} ended after {received} of {expected} bytes. "
                                "Nothing was written; try again."
                            )
                        )
            self.log.info(
                "Downloaded %s (%d bytes) to %s in %.1f s", file_id, received, target,
                time.monotonic() - started,
            )  # fmt: skip
            return target

        return self.retry_policy.call(attempt, self.log)

    def delete_file(self, file_id: str) -> FileDeleted:
        """Delete a file."""
        return self._call(FileDeleted, "DELETE", f"/files/{_segment(file_id)}")

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap request (list one batch) and say in plain words what went wrong.

        Called by the "Test" button of the connection form. It does not retry.
        """
        try:
            settings = self.settings
            self._send("GET", "/batches", params={"limit": 1}).close()
        except TransientError as exc:
            return False, str(exc.error)
        except Exception as exc:  # the form shows any reason, e.g. an unknown connection id
            return False, str(exc)
        return True, f"Connected to {settings.base_url}: the Batch API answered."

    # -- async API (for triggers) --

    async def aget_batch(self, batch_id: str) -> Batch:
        """Retrieve a batch without blocking the event loop."""
        return await self._acall(Batch, "GET", f"/batches/{_segment(batch_id)}")

    async def acancel_batch(self, batch_id: str) -> Batch:
        """Ask the API to cancel a batch, without blocking the event loop."""
        return await self._acall(Batch, "POST", f"/batches/{_segment(batch_id)}/cancel")

    async def aget_file(self, file_id: str) -> FileObject:
        """Retrieve a file's metadata without blocking the event loop."""
        return await self._acall(FileObject, "GET", f"/files/{_segment(file_id)}")

    # -- plumbing --

    def _url(self, settings: ConnectionSettings, path: str) -> str:
        return f"{settings.base_url.rstrip('/')}{path}"

    @contextlib.contextmanager
    def _transport_errors(self, action: str) -> Iterator[None]:
        """Turn a request that got no (complete) answer into a retryable error."""
        try:
            yield
        except requests.exceptions.ChunkedEncodingError as exc:
            raise TransientError(interrupted_error(self.settings, action, exc)) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(unreachable_error(self.settings, action, exc)) from exc
        except requests.RequestException as exc:
            raise OpenAIBatchAPIError(
                f"{action} could not be sent to {self.settings.base_url}: {exc.__class__.__name__}. "
                f"Check the Base URL of connection {self.conn_id!r}."
            ) from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One try of one request; raises TransientError or OpenAIBatchAPIError for errors."""
        settings = self.settings
        action = f"{method} {path}"
        with self._transport_errors(action):
            response = self.session.request(
                method, self._url(settings, path), timeout=settings.timeout, **kwargs
            )
            if response.status_code >= 400:
                with response:
                    check_answer(settings, action, response.status_code, response.headers, response.content)
        return response

    def _call(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> ModelT:
        def attempt() -> ModelT:
            with self._send(method, path, **kwargs) as response:
                return _parse(model, response, f"{method} {path}", self.settings)

        return self.retry_policy.call(attempt, self.log)

    def _upload(self, stream: IO[bytes], size: int | None, purpose: str, filename: str) -> FileObject:
        body = MultipartFileBody({"purpose": purpose}, stream, size, filename)
        started = time.monotonic()
        with self._send(
            "POST",
            "/files",
            data=body if body.length is not None else iter(body),
            headers={"Content-Type": body.content_type},
        ) as response:
            uploaded = _parse(FileObject, response, "POST /files", self.settings)
        self.log.info(
            "Uploaded %s (%s bytes) as %s in %.1f s", filename, uploaded.bytes, uploaded.id,
            time.monotonic() - started,
        )  # fmt: skip
        return uploaded

    async def _acall(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> ModelT:
        settings = await self.aget_settings()
        action = f"{method} {path}"

        async def attempt() -> ModelT:
            client = await get_client(settings)
            try:
                response = await client.request(method, self._url(settings, path), **kwargs)
            except httpx.TransportError as exc:
                raise TransientError(unreachable_error(settings, action, exc)) from exc
            check_answer(settings, action, response.status_code, response.headers, response.content)
            return _parse(model, response, action, settings)

        return await _retry_policy(settings).acall(attempt, self.log)


def _retry_policy(settings: ConnectionSettings) -> RetryPolicy:
    return RetryPolicy(max_retries=settings.max_retries)


def _parse(
    model: type[ModelT],
    response: requests.Response | httpx.Response,
    action: str,
    settings: ConnectionSettings,
) -> ModelT:
    """Parse a successful answer; one that is not a ``model`` is an error waiting will not fix."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise OpenAIBatchAPIError(
            f"{action}: {settings.base_url} answered with something that is not a {model.__name__}: "
            f"{first['msg']} at {'.'.join(map(str, first['loc'])) or 'top level'}. "
            f"Check that the Base URL of connection {settings.conn_id!r} points at an OpenAI-compatible API.",
            # The answer's own (2xx) status: for the retry rules, an error waiting will not fix.
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from None


def _segment(identifier: str) -> str:
    """An id as one URL path segment: a ``/`` or ``?`` in it cannot reach another endpoint."""
    return quote(identifier, safe="")


def _file_name(file: object) -> str | None:
    name = getattr(file, "name", None)
    return os.path.basename(name) if isinstance(name, str) and name else None


def _expires_after(value: int | Mapping[str, Any] | ExpiresAfter) -> dict[str, Any]:
    if isinstance(value, int):
        value = ExpiresAfter(seconds=value)
    elif not isinstance(value, ExpiresAfter):
        value = ExpiresAfter.model_validate(value)
    return value.model_dump(mode="json")


@contextlib.contextmanager
def _atomic_writer(target: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside ``target``, renamed onto it only if the block succeeds."""
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
