"""Sensor that waits for a batch to end and hands its output file to the next task."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

# From airflow.sdk.exceptions, or airflow.exceptions on Airflow versions that predate it.
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, AirflowSensorTimeout
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.expiry import reading_batch
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.links import BATCH_URL_XCOM_KEY, OpenAIBatchLink
from airflow_batch_provider.models import Batch, BatchStatus
from airflow_batch_provider.triggers.batch import EVENT_TERMINAL, EVENT_TIMEOUT, OpenAIBatchTrigger
from airflow_batch_provider.utils import (
    BATCH_XCOM_KEY,
    ERROR_FILE_ID_XCOM_KEY,
    REQUEST_COUNTS_XCOM_KEY,
    cancel_batch_on_kill,
    check_failure_threshold,
    describe_failures,
    fail_when_gone,
    format_progress,
    is_transient,
    too_many_failures,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

# The trigger ends the wait at the sensor's timeout with a clear message; Airflow's own
# deferral timeout is only the backstop for a trigger that never fires.
_DEFERRAL_GRACE = timedelta(minutes=5)


class OpenAIBatchSensor(BaseSensorOperator):
    """Wait for an OpenAI batch to reach a terminal status.

    Deferrable by default: the worker slot is freed while ``OpenAIBatchTrigger`` polls in
    the triggerer. A batch already terminal at the first look finishes at once, without
    deferring. Poke and reschedule modes work too (``deferrable=False``, ``mode=...``).

    Outcome:

    * ``completed``: returns ``output_file_id`` and pushes ``error_file_id``,
      ``request_counts`` and the whole batch (``batch``, JSON) as XComs. Fails when more of
      its requests failed than ``failure_threshold`` allows (by default: when every one
      did), naming the commonest reasons from the error file.
    * ``failed``: fails the task listing every error the API reported (line, param, code,
      message).
    * ``expired`` / ``cancelled``: fail the task, unless ``allow_partial`` is set: then the
      task succeeds with the partial ``output_file_id`` (None if no request finished) and
      logs the counts.

    Outcomes that waiting longer cannot change fail with ``AirflowFailException``, so the
    sensor is not retried for them; so does a batch that answers 404 (past the API's retention,
    or a wrong id), with a message that says so.

    A progress line is logged at each poll, e.g.
    ``batch_abc in_progress: 12,345/50,000 done (24.7%), 12 failed, 00:41:10 elapsed, ETA 02:05:00``.

    :param batch_id: the batch to wait for (templated), usually the submit task's output.
    :param conn_id: the OpenAI Batch connection. Default ``openai_batch_default``.
    :param deferrable: wait in the triggerer instead of a worker slot. Default True (this
        sensor exists to wait for hours; pass
        ``conf.getboolean("operators", "default_deferrable")`` to follow the deployment's
        setting, and False where no triggerer runs).
    :param poll_interval: seconds between two reads of the batch, in every mode. Default 60.
    :param timeout: seconds (or a timedelta) after which the sensor gives up. Default:
        Airflow's ``[sensors] default_timeout`` (7 days).
    :param allow_partial: succeed with the partial output of an expired or cancelled batch
        instead of failing. Default False.
    :param cancel_on_kill: cancel the batch when a user stops the task while it waits (marks it
        failed); never when the task is cleared or marked success, so that the next try
        reattaches to the batch, nor when the triggerer restarts. Deferred, the trigger reads
        the task instance's state to tell (Airflow 3.3+: in ``on_kill``; 3.1 and 3.2: when it is
        cancelled); poke mode: the operator's ``on_kill``, on any kill of the running task;
        reschedule mode: not possible between pokes. Default True.
    :param cancel_on_timeout: cancel the batch when the sensor gives up at its ``timeout``,
        so that it stops running (and billing). Default True.
    :param failure_threshold: fail a completed batch when more than this fraction of its
        requests failed: None (default) only when every one did; 0.0 on any failure; 0.05
        above 5%; 1.0 never.
    """

    template_fields: Sequence[str] = ("batch_id", "conn_id")
    operator_extra_links = (OpenAIBatchLink(),)
    ui_color = "#d5e8d4"

    def __init__(
        self,
        *,
        batch_id: str,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 60.0,
        allow_partial: bool = False,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        failure_threshold: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.allow_partial = allow_partial
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self.failure_threshold = check_failure_threshold(failure_threshold)

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(conn_id=self.conn_id)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout:
                self._cancel_at_timeout()
                raise
        self._push_url(context)
        batch = self._look()
        if batch is not None and batch.status.is_terminal:
            return self._finish(batch, context)
        self.defer(
            trigger=OpenAIBatchTrigger(
                conn_id=self.conn_id,
                batch_id=self.batch_id,
                poll_interval=self.poll_interval,
                deadline=time.time() + self.timeout,
                cancel_on_kill=self.cancel_on_kill,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + _DEFERRAL_GRACE,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str | None:
        """Resume after the trigger fired: turn its event into the task's outcome."""
        if event["status"] == EVENT_TERMINAL:
            batch = Batch.model_validate(event["batch"])
            self.log.info(format_progress(batch))
            return self._finish(batch, context)
        if event["status"] == EVENT_TIMEOUT:
            raise AirflowSensorTimeout(f"{event['message']}{self._cancel_at_timeout()}")
        if event.get("status_code") == 404:  # the batch is gone: no retry brings it back
            raise AirflowFailException(event["message"])
        raise AirflowException(event["message"])

    def poke(self, context: Context) -> bool | PokeReturnValue:
        self._push_url(context)
        batch = self._look()
        if batch is None or not batch.status.is_terminal:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(batch, context))

    def _look(self) -> Batch | None:
        """Read the batch and log its progress; None after a transient error (keep waiting)."""
        try:
            with fail_when_gone(self.task_id), reading_batch(self.batch_id):
                batch = self.hook.get_batch(self.batch_id)
        except OpenAIBatchAPIError as error:
            if not is_transient(error):
                raise
            self.log.warning("Reading batch %s failed, will look again: %s", self.batch_id, error)
            return None
        self.log.info(format_progress(batch))
        return batch

    def on_kill(self) -> None:
        if self.cancel_on_kill:
            cancel_batch_on_kill(self.hook, self.batch_id, self.log)

    def _cancel_at_timeout(self) -> str:
        """Cancel the batch if asked to at the timeout; say what happened, for the error."""
        if not self.cancel_on_timeout:
            return " The batch keeps running (cancel_on_timeout=False)."
        try:
            batch = self.hook.cancel_batch(self.batch_id)
        except Exception as error:  # the timeout is the error to report; this one is only logged
            self.log.warning("Could not cancel batch %s at the timeout: %s", self.batch_id, error)
            return f" Cancelling the batch failed: {error}"
        self.log.warning(
            "Cancelled batch %s at the sensor's timeout: it is now %s.", self.batch_id, batch.status
        )
        return f" The batch was cancelled (it is now {batch.status})."

    def _push_url(self, context: Context) -> None:
        # Pushed even when None (no known page), so that the link finds a value either way.
        context["ti"].xcom_push(key=BATCH_URL_XCOM_KEY, value=self.hook.batch_page_url(self.batch_id))

    def _finish(self, batch: Batch, context: Context) -> str | None:
        """Push the batch's XComs; return its output file id or fail, by its status."""
        ti = context["ti"]
        counts = batch.request_counts
        ti.xcom_push(key=BATCH_XCOM_KEY, value=batch.model_dump(mode="json"))
        ti.xcom_push(key=REQUEST_COUNTS_XCOM_KEY, value=counts.model_dump(mode="json") if counts else None)
        ti.xcom_push(key=ERROR_FILE_ID_XCOM_KEY, value=batch.error_file_id)

        if batch.status == BatchStatus.COMPLETED:
            failed = counts.failed if counts else 0
            total = counts.total if counts else 0
            if batch.output_file_id is None and batch.error_file_id is not None and not total:
                failed = total = 1  # no counts from this server: no output file means every request failed
            if too_many_failures(total, failed, self.failure_threshold):
                allowed = (
                    "every one" if self.failure_threshold is None else f"above {self.failure_threshold:.0%}"
                )
                reasons = describe_failures(self.hook, batch.error_file_id) if batch.error_file_id else ""
                raise AirflowFailException(
                    f"Batch {batch.id}: {failed:,} of {total:,} request(s) failed ({allowed}); commonest "
                    f"reasons: {reasons.rstrip('.') or 'unknown'}. See its error file {batch.error_file_id}."
                )
            if batch.error_file_id is not None:
                self.log.warning(
                    "Batch %s completed with %s failed request(s); see its error file %s.",
                    batch.id,
                    counts.failed if counts else "some",
                    batch.error_file_id,
                )
            return batch.output_file_id

        if batch.status == BatchStatus.FAILED:
            errors = batch.errors.data if batch.errors else []
            listed = "".join(f"\n  - {error.describe()}" for error in errors)
            raise AirflowFailException(
                f"Batch {batch.id} failed with {len(errors)} error(s):{listed or ' none reported'}"
            )

        # expired or cancelled: the partial results are kept by the API.
        done = (
            f"{counts.completed:,} of {counts.total:,} request(s) completed, {counts.failed:,} failed"
            if counts
            else "request counts unknown"
        )
        files = f"output file {batch.output_file_id}, error file {batch.error_file_id}"
        if not self.allow_partial:
            raise AirflowFailException(
                f"Batch {batch.id} is {batch.status}: {done} ({files}). "
                "Set allow_partial=True to continue with the partial results."
            )
        self.log.warning(
            "Batch %s is %s; continuing with partial results: %s (%s).", batch.id, batch.status, done, files
        )
        return batch.output_file_id
