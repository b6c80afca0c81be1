"""The blocking client of the Files and Batches APIs, on ``requests``."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import IO, Any, BinaryIO

import requests

from airflow_batch_provider.client.errors import (
    OpenAIBatchAPIError,
    TransientError,
    check_answer,
    interrupted_error,
    unreachable_error,
)
from airflow_batch_provider.client.multipart import CHUNK_SIZE, MultipartFileBody
from airflow_batch_provider.client.protocol import ModelT, create_batch_body, parse_answer, segment
from airflow_batch_provider.client.retry import ClientLogger, RetryPolicy
from airflow_batch_provider.client.settings import ClientSettings
from airflow_batch_provider.models import Batch, BatchList, ExpiresAfter, FileDeleted, FileObject

DEFAULT_UPLOAD_FILENAME = "batch_input.jsonl"

_log = logging.getLogger(__name__)


class BatchClient:
    """Call the OpenAI Files and Batches APIs, or any server that speaks them, and wait for the answer.

    Connection errors, timeouts, 408, 429 and 5xx are retried (see :class:`RetryPolicy`);
    everything else raises :class:`OpenAIBatchAPIError` at once.

    :param settings: where to send requests, with which key.
    :param log: where uploads, downloads and retries are reported (default: this module's logger).
    """

    def __init__(self, settings: ClientSettings, log: ClientLogger | None = None) -> None:
        self.settings = settings
        self.log: ClientLogger = log or _log
        self.retry_policy = RetryPolicy(max_retries=settings.max_retries)

    @cached_property
    def session(self) -> requests.Session:
        """The HTTP session; it carries the API key in its headers."""
        session = requests.Session()
        session.headers.update(self.settings.headers)
        session.params = dict(self.settings.query_params)
        return session

    def close(self) -> None:
        """Close the session (a new one opens on next use)."""
        if "session" in self.__dict__:
            self.__dict__.pop("session").close()

    # -- files --

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

    def get_file(self, file_id: str) -> FileObject:
        """Retrieve a file's metadata."""
        return self._call(FileObject, "GET", f"/files/{segment(file_id)}")

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
            with self._send("GET", f"/files/{segment(file_id)}/content", stream=True) as response:
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
            took = time.monotonic() - started
            self.log.info("Downloaded %s (%d bytes) to %s in %.1f s", file_id, received, target, took)
            return target

        return self.retry_policy.call(attempt, self.log)

    def delete_file(self, file_id: str) -> FileDeleted:
        """Delete a file."""
        return self._call(FileDeleted, "DELETE", f"/files/{segment(file_id)}")

    # -- batches --

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
        """
        body = create_batch_body(input_file_id, endpoint, completion_window, metadata, output_expires_after)
        return self._call(Batch, "POST", "/batches", json=body)

    def get_batch(self, batch_id: str) -> Batch:
        """Retrieve a batch."""
        return self._call(Batch, "GET", f"/batches/{segment(batch_id)}")

    def cancel_batch(self, batch_id: str) -> Batch:
        """Ask the API to cancel a batch; it answers ``cancelling`` and keeps partial results."""
        return self._call(Batch, "POST", f"/batches/{segment(batch_id)}/cancel")

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

    def check(self) -> None:
        """Make one cheap request (list one batch), without retries.

        :raises OpenAIBatchAPIError: the server could not be reached or refused; the message
            says what to check.
        """
        try:
            self._send("GET", "/batches", params={"limit": 1}).close()
        except TransientError as exc:
            raise exc.error from None

    # -- plumbing --

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
                f"Check the Base URL of {self.settings.name}."
            ) from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One try of one request; raises TransientError or OpenAIBatchAPIError for errors."""
        settings = self.settings
        action = f"{method} {path}"
        with self._transport_errors(action):
            response = self.session.request(method, settings.url(path), timeout=settings.timeout, **kwargs)
            if response.status_code >= 400:
                with response:
                    check_answer(settings, action, response.status_code, response.headers, response.content)
        return response

    def _call(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> ModelT:
        action = f"{method} {path}"

        def attempt() -> ModelT:
            with self._send(method, path, **kwargs) as response:
                return parse_answer(model, response, action, self.settings)

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
            uploaded = parse_answer(FileObject, response, "POST /files", self.settings)
        took = time.monotonic() - started
        self.log.info("Uploaded %s (%s bytes) as %s in %.1f s", filename, uploaded.bytes, uploaded.id, took)
        return uploaded


def _file_name(file: object) -> str | None:
    name = getattr(file, "name", None)
    return os.path.basename(name) if isinstance(name, str) and name else None


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
