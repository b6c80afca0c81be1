"""Operators: submit a batch, fetch a batch's results, or do both for any number of requests in one task."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

# From airflow.sdk.exceptions, or airflow.exceptions on Airflow versions that predate it.
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, AirflowSkipException
from airflow.sdk import BaseOperator

from airflow_batch_provider.expiry import reading_batch
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.inputs import (
    RequestItem,
    file_digest,
    fingerprint,
    infer_endpoint,
    prepare_input,
    validate_input,
)
from airflow_batch_provider.links import BATCH_URL_XCOM_KEY, OpenAIBatchLink
from airflow_batch_provider.models import Batch, RequestCounts
from airflow_batch_provider.operators.base import RequestsOperator
from airflow_batch_provider.operators.run import OpenAIBatchOperator
from airflow_batch_provider.outputs import download_results, failure_message
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor
from airflow_batch_provider.submission import (
    INPUT_FILE_ID_XCOM_KEY,
    InputChangedError,
    OnInputChange,
    Submitter,
    check_metadata,
)
from airflow_batch_provider.utils import (
    BATCH_XCOM_KEY,
    cancel_batch_on_kill,
    check_failure_threshold,
    default_destination,
    fail_on_bad_input,
    fail_when_gone,
    seconds,
    to_path,
    too_many_failures,
)

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

__all__ = [
    "INPUT_FILE_ID_XCOM_KEY",
    "OpenAIBatchOperator",
    "OpenAIBatchResultsOperator",
    "OpenAIBatchSubmitOperator",
]


class OpenAIBatchSubmitOperator(RequestsOperator):
    """Validate and upload batch input, create the batch, and return its id.

    The input is exactly one of ``input_file_id``, ``input_path`` or ``requests``.

    Pushes ``input_file_id`` and the batch's page URL (the "OpenAI Batch" extra link) as
    XComs and returns the batch id. Follow it with :class:`OpenAIBatchSensor` to wait.

    Retries do not pay twice: a later try of the task instance (a retry or a clear) finds the
    batch an earlier try created from the same input and reattaches to it (see
    :mod:`airflow_batch_provider.submission`); if the input changed since, ``on_input_change``
    decides.

    :param input_file_id: a file already uploaded with purpose ``batch`` (templated).
    :param input_path: a local JSONL file, or an ``ObjectStoragePath`` or URI (``s3://...``,
        read through Airflow's object storage) (templated).
    :param requests: the requests themselves: dicts (``method`` and ``url`` may be left out) or
        :class:`BatchRequest` objects, e.g. the output of an upstream ``@task`` (templated).
        An empty list skips the task. Pass large request lists that way, not as a literal: a
        literal is stored in the serialized DAG.
    :param conn_id: the OpenAI Batch connection. Default ``openai_batch_default``.
    :param endpoint: the API endpoint every request targets (templated). Default: the first
        request's ``url``, else ``/v1/chat/completions``.
    :param completion_window: the batch's completion window (templated). Default ``24h``,
        the only one the API accepts.
    :param metadata: extra metadata for the batch, string to string (templated); at most 9
        keys (the API's 16, less those that tie the batch to its task).
    :param output_expires_after: how long the output and error files are kept, as seconds
        or a timedelta. Default None: the API's default (30 days).
    :param validate: check the input against the Batch API's rules before uploading; the
        error lists every bad line. Default True. (Not possible for ``input_file_id``.)
    :param on_input_change: when an earlier try's batch was made from other input:
        ``"resubmit"`` (default) cancels it and submits the current input; ``"fail"`` fails.
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
        requests: Iterable[RequestItem] | None = None,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        endpoint: str | None = None,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        output_expires_after: int | timedelta | None = None,
        validate: bool = True,
        on_input_change: OnInputChange = "resubmit",
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
            check_metadata(metadata, self.task_id)
        if on_input_change not in ("resubmit", "fail"):
            raise ValueError(f"Task {self.task_id!r}: on_input_change must be 'resubmit' or 'fail'.")
        self.input_file_id = input_file_id
        self.input_path = input_path
        self.requests = requests
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.completion_window = completion_window
        self.metadata = metadata
        self.output_expires_after = output_expires_after
        self.validate = validate
        self.on_input_change = on_input_change
        self.cancel_on_kill = cancel_on_kill
        self.batch_id: str | None = None

    def execute(self, context: Context) -> str:
        if self.metadata is not None and not isinstance(self.metadata, Mapping):
            raise AirflowFailException(
                f"Task {self.task_id!r}: metadata rendered to {type(self.metadata).__name__}, not a dict."
            )
        user_metadata = dict(self.metadata or {})
        check_metadata(user_metadata, self.task_id)
        if self.requests is not None and not isinstance(self.requests, (str, bytes)) and not self.requests:
            raise AirflowSkipException(f"Task {self.task_id!r} got no requests: there is nothing to submit.")
        submitter = Submitter(self.hook, context, self.log, self.on_input_change)
        with tempfile.TemporaryDirectory(prefix="openai-batch-") as directory:
            if self.input_file_id is not None:
                endpoint, digest, local = self.endpoint or infer_endpoint(None), self.input_file_id, None
            else:
                with fail_on_bad_input(self.task_id):
                    local, endpoint = prepare_input(
                        self.requests, self.input_path, Path(directory), self.endpoint
                    )
                    if self.validate:
                        count = validate_input(local, endpoint, self._label())
                        self.log.info("The input holds %d valid request(s).", count)
                digest = file_digest(local)
            key = fingerprint(
                digest,
                endpoint=endpoint,
                conn_id=self.conn_id,
                completion_window=self.completion_window,
                output_expires_after=seconds(self.output_expires_after),
            )
            try:
                batch = submitter.find("", key)
            except InputChangedError as error:
                raise AirflowFailException(str(error)) from None
            if batch is not None:
                self.log.info(
                    "Reattaching to batch %s (%s), created by an earlier try of this task from the same "
                    "input; not uploading or creating another.",
                    batch.id,
                    batch.status,
                )
            else:
                batch = self._create(submitter, key, local, endpoint, user_metadata)
        self.batch_id = batch.id
        ti = context["ti"]
        ti.xcom_push(key=INPUT_FILE_ID_XCOM_KEY, value=batch.input_file_id)
        # Pushed even when None (no known page), so that the link finds a value either way.
        url = self.hook.batch_page_url(batch.id)
        ti.xcom_push(key=BATCH_URL_XCOM_KEY, value=url)
        if url:
            self.log.info("Batch page: %s", url)
        return batch.id

    def _label(self) -> str:
        return str(self.input_path) if self.input_path is not None else f"requests of task {self.task_id!r}"

    def _create(
        self, submitter: Submitter, key: str, local: Path | None, endpoint: str, metadata: dict[str, str]
    ) -> Batch:
        input_file_id = self.input_file_id
        if local is not None:
            uploaded = self.hook.upload_file(local, purpose="batch")
            input_file_id = uploaded.id
            self.log.info("Uploaded input file %s (%s bytes).", uploaded.id, uploaded.bytes)
        assert input_file_id is not None
        with fail_on_bad_input(self.task_id):
            batch = submitter.create(
                "",
                key,
                input_file_id,
                endpoint,
                self.completion_window,
                metadata,
                seconds(self.output_expires_after),
            )
        self.batch_id = batch.id  # from now on, on_kill cancels it
        self.log.info("Created batch %s (%s) from file %s.", batch.id, batch.status, input_file_id)
        return batch

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.batch_id:
            cancel_batch_on_kill(self.hook, self.batch_id, self.log)


class OpenAIBatchResultsOperator(BaseOperator):
    """Download a batch's output and error files, check them, and return a summary.

    Which files, by the first of these that is given:

    * ``batch_id`` (templated): the batch's own file ids and ``request_counts``; so
      ``OpenAIBatchResultsOperator.partial(task_id=...).expand(batch_id=submit.output)`` works.
    * ``output_file_id`` and/or ``error_file_id`` (and optionally ``request_counts``).
    * nothing: the batch the :class:`OpenAIBatchSensor` directly upstream waited for (or
      ``sensor_task_id``). Mapped sensors work: a mapped results task reads the sensor of its
      own map index (the two in one mapped task group, or expanded alike).

    The files are downloaded streamed and atomically, to ``<destination>/<file id>.jsonl``;
    every line is read, counted by outcome and failure reason, and checked against
    ``request_counts``: a mismatch fails the task (and a retry downloads again).

    The return value (XCom) is a small JSON summary, never the results themselves, which may
    be hundreds of megabytes: ``{"batch_id", "output_file_id", "error_file_id", "output_path",
    "error_path", "succeeded", "failed", "error_codes", "tokens", "total_tokens", "errors"}``
    where ``errors`` holds the first 10 failed requests (``custom_id``, ``status_code``,
    ``code``, ``message``). Read the files with :func:`~airflow_batch_provider.jsonl.read_results`.

    :param batch_id: the batch whose results to download (templated).
    :param sensor_task_id: the sensor to take the batch from. Default: the one
        :class:`OpenAIBatchSensor` directly upstream, when nothing else is given.
    :param output_file_id: the output file to download (templated).
    :param error_file_id: the error file to download (templated).
    :param request_counts: the batch's ``request_counts`` (a dict or :class:`RequestCounts`)
        to check the files against (templated); with ``batch_id`` or a sensor, the batch's own.
    :param destination: a local directory, or an ``ObjectStoragePath`` / URI (templated).
        Default: ``<temp dir>/airflow-batch-results/<dag_id>/<run_id>/<task_id>`` on the
        worker; use shared or object storage when the next task may run elsewhere.
    :param conn_id: the OpenAI Batch connection. Default ``openai_batch_default``.
    :param check_counts: fail when the files disagree with ``request_counts``. Default True.
    :param failure_threshold: fail when more than this fraction of the requests failed:
        None (default) only when every one did; 0.0 on any failure; 1.0 never.
    """

    template_fields: Sequence[str] = (
        "batch_id",
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
        batch_id: str | None = None,
        sensor_task_id: str | None = None,
        output_file_id: str | None = None,
        error_file_id: str | None = None,
        request_counts: Mapping[str, int] | RequestCounts | None = None,
        destination: str | os.PathLike[str] | ObjectStoragePath | None = None,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        check_counts: bool = True,
        failure_threshold: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.sensor_task_id = sensor_task_id
        self.output_file_id = output_file_id
        self.error_file_id = error_file_id
        self.request_counts = request_counts
        self.destination = destination
        self.conn_id = conn_id
        self.check_counts = check_counts
        self.failure_threshold = check_failure_threshold(failure_threshold)

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(conn_id=self.conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_when_gone(self.task_id):
            batch, output_file_id, error_file_id, counts = self._files(context)
            if not (output_file_id or error_file_id):
                raise AirflowFailException(f"Task {self.task_id!r}: the batch has no output or error file.")
            destination = (
                to_path(self.destination)
                if self.destination is not None
                else default_destination(context["ti"])
            )
            paths, tally = download_results(
                self.hook, destination, output_file_id, error_file_id, self.ERRORS_IN_SUMMARY, batch
            )
        batch_id = batch.id if batch is not None else None
        tokens = tally.total_tokens
        summary: dict[str, Any] = {
            "batch_id": batch_id,
            "output_file_id": output_file_id,
            "error_file_id": error_file_id,
            "output_path": paths.get("output"),
            "error_path": paths.get("error"),
            "succeeded": tally.succeeded,
            "failed": tally.failed,
            "error_codes": dict(tally.error_codes),
            "tokens": tokens,
            "total_tokens": tokens["total"],
            "errors": tally.first_errors,
        }
        self.log.info(
            "%d request(s) succeeded, %d failed, %d tokens.", tally.succeeded, tally.failed, tokens["total"]
        )
        if counts is not None and self.check_counts:
            self._check(counts, summary)
        if too_many_failures(tally.succeeded + tally.failed, tally.failed, self.failure_threshold):
            raise AirflowFailException(failure_message(self.task_id, tally, self.failure_threshold))
        return summary

    def _destination(self, context: Context) -> Path | ObjectStoragePath:
        if self.destination is not None:
            return to_path(self.destination)
        return default_destination(context["ti"])

    def _files(self, context: Context) -> tuple[Batch | None, str | None, str | None, RequestCounts | None]:
        """``(batch, output file id, error file id, request counts)`` from the arguments or the sensor.

        The batch is None when only file ids were given.
        """
        counts = self.request_counts
        if self.batch_id is not None:
            with reading_batch(self.batch_id):
                batch: Batch | None = self.hook.get_batch(self.batch_id)
        elif self.output_file_id is not None or self.error_file_id is not None:
            batch = None
        else:
            batch = self._sensor_batch(context)
        if batch is not None:
            output_file_id, error_file_id = batch.output_file_id, batch.error_file_id
            counts = counts if counts is not None else batch.request_counts
        else:
            output_file_id, error_file_id = self.output_file_id or None, self.error_file_id or None
        if counts is not None and not isinstance(counts, RequestCounts):
            counts = RequestCounts.model_validate(counts)
        return batch, output_file_id, error_file_id, counts

    def _sensor_batch(self, context: Context) -> Batch:
        sensor = self.sensor_task_id or self._upstream_sensor()
        ti = context["ti"]
        # The sensor of this map index only: a mapped sensor has one batch per map index.
        value = ti.xcom_pull(task_ids=sensor, key=BATCH_XCOM_KEY, map_indexes=ti.map_index)
        if not isinstance(value, dict):
            raise AirflowFailException(
                f"Task {self.task_id!r}: sensor {sensor!r} left no batch for map index {ti.map_index}. "
                "When the sensor is mapped, map this task alike (put both in one mapped task group), or pass "
                "batch_id, e.g. OpenAIBatchResultsOperator.partial(...).expand(batch_id=submit.output)."
            )
        return Batch.model_validate(value)

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
                "pass batch_id, sensor_task_id, or output_file_id / error_file_id."
            )
        return sensors[0]

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
