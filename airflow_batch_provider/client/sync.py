"""The blocking client of the Files and Batches APIs, on ``requests``."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

import requests

from airflow_batch_provider.client.create_token import add_create_token, find_created
from airflow_batch_provider.client.deadline import Deadline, transfer_seconds
from airflow_batch_provider.client.errors import (
    OpenAIBatchAPIError,
    TransientError,
    check_answer,
    interrupted_error,
    no_answer,
)
from airflow_batch_provider.client.multipart import CHUNK_SIZE, MultipartFileBody
from airflow_batch_provider.client.paths import download_target
from airflow_batch_provider.client.protocol import ModelT, create_batch_body, parse_answer, segment
from airflow_batch_provider.client.retry import ClientLogger, RetryPolicy
from airflow_batch_provider.client.settings import ClientSettings
from airflow_batch_provider.client.watchdog import Watch, WatchedAdapter
from airflow_batch_provider.models import Batch, BatchList, ExpiresAfter, FileDeleted, FileObject

T = TypeVar("T")

DEFAULT_UPLOAD_FILENAME = "batch_input.jsonl"

_log = logging.getLogger(__name__)


class BatchClient:
    """Call the OpenAI Files and Batches APIs, or any server that speaks them, and wait for the answer.

    Connection errors, timeouts, 408, 429 and 5xx are retried (see :class:`RetryPolicy`);
    everything else raises :class:`OpenAIBatchAPIError` at once. Each try is bounded end to
    end (see :mod:`~airflow_batch_provider.client.deadline`). Redirects are not followed: the
    key goes to the configured origin only, and a redirect is an error saying where it pointed.

    :param settings: where to send requests, with which key.
    :param log: where uploads, downloads and retries are reported (default: this module's logger).
    """

    def __init__(self, settings: ClientSettings, log: ClientLogger | None = None) -> None:
        self.settings = settings
        self.log: ClientLogger = log or _log
        self.retry_policy = RetryPolicy(max_retries=settings.max_retries)
        self._last_answer = 0.0

    @cached_property
    def session(self) -> requests.Session:
        """The HTTP session. It holds no secret: the key is added to each request to the base URL."""
        session = requests.Session()
        session.trust_env = self.settings.uses_proxy_settings
        session.headers["User-Agent"] = self.settings.headers["User-Agent"]
        session.params = dict(self.settings.query_params)
        adapter = WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
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

        A retry after a lost answer may leave the earlier try's file on the server: an orphan
        file (storage, not tokens), never a batch; a file has no metadata to be found by.
        The upload may take ``timeout`` plus the time its bytes need at 64 KiB/s, and fails
        after ``timeout`` seconds without progress (see :mod:`~airflow_batch_provider.client.deadline`).

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
            return _once(lambda: self._upload(file, None, purpose, name))

        def attempt_from_start() -> FileObject:
            file.seek(start)
            return self._upload(file, size, purpose, name)

        return self.retry_policy.call(attempt_from_start, self.log)

    def get_file(self, file_id: str) -> FileObject:
        """Retrieve a file's metadata."""
        return self._call(FileObject, "GET", f"/files/{segment(file_id)}")

    def download_file(
        self, file_id: str, dest: str | os.PathLike[str], expected_bytes: int | None = None
    ) -> Path:
        """Download a file's content, streamed, checked and atomically.

        The bytes go to a temporary file beside the target, renamed onto it only once the
        whole content has arrived: as many bytes as the file object's ``bytes`` says (read
        with ``GET /files/{id}`` unless ``expected_bytes`` is given), and as many as
        ``Content-Length`` says when the server sends it. When the file object gives no size,
        the content must end with a newline, as a JSONL file does. A short or cut download is
        retried whole; on any failure the temporary file is removed and the target untouched.
        It may take ``timeout`` plus the time its bytes need at 64 KiB/s, and fails after
        ``timeout`` seconds without progress.

        :param file_id: the file to download, e.g. a batch's ``output_file_id``.
        :param dest: the path to write; if it is a directory, ``<file id>.jsonl`` in it, where
            every character of the id unsafe in a file name (``/``, ``\\``, NUL, ...) becomes
            ``_``: no file id can place a file outside the directory.
        :param expected_bytes: the file's size, when the caller knows it (default: asked).
        :return: the path written.
        """
        target = download_target(dest, file_id)
        if not target.parent.is_dir():
            raise FileNotFoundError(f"Cannot download {file_id} to {target}: no directory {target.parent}")
        expected = expected_bytes if expected_bytes is not None else self.get_file(file_id).bytes
        path = f"/files/{segment(file_id)}/content"
        action = f"GET {path}"

        def write(response: requests.Response) -> int:
            last = b""
            with _atomic_writer(target) as out:
                for chunk in response.iter_content(CHUNK_SIZE):
                    out.write(chunk)
                    last = chunk[-1:] or last
                _check_complete(action, response, out.tell(), expected, last)
                return out.tell()

        def attempt() -> Path:
            started = time.monotonic()
            received = self._try("GET", path, write, transfer=True, size=expected)
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
        """Create a batch from an uploaded input file: exactly one, however many answers are lost.

        The call adds a token of its own to the metadata (key ``batch_create_token``); before
        sending again after a failed try, it looks for the batch carrying that token among the
        batches created since the call started, and returns it if an earlier try made it (see
        :mod:`~airflow_batch_provider.client.create_token`). When ``metadata`` already holds
        all 16 keys there is no room for the token: the request is then sent once and never
        retried, so that it cannot pay twice.

        :param input_file_id: the id of a file uploaded with purpose ``batch``.
        :param endpoint: the endpoint every request of the file calls, e.g.
            ``/v1/chat/completions``.
        :param completion_window: the time the batch may take (the API accepts ``"24h"``).
        :param metadata: up to 15 string pairs stored with the batch (16 without retries;
            default none). The key ``batch_create_token`` is the client's.
        :param output_expires_after: seconds after creation when the output and error files
            expire, or an ``{"anchor": "created_at", "seconds": n}`` mapping (default: the
            API's retention).
        :raises OpenAIBatchAPIError: the API refused; or an answer was lost and the batches
            could not be listed to find out whether the batch was made.
        """
        token, metadata = add_create_token(metadata)
        body = create_batch_body(input_file_id, endpoint, completion_window, metadata, output_expires_after)
        send = self._parsing(Batch, "POST", "/batches", json=body)
        if token is None:
            return _once(send)
        started = time.time()
        sent = False

        def attempt() -> Batch:
            nonlocal sent
            if sent:
                earlier = self._find_created(token, started)
                if earlier is not None:
                    self.log.info("Found batch %s, made by a try whose answer was lost.", earlier.id)
                    return earlier
            sent = True
            return send()

        return self.retry_policy.call(attempt, self.log)

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
        return self._batches(limit, lambda params: self._call(BatchList, "GET", "/batches", params=params))

    def check(self) -> None:
        """Make one cheap request (list one batch), without retries.

        :raises OpenAIBatchAPIError: the server could not be reached or refused; the message
            says what to check.
        """
        _once(lambda: self._try("GET", "/batches", lambda _: None, params={"limit": 1}))

    # -- plumbing --

    def _batches(self, limit: int, page_of: Callable[[dict[str, Any]], BatchList]) -> Iterator[Batch]:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if after is not None:
                params["after"] = after
            page = page_of(params)
            yield from page.data
            last_id = page.last_id or (page.data[-1].id if page.data else None)
            if not page.has_more or last_id is None or last_id == after:
                return
            after = last_id

    def _find_created(self, token: str, started: float) -> Batch | None:
        """The batch an earlier try of a create made, if any.

        Each page is read once: a transient failure fails this try, and the policy retries it.
        """
        read_once = self._parsing
        pages = self._batches(100, lambda params: read_once(BatchList, "GET", "/batches", params=params)())
        try:
            return find_created(pages, token, since=started)
        except OpenAIBatchAPIError as error:
            raise OpenAIBatchAPIError(
                "POST /batches: an answer was lost, and the batches could not be listed to find out "
                f"whether it made a batch ({error.message}). Not sending it again, so as not to pay "
                "twice: look for a batch whose metadata has this call's batch_create_token.",
                status_code=error.status_code,
                request_id=error.request_id,
            ) from error

    def _try(
        self,
        method: str,
        path: str,
        handle: Callable[[requests.Response], T],
        *,
        transfer: bool = False,
        size: int | None = None,
        **kwargs: Any,
    ) -> T:
        """One try of one request, within its deadline: send, check the answer, hand it to ``handle``.

        :param transfer: an upload or download of ``size`` bytes (None: unknown), bounded by the
            time without progress rather than ``timeout`` in all.
        :raises TransientError: worth another try (no answer, a cut answer, 408, 429, 5xx).
        :raises OpenAIBatchAPIError: the API refused, or redirected.
        """
        settings = self.settings
        action, url = f"{method} {path}", settings.url(path)
        deadline = Deadline.after(settings.timeout + (transfer_seconds(size) if transfer else 0.0))
        self._forget_idle_connections()
        wait = settings.timeout if transfer else deadline.left()
        headers = {**kwargs.pop("headers", {}), **settings.secret_headers}
        with Watch(deadline) as watch:
            try:
                response = self.session.request(
                    method, url, headers=headers, timeout=wait, allow_redirects=False, stream=True, **kwargs
                )
            except requests.RequestException as exc:
                raise self._failure(action, exc, watch) from exc
            with response:
                try:
                    if response.status_code >= 300:
                        content = response.content
                        check_answer(settings, action, response.status_code, response.headers, content, url)
                    result = handle(response)
                except requests.RequestException as exc:
                    raise self._failure(action, exc, watch, answered=True) from exc
        self._last_answer = time.monotonic()
        return result

    def _failure(
        self, action: str, exc: requests.RequestException, watch: Watch, answered: bool = False
    ) -> Exception:
        """The error for a try that got no (complete) answer."""
        settings = self.settings
        timed_out = watch.deadline.seconds if watch.fired or watch.deadline.passed() else None
        if answered and timed_out is None:
            return TransientError(interrupted_error(settings, action, exc))
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)) or timed_out is not None:
            return no_answer(settings, action, exc, reused=watch.reused, timed_out=timed_out)
        return OpenAIBatchAPIError(
            f"{action} could not be sent to {settings.base_url}: {exc.__class__.__name__}. "
            f"Check the Base URL of {settings.name}."
        )

    def _forget_idle_connections(self) -> None:
        """Close connections idle for longer than ``keepalive_expiry`` (urllib3 keeps them for ever)."""
        idle = time.monotonic() - self._last_answer
        if "session" in self.__dict__ and idle > self.settings.keepalive_expiry:
            for adapter in self.session.adapters.values():
                adapter.close()

    def _parsing(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> Callable[[], ModelT]:
        """One try of a request whose answer is a ``model``."""
        action = f"{method} {path}"

        def parse(response: requests.Response) -> ModelT:
            return parse_answer(model, _Read(response), action, self.settings)

        return lambda: self._try(method, path, parse, **kwargs)

    def _call(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> ModelT:
        return self.retry_policy.call(self._parsing(model, method, path, **kwargs), self.log)

    def _upload(self, stream: IO[bytes], size: int | None, purpose: str, filename: str) -> FileObject:
        body = MultipartFileBody({"purpose": purpose}, stream, size, filename)
        started = time.monotonic()
        send = self._parsing(
            FileObject,
            "POST",
            "/files",
            data=body if body.length is not None else iter(body),
            headers={"Content-Type": body.content_type},
            transfer=True,
            size=body.length,
        )
        uploaded = send()
        took = time.monotonic() - started
        self.log.info("Uploaded %s (%s bytes) as %s in %.1f s", filename, uploaded.bytes, uploaded.id, took)
        return uploaded


class _Read:
    """A streamed response, read whole, as :func:`parse_answer` wants it."""

    def __init__(self, response: requests.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.content


def _once(attempt: Callable[[], T]) -> T:
    """Run one try, without retries; a transient failure raises its error."""
    try:
        return attempt()
    except TransientError as exc:
        raise exc.error from exc.__cause__


def _check_complete(
    action: str, response: requests.Response, written: int, expected: int | None, last_byte: bytes
) -> None:
    """Raise :class:`TransientError` unless the whole content arrived."""
    announced = response.headers.get("content-length")
    received = response.raw.tell()  # bytes off the wire, before any decoding
    problem = None
    if announced is not None and announced.isdigit() and received != int(announced):
        problem = f"ended after {received} of {announced} bytes"
    elif expected is not None and written != expected:
        problem = f"brought {written} bytes, but the file has {expected}"
    elif expected is None and written and last_byte != b"\n":
        problem = f"ended after {written} bytes, in the middle of a line"
    if problem is not None:
        raise TransientError(OpenAIBatchAPIError(f"{action} {problem}. Nothing was written; try again."))


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
