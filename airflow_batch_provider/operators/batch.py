"""Operators that submit a batch and fetch its results."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

# From airflow.sdk.exceptions, or airflow.exceptions on Airflow versions that predate it.
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException
from airflow.sdk import BaseOperator

from airflow_batch_provider import jsonl
from airflow_batch_provider.exceptions import BatchInputError, OpenAIBatchAPIError
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.links import BATCH_URL_XCOM_KEY, OpenAIBatchLink
from airflow_batch_provider.models import Batch, BatchRequest, BatchResult, RequestCounts
from airflow_batch_provider.rules import (
    METADATA_MAX_KEY_LENGTH,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_LENGTH,
    RESULTLESS_STATUSES,
)
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor
from airflow_batch_provider.utils import (
    ERROR_FILE_ID_XCOM_KEY,
    REQUEST_COUNTS_XCOM_KEY,
    RUN_IDENTITY_KEYS,
    cancel_batch_on_kill,
    local_path,
    run_identity,
    safe_name,
    to_path,
)

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

#: XCom key under which the submit operator pushes the id of the uploaded input file.
INPUT_FILE_ID_XCOM_KEY = "input_file_id"
#: Durable task state key (Airflow 3.3+) holding the batch a task instance created.
BATCH_ID_STATE_KEY = "openai_batch_id"

# Clocks of Airflow and of the API may disagree; look a little before the run started.
_CLOCK_SKEW = timedelta(minutes=10)


def _check_metadata(metadata: Mapping[str, Any], task_id: str) -> None:
    """Raise ValueError naming each user metadata entry the API would refuse."""
    problems = []
    if reserved := sorted(set(metadata) & set(RUN_IDENTITY_KEYS)):
        problems.append(f"keys {reserved} are set by the operator")
    if len(metadata) > METADATA_MAX_KEYS - len(RUN_IDENTITY_KEYS):
        problems.append(
            f"{len(metadata)} keys, but at most {METADATA_MAX_KEYS - len(RUN_IDENTITY_KEYS)} are free "
            f"({len(RUN_IDENTITY_KEYS)} of the API's {METADATA_MAX_KEYS} hold the Airflow run identity)"
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or len(key) > METADATA_MAX_KEY_LENGTH:
            problems.append(f"key {key!r} is not a string of at most {METADATA_MAX_KEY_LENGTH} characters")
        if not isinstance(value, str) or len(value) > METADATA_MAX_VALUE_LENGTH:
            problems.append(
                f"value of {key!r} is not a string of at most {METADATA_MAX_VALUE_LENGTH} characters"
            )
    if problems:
        raise ValueError(f"Task {task_id!r}: invalid metadata: {'; '.join(problems)}.")


class OpenAIBatchSubmitOperator(BaseOperator):
    """Validate and upload batch input, create the batch, and return its id.

    The input is exactly one of ``input_file_id``, ``input_path`` or ``requests``.

    Pushes ``input_file_id`` and the batch's page URL (the "OpenAI Batch" extra link) as
    XComs and returns the batch id. Follow it with :class:`OpenAIBatchSensor` to wait.

    Retries do not create duplicates. The batch's metadata carries the run identity
    (``airflow_dag_id``, ``airflow_run_id``, ``airflow_task_id``, ``airflow_map_index``;
    values longer than 512 characters are replaced by their SHA-256). A later try of the same
    task instance that finds the batch an earlier try created reattaches to it, unless that
    batch failed, was cancelled or expired. It finds it through Airflow 3.3's durable
    ``task_state_store`` where available, and otherwise (or if a try died between creating
    the batch and storing its id) by listing the batches created since the run started.
    Clearing a task counts as a new try: it reattaches too (cancel the batch to start over).

    :param input_file_id: a file already uploaded with purpose ``batch`` (templated).
    :param input_path: a local JSONL file, or an ``ObjectStoragePath`` or URI (``s3://...``,
        read through Airflow's object storage) (templated).
    :param requests: the requests themselves: dicts or :class:`BatchRequest` objects, e.g.
        the output of an upstream ``@task`` (templated). Pass large request lists that way,
        not as a literal: a literal is stored in the serialized DAG.
    :param conn_id: the OpenAI Batch connection. Default ``openai_batch_default``.
    :param endpoint: the API endpoint every request targets (templated). Default
        ``/v1/chat/completions``.
    :param completion_window: the batch's completion window (templated). Default ``24h``,
        the only one the API accepts.
    :param metadata: extra metadata for the batch, string to string (templated); at most 12
        keys, since 4 of the API's 16 hold the run identity.
    :param output_expires_after: how long the output and error files are kept, as seconds
        or a timedelta. Default None: the API's default (30 days).
    :param validate: check the input against the Batch API's rules before uploading; the
        error lists every bad line. Default True. (Not possible for ``input_file_id``.)
    :param cancel_on_kill: cancel the batch when the task is killed. Default True.
    """

    template_fields: Sequence[str] = (
        "input_file_id",
        "input_path",
        "requests",
        "endpoint",
        "completion_window",
        "metadata",
        "conn_id",
    )
    template_fields_renderers = {"requests": "json", "metadata": "json"}
    operator_extra_links = (OpenAIBatchLink(),)
    ui_color = "#dae8fc"

    def __init__(
        self,
        *,
        input_file_id: str | None = None,
        input_path: str | os.PathLike[str] | ObjectStoragePath | None = None,
        requests: Iterable[Mapping[str, Any] | BatchRequest] | None = None,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        endpoint: str = "/v1/chat/completions",
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        output_expires_after: int | timedelta | None = None,
        validate: bool = True,
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        given = [
            name
            for name, value in (
                ("input_file_id", input_file_id),
                ("input_path", input_path),
                ("requests", requests),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"Task {self.task_id!r}: pass exactly one of input_file_id, input_path or requests "
                f"(got {', '.join(given) if given else 'none'})."
            )
        if isinstance(metadata, Mapping):
            _check_metadata(metadata, self.task_id)
        self.input_file_id = input_file_id
        self.input_path = input_path
        self.requests = requests
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.completion_window = completion_window
        self.metadata = metadata
        self.output_expires_after = output_expires_after
        self.validate = validate
        self.cancel_on_kill = cancel_on_kill
        self.batch_id: str | None = None

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(conn_id=self.conn_id)

    def execute(self, context: Context) -> str:
        identity = run_identity(context["ti"])
        batch = self._find_earlier_batch(context, identity)
        if batch is not None:
            self.log.info(
                "Reattaching to batch %s (%s), created by an earlier try of this task; "
                "not uploading or creating another.",
                batch.id,
                batch.status,
            )
        else:
            if self.metadata is not None and not isinstance(self.metadata, Mapping):
                raise AirflowFailException(
                    f"Task {self.task_id!r}: metadata rendered to {type(self.metadata).__name__}, not a dict."
                )
            user_metadata = dict(self.metadata or {})
            _check_metadata(user_metadata, self.task_id)
            input_file_id = self.input_file_id or self._upload_input(context)
            batch = self.hook.create_batch(
                input_file_id=input_file_id,
                endpoint=self.endpoint,
                completion_window=self.completion_window,
                metadata={**user_metadata, **identity},
                output_expires_after=self._output_expires_after_seconds(),
            )
            self.batch_id = batch.id  # from now on, on_kill cancels it
            self.log.info("Created batch %s (%s) from file %s.", batch.id, batch.status, input_file_id)
            if (store := context.get("task_state_store")) is not None:
                store.set(BATCH_ID_STATE_KEY, batch.id)
        self.batch_id = batch.id
        ti = context["ti"]
        ti.xcom_push(key=INPUT_FILE_ID_XCOM_KEY, value=batch.input_file_id)
        # Pushed even when None (no known page), so that the link finds a value either way.
        url = self.hook.batch_page_url(batch.id)
        ti.xcom_push(key=BATCH_URL_XCOM_KEY, value=url)
        if url:
            self.log.info("Batch page: %s", url)
        return batch.id

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.batch_id:
            cancel_batch_on_kill(self.hook, self.batch_id, self.log)

    def _find_earlier_batch(self, context: Context, identity: Mapping[str, str]) -> Batch | None:
        """The batch an earlier try of this task instance created, if it can still deliver."""
        store = context.get("task_state_store")
        if store is not None and (batch_id := store.get(BATCH_ID_STATE_KEY)):
            try:
                batch = self.hook.get_batch(str(batch_id))
            except OpenAIBatchAPIError as error:
                if error.status_code != 404:
                    raise
                self.log.info("Batch %s of an earlier try no longer exists.", batch_id)
                return None
            return self._if_reusable(batch)
        if context["ti"].try_number <= 1:
            return None
        # No durable state (Airflow < 3.3, or a try that died before storing the id): look for
        # the newest batch tagged with this run identity, created since the run started.
        dag_run = context["dag_run"]
        started = dag_run.start_date or dag_run.run_after
        since = (started - _CLOCK_SKEW).timestamp() if started else 0.0
        for batch in self.hook.list_batches():
            if batch.created_at < since:
                break
            metadata = batch.metadata or {}
            if all(metadata.get(key) == value for key, value in identity.items()):
                return self._if_reusable(batch)
        return None

    def _if_reusable(self, batch: Batch) -> Batch | None:
        """The batch of an earlier try, or None (and a log line) if it cannot deliver results."""
        if batch.status not in RESULTLESS_STATUSES:
            return batch
        self.log.info("Batch %s of an earlier try is %s; submitting anew.", batch.id, batch.status)
        return None

    def _output_expires_after_seconds(self) -> int | None:
        value = self.output_expires_after
        if isinstance(value, timedelta):
            return int(value.total_seconds())
        return value

    def _validate(self, source: str | os.PathLike[str] | BinaryIO, label: str) -> int:
        try:
            return jsonl.validate_file(source, self.endpoint)
        except BatchInputError as error:
            # Bad input stays bad: fail without retries, listing every problem.
            raise AirflowFailException(str(BatchInputError(error.errors, source=label))) from None

    def _upload_input(self, context: Context) -> str:
        """Validate the input (unless told not to), upload it and return its file id."""
        if self.input_path is not None:
            path = to_path(self.input_path)
            local = local_path(path)
            if self.validate:
                if local is not None:
                    count = self._validate(local, str(path))
                else:
                    with path.open("rb") as source:
                        count = self._validate(source, str(path))
                self.log.info("%s holds %d valid request(s).", path, count)
            if local is not None:
                uploaded = self.hook.upload_file(local, purpose="batch")
            else:
                with path.open("rb") as source:
                    uploaded = self.hook.upload_file(source, purpose="batch", filename=path.name)
        else:
            requests = self.requests
            if isinstance(requests, (str, bytes)):
                raise AirflowFailException(
                    f"Task {self.task_id!r}: requests rendered to a string, not a list of requests; pass "
                    "the upstream task's output (an XComArg) or set render_template_as_native_obj=True."
                )
            with tempfile.TemporaryDirectory(prefix="openai-batch-") as directory:
                path = Path(directory) / f"{context['ti'].task_id}.jsonl"
                written = jsonl.write_requests(requests or [], path)
                if self.validate:
                    self._validate(path, f"requests of task {self.task_id!r}")
                self.log.info("Uploading %d request(s).", written)
                uploaded = self.hook.upload_file(path, purpose="batch")
        self.log.info("Uploaded input file %s (%s bytes).", uploaded.id, uploaded.bytes)
        return uploaded.id


class OpenAIBatchResultsOperator(BaseOperator):
    """Download a batch's output and error files, check them, and return a summary.

    By default the file ids come from the upstream :class:`OpenAIBatchSensor` (its return
    value, and its ``error_file_id`` and ``request_counts`` XComs): ``submit >> wait >>
    results`` needs no arguments. Pass ``output_file_id`` and/or ``error_file_id`` to
    download other files.

    The files are downloaded streamed and atomically, to ``<destination>/<file id>.jsonl``.
    Each line is parsed (:func:`airflow_batch_provider.jsonl.read_results`) and the number of
    lines is checked against ``request_counts``: a mismatch fails the task (and a retry
    downloads again).

    The return value (XCom) is a small JSON summary, never the results themselves, which may
    be hundreds of megabytes: ``{"output_file_id", "error_file_id", "output_path",
    "error_path", "succeeded", "failed", "total_tokens", "errors"}`` where ``errors`` holds
    the first 10 failed requests (``custom_id``, ``status_code``, ``code``, ``message``).
    Read the files with :func:`~airflow_batch_provider.jsonl.read_results`.

    :param sensor_task_id: the sensor to take the file ids from. Default: the one
        :class:`OpenAIBatchSensor` directly upstream, if neither file id is given.
    :param output_file_id: the output file to download (templated).
    :param error_file_id: the error file to download (templated).
    :param request_counts: the batch's ``request_counts`` (a dict or :class:`RequestCounts`)
        to check the files against (templated). Default: the sensor's, when the file ids
        come from it.
    :param destination: a local directory, or an ``ObjectStoragePath`` / URI (templated).
        Default: ``<temp dir>/airflow-batch-results/<dag_id>/<run_id>/<task_id>`` on the
        worker; use shared or object storage when the next task may run elsewhere.
    :param conn_id: the OpenAI Batch connection. Default ``openai_batch_default``.
    :param check_counts: fail when the files disagree with ``request_counts``. Default True.
    """

    template_fields: Sequence[str] = (
        "sensor_task_id",
        "output_file_id",
        "error_file_id",
        "request_counts",
        "destination",
        "conn_id",
    )
    ui_color = "#fff2cc"

    #: How many failed requests the summary describes.
    ERRORS_IN_SUMMARY = 10

    def __init__(
        self,
        *,
        sensor_task_id: str | None = None,
        output_file_id: str | None = None,
        error_file_id: str | None = None,
        request_counts: Mapping[str, int] | RequestCounts | None = None,
        destination: str | os.PathLike[str] | ObjectStoragePath | None = None,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        check_counts: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sensor_task_id = sensor_task_id
        self.output_file_id = output_file_id
        self.error_file_id = error_file_id
        self.request_counts = request_counts
        self.destination = destination
        self.conn_id = conn_id
        self.check_counts = check_counts

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(conn_id=self.conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        output_file_id, error_file_id, counts = self._file_ids(context)
        if not (output_file_id or error_file_id):
            raise AirflowFailException(f"Task {self.task_id!r}: the batch has no output or error file.")
        destination = self._destination(context)
        summary: dict[str, Any] = {
            "output_file_id": output_file_id,
            "error_file_id": error_file_id,
            "output_path": None,
            "error_path": None,
            "succeeded": 0,
            "failed": 0,
            "total_tokens": 0,
            "errors": [],
        }
        with tempfile.TemporaryDirectory(prefix="openai-batch-") as scratch:
            for kind, file_id in (("output", output_file_id), ("error", error_file_id)):
                if not file_id:
                    continue
                local, final = self._download(file_id, destination, Path(scratch))
                summary[f"{kind}_path"] = str(final)
                self._tally(local, summary)
                self.log.info("Downloaded %s file %s to %s.", kind, file_id, final)
        self.log.info(
            "%d request(s) succeeded, %d failed, %d tokens.",
            summary["succeeded"],
            summary["failed"],
            summary["total_tokens"],
        )
        if counts is not None and self.check_counts:
            self._check(counts, summary)
        return summary

    def _file_ids(self, context: Context) -> tuple[str | None, str | None, RequestCounts | None]:
        output_file_id, error_file_id, counts = self.output_file_id, self.error_file_id, self.request_counts
        if output_file_id is None and error_file_id is None:
            sensor = self.sensor_task_id or self._upstream_sensor()
            ti = context["ti"]
            output_file_id = ti.xcom_pull(task_ids=sensor)
            error_file_id = ti.xcom_pull(task_ids=sensor, key=ERROR_FILE_ID_XCOM_KEY)
            if counts is None:
                counts = ti.xcom_pull(task_ids=sensor, key=REQUEST_COUNTS_XCOM_KEY)
        if counts is not None and not isinstance(counts, RequestCounts):
            counts = RequestCounts.model_validate(counts)
        return output_file_id or None, error_file_id or None, counts

    def _upstream_sensor(self) -> str:
        sensors = [
            task.task_id
            for task in self.upstream_list
            # A mapped sensor is a MappedOperator whose operator_class is the sensor.
            if issubclass(getattr(task, "operator_class", type(task)), OpenAIBatchSensor)
        ]
        if len(sensors) != 1:
            raise AirflowFailException(
                f"Task {self.task_id!r}: found {len(sensors)} OpenAIBatchSensor(s) directly upstream; "
                "pass sensor_task_id, or output_file_id / error_file_id."
            )
        return sensors[0]

    def _destination(self, context: Context) -> Path | ObjectStoragePath:
        if self.destination is not None:
            return to_path(self.destination)
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        task = ti.task_id if map_index < 0 else f"{ti.task_id}-{map_index}"
        return (
            Path(tempfile.gettempdir())
            / "airflow-batch-results"
            / safe_name(ti.dag_id)
            / safe_name(ti.run_id)
            / safe_name(task)
        )

    def _download(
        self, file_id: str, destination: Path | ObjectStoragePath, scratch: Path
    ) -> tuple[Path, Path | ObjectStoragePath]:
        """Download to the destination; return a local copy to read and the final location."""
        name = f"{safe_name(file_id)}.jsonl"
        local_dir = local_path(destination)
        if local_dir is not None:
            local_dir.mkdir(parents=True, exist_ok=True)
            local = self.hook.download_file(file_id, local_dir / name)
            return local, local
        local = self.hook.download_file(file_id, scratch / name)
        final = destination / name
        with local.open("rb") as source, final.open("wb") as target:
            shutil.copyfileobj(source, target, length=1 << 20)
        return local, final

    def _tally(self, path: Path, summary: dict[str, Any]) -> None:
        for result in jsonl.read_results(path):
            if result.succeeded:
                summary["succeeded"] += 1
            else:
                summary["failed"] += 1
                if len(summary["errors"]) < self.ERRORS_IN_SUMMARY:
                    summary["errors"].append(_describe_failure(result))
            body = result.response.body if result.response else None
            usage = body.get("usage") if isinstance(body, dict) else None
            if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
                summary["total_tokens"] += usage["total_tokens"]

    def _check(self, counts: RequestCounts, summary: Mapping[str, Any]) -> None:
        """Fail when the files hold fewer results than the batch reported."""
        problems = []
        if summary["output_file_id"] and summary["succeeded"] != counts.completed:
            problems.append(
                f"{summary['succeeded']} succeeded line(s), {counts.completed} completed request(s)"
            )
        # The error file also holds requests that never ran (batch expired or cancelled).
        if summary["error_file_id"] and summary["failed"] < counts.failed:
            problems.append(f"{summary['failed']} failed line(s), {counts.failed} failed request(s)")
        if problems:
            raise AirflowException(
                f"Task {self.task_id!r}: the downloaded files disagree with the batch's request counts: "
                f"{'; '.join(problems)}."
            )


def _describe_failure(result: BatchResult) -> dict[str, Any]:
    response, error = result.response, result.error
    body = response.body if response else None
    body_error = body.get("error") if isinstance(body, dict) else None
    return {
        "custom_id": result.custom_id,
        "status_code": response.status_code if response else None,
        "code": error.code if error else (body_error or {}).get("code"),
        "message": error.message if error else (body_error or {}).get("message"),
    }
