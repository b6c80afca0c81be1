"""OpenAIBatchOperator: requests in, joined results out, at any size, in one deferrable task."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, AirflowSkipException

from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.inputs import (
    Limits,
    RequestItem,
    file_digest,
    fingerprint,
    prepare_input,
    split_file,
)
from airflow_batch_provider.inputs import validate_input as check_input
from airflow_batch_provider.jsonl import answer_text, typed_output_checker
from airflow_batch_provider.links import BATCH_URL_XCOM_KEY, OpenAIBatchLink
from airflow_batch_provider.models import Batch
from airflow_batch_provider.operators.base import RequestsOperator
from airflow_batch_provider.outputs import Prices, failure_message, merge_parts, publish, summary_of
from airflow_batch_provider.parts import BatchRecord, PartState, RunFiles, RunState
from airflow_batch_provider.submission import InputChangedError, OnInputChange, Submitter, check_metadata
from airflow_batch_provider.triggers.batch import EVENT_TERMINAL, EVENT_TIMEOUT, OpenAIBatchesTrigger
from airflow_batch_provider.utils import (
    check_failure_threshold,
    default_destination,
    fail_on_bad_input,
    fail_when_gone,
    local_path,
    safe_name,
    seconds,
    task_directory,
    to_path,
    too_many_failures,
)

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

#: XCom key of every batch's page URL (the extra link shows the first, under ``batch_url``).
BATCH_URLS_XCOM_KEY = "batch_urls"
_NO_LIMIT = 10**12


class OpenAIBatchOperator(RequestsOperator):
    """Run any number of requests through the Batch API in one task, and join the results to them.

    The task validates the input (every problem, by line, before any upload), splits it into
    parts within the API's limits (50,000 requests, 200 MB, 50,000 embedding inputs, or
    ``max_requests_per_batch``), submits one batch per part and waits for all of them in one
    trigger, holding no worker slot. Requests that failed for a reason that may pass
    (408, 429, 5xx, an expired window) are submitted again as new batches, up to
    ``max_retry_rounds`` rounds, each after a longer pause; a 4xx is final. A part refused for
    the organization's enqueued-token limit (``token_limit_exceeded``) is submitted again once
    the others finish, and then after pauses, for at most ``token_limit_timeout``.

    Then every request's final result is written, in input order, to one output file
    (successes) and one error file (failures, and a ``no_result`` line for a request nothing
    answered) under ``destination``. With ``output_type``, each successful answer's text is
    validated into it (kept as ``"output"`` on the line); an answer that does not validate
    counts as failed, code ``invalid_output``.

    Returns a small summary (XCom): ``output_path``, ``error_path``, ``requests``,
    ``succeeded``, ``failed``, ``error_codes``, ``tokens`` (input, output, cached, total),
    ``tokens_by_model``, ``estimated_cost`` (with ``prices``), ``batches`` (ids by round),
    ``elapsed_seconds`` and the first ``errors``. ``return_results=True`` returns the results
    themselves instead, keyed by ``custom_id`` (the ``output`` with ``output_type``, else the
    answer's text, else its body; ``{"error": ...}`` for a failure).

    Every part is created at most once per task instance: a retried or cleared task
    reattaches to the batches an earlier try made from the same input (see
    :mod:`airflow_batch_provider.submission`). Live batches are cancelled when the task is
    killed or marked failed (``cancel_on_kill``) and at ``timeout``.

    :param requests: dicts (``method`` and ``url`` may be left out), :class:`BatchRequest`
        objects, or prompt strings (with ``model``) (templated). An empty list skips the task.
    :param input_path: a JSONL file, local or an object storage URI (templated).
    :param input_file_id: a file already uploaded with purpose ``batch`` (templated).
    :param conn_id: the OpenAI Batch connection. Default ``openai_batch_default``.
    :param endpoint: the endpoint of every request (templated). Default: the first request's
        ``url``, else ``/v1/chat/completions``.
    :param model: the model of requests given as prompt strings (templated). Default None.
    :param completion_window: each batch's window (templated). Default ``24h``.
    :param metadata: extra metadata of every batch (templated); at most 9 keys.
    :param output_expires_after: how long the API keeps output files, seconds or timedelta.
        Default None: the API's default (30 days).
    :param max_requests_per_batch: the most requests of one part. Default: the API's 50,000.
    :param max_retry_rounds: rounds of retries for requests that failed for a passing reason.
        Default 2; 0 retries nothing.
    :param retry_round_delay: seconds (or timedelta) before the first retry round, doubled for each
        later one. Default 60.
    :param token_limit_timeout: how long, in all, to keep resubmitting parts refused for the
        enqueued-token limit. Default 6 hours.
    :param poll_interval: seconds between reads of the batches. Default 60.
    :param timeout: seconds (or timedelta) after which the task cancels its live batches and
        fails. Default None: no limit but the batches' own windows.
    :param output_type: a type (e.g. a pydantic model) each successful answer's text must
        validate into. Default None: answers are kept as they are.
    :param failure_threshold: fail when more than this fraction of the requests failed in the
        end: None (default) only when every one did; 0.0 on any failure; 1.0 never.
    :param destination: a local directory or object storage URI for ``output.jsonl`` and
        ``errors.jsonl`` (templated). Default:
        ``<temp dir>/airflow-batch-results/<dag_id>/<run_id>/<task_id>``.
    :param return_results: return the results (keyed by ``custom_id``) instead of the summary.
        Default False.
    :param max_returned_bytes: the largest results ``return_results`` returns, as JSON; larger
        ones fail the task, pointing at the files. Default 1 MB.
    :param prices: prices per million tokens by model, for ``estimated_cost``, e.g.
        ``{"gpt-4o-mini": {"input": 0.075, "output": 0.30, "cached_input": 0.0375}}``.
    :param validate: check the input before any upload. Default True.
    :param on_input_change: what a retried task does with a part whose input changed:
        ``"resubmit"`` (default) or ``"fail"``.
    :param cancel_on_kill: cancel live batches when a user stops the task (marks it failed, or
        kills it while it runs); never when it is cleared or marked success while it waits,
        so that the next try reattaches to them. Default True.
    """

    template_fields: Sequence[str] = (
        "requests",
        "input_path",
        "input_file_id",
        "endpoint",
        "model",
        "completion_window",
        "metadata",
        "destination",
        "conn_id",
    )
    template_fields_renderers = {"requests": "json", "metadata": "json"}
    operator_extra_links = (OpenAIBatchLink(),)
    ui_color = "#e1d5e7"

    def __init__(
        self,
        *,
        requests: Iterable[RequestItem] | None = None,
        input_path: str | os.PathLike[str] | ObjectStoragePath | None = None,
        input_file_id: str | None = None,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        endpoint: str | None = None,
        model: str | None = None,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        output_expires_after: int | timedelta | None = None,
        max_requests_per_batch: int | None = None,
        max_retry_rounds: int = 2,
        retry_round_delay: float | timedelta = 60.0,
        token_limit_timeout: float | timedelta = timedelta(hours=6),
        poll_interval: float = 60.0,
        timeout: float | timedelta | None = None,
        output_type: Any = None,
        failure_threshold: float | None = None,
        destination: str | os.PathLike[str] | ObjectStoragePath | None = None,
        return_results: bool = False,
        max_returned_bytes: int = 1024 * 1024,
        prices: Prices | None = None,
        validate: bool = True,
        on_input_change: OnInputChange = "resubmit",
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if sum(value is not None for value in (requests, input_path, input_file_id)) > 1:
            raise ValueError(
                f"Task {self.task_id!r}: pass at most one of requests, input_path or input_file_id."
            )
        if isinstance(metadata, Mapping):
            check_metadata(metadata, self.task_id)
        if max_requests_per_batch is not None and max_requests_per_batch < 1:
            raise ValueError(f"Task {self.task_id!r}: max_requests_per_batch must be at least 1.")
        self.requests = requests
        self.input_path = input_path
        self.input_file_id = input_file_id
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.model = model
        self.completion_window = completion_window
        self.metadata = metadata
        self.output_expires_after = output_expires_after
        self.max_requests_per_batch = max_requests_per_batch
        self.max_retry_rounds = max_retry_rounds
        self.retry_round_delay = float(seconds(retry_round_delay) or 0)
        self.token_limit_timeout = float(seconds(token_limit_timeout) or 0)
        self.poll_interval = poll_interval
        self.timeout_seconds = None if timeout is None else float(seconds(timeout) or 0)
        self.output_type = output_type
        self.failure_threshold = check_failure_threshold(failure_threshold)
        self.destination = destination
        self.return_results = return_results
        self.max_returned_bytes = max_returned_bytes
        self.prices = prices
        self.validate = validate
        self.on_input_change = on_input_change
        self.cancel_on_kill = cancel_on_kill
        self.batch_id: str | None = None
        self._live: list[str] = []

    # -- the run, step by step --

    def execute(self, context: Context) -> Any:
        files = self._files(context)
        with fail_when_gone(self.task_id):
            state = self._prepare(context, files)
            submitter = Submitter(self.hook, context, self.log, self.on_input_change)
            for part in state.parts:
                self._submit(submitter, state, part, part.slot, files.part_input(part))
        self._push_links(context, state)
        return self._wait(state)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: submit what is due, or go on from the ended batches."""
        run = RunState.model_validate(event["state"])
        self.batch_id = next((record.id for _, record in run.records()), None)  # for the extra link
        if event["status"] == EVENT_TIMEOUT:
            self._cancel(run.live, "the task's timeout passed")
            raise AirflowFailException(
                f"Task {self.task_id!r}: {event['message']} Its live batches were cancelled."
            )
        if event["status"] != EVENT_TERMINAL:
            if event.get("status_code") == 404:  # a batch is gone: no retry brings it back
                raise AirflowFailException(f"Task {self.task_id!r}: {event['message']}")
            raise AirflowException(event["message"])
        with fail_when_gone(self.task_id):
            return self._go_on(context, run, event)

    def _go_on(self, context: Context, run: RunState, event: dict[str, Any]) -> Any:
        """Submit what is due, plan another round, or finish, after the batches in ``event`` ended."""
        for batch_id, batch in event["batches"].items():
            run.record(batch_id).update(Batch.model_validate(batch))
        files = self._files(context)
        if run.to_submit:
            self._submit_due(context, run, files)
            return self._wait(run)
        run.live = []
        if self._plan_token_resubmits(run) or self._plan_retry_round(run, files):
            return self._wait(run)
        return self._finish(context, run, files)

    def on_kill(self) -> None:
        if self.cancel_on_kill:
            self._cancel(self._live, "the task was killed")

    # -- preparing and submitting --

    def _prepare(self, context: Context, files: RunFiles) -> RunState:
        """Validate and split the input into parts in the work directory."""
        with tempfile.TemporaryDirectory(prefix="openai-batch-") as scratch, fail_on_bad_input(self.task_id):
            if self.input_file_id is not None:
                source = self.hook.download_file(self.input_file_id, Path(scratch) / "input.jsonl")
                local, endpoint = prepare_input(None, source, Path(scratch), self.endpoint)
            else:
                if self.requests is None and self.input_path is None:
                    raise AirflowFailException(
                        f"Task {self.task_id!r}: pass one of requests, input_path or input_file_id."
                    )
                if (
                    self.requests is not None
                    and not isinstance(self.requests, (str, bytes))
                    and not self.requests
                ):
                    raise AirflowSkipException(
                        f"Task {self.task_id!r} got no requests: there is nothing to run."
                    )
                local, endpoint = prepare_input(
                    self.requests, self.input_path, Path(scratch), self.endpoint, self.model
                )
            count = 0
            if self.validate:
                label = f"input of task {self.task_id!r}"
                # The whole input may be past the limits of one batch: it is split below.
                unlimited = {
                    "max_requests": _NO_LIMIT,
                    "max_bytes": _NO_LIMIT,
                    "max_embedding_inputs": _NO_LIMIT,
                }
                count = check_input(local, endpoint, label, **unlimited)
            limits = Limits(requests=min(self.max_requests_per_batch or _NO_LIMIT, Limits().requests))
            parts = split_file(local, files.directory, endpoint, limits)
        if not parts:
            raise AirflowSkipException(f"Task {self.task_id!r} got no requests: there is nothing to run.")
        self.log.info(
            "%d request(s) to %s in %d part(s) of at most %d.",
            count or sum(part.requests for part in parts),
            endpoint,
            len(parts),
            limits.requests,
        )
        deadline = time.time() + self.timeout_seconds if self.timeout_seconds is not None else None
        return RunState(
            endpoint=endpoint,
            started_at=time.time(),
            deadline=deadline,
            parts=[PartState(index=part.index, requests=part.requests, digest=part.digest) for part in parts],
        )

    def _submit(
        self,
        submitter: Submitter,
        run: RunState,
        part: PartState,
        slot: str,
        path: Path | None,
        input_file_id: str | None = None,
    ) -> None:
        """Reattach to, or create, the batch of ``slot``: the requests in ``path`` (or ``input_file_id``)."""
        digest = file_digest(path) if path is not None else str(input_file_id)
        key = fingerprint(
            digest,
            endpoint=run.endpoint,
            conn_id=self.conn_id,
            completion_window=self.completion_window,
            output_expires_after=seconds(self.output_expires_after),
        )
        try:
            batch = submitter.find(slot, key)
        except InputChangedError as error:
            raise AirflowFailException(str(error)) from None
        if batch is not None:
            self.log.info(
                "Part %s: reattached to batch %s (%s) of an earlier try.", slot, batch.id, batch.status
            )
        else:
            if path is not None:
                uploaded = self.hook.upload_file(path, filename=f"{safe_name(self.task_id)}-{slot}.jsonl")
                input_file_id = uploaded.id
            assert input_file_id is not None
            with fail_on_bad_input(self.task_id):
                batch = submitter.create(
                    slot,
                    key,
                    input_file_id,
                    run.endpoint,
                    self.completion_window,
                    dict(self.metadata or {}),
                    seconds(self.output_expires_after),
                )
            self.log.info("Part %s: created batch %s from file %s.", slot, batch.id, input_file_id)
        if slot == part.slot:
            part.input_file_id = batch.input_file_id
        record = BatchRecord(id=batch.id, slot=slot, input_file_id=batch.input_file_id)
        record.update(batch)
        part.batches.append(record)
        run.live.append(batch.id)
        self._live.append(batch.id)

    def _submit_due(self, context: Context, run: RunState, files: RunFiles) -> None:
        submitter = Submitter(self.hook, context, self.log, self.on_input_change)
        for index, slot, input_file_id in run.to_submit:
            part = run.parts[index]
            path = None if input_file_id else files.directory / f"part-{index:05d}.r{run.round}.jsonl"
            if path is not None and not path.exists():
                path, _ = files.retry_input(part, run.round)
            self._submit(submitter, run, part, slot, path, input_file_id)
        run.to_submit = []
        self._push_links(context, run)

    def _plan_token_resubmits(self, run: RunState) -> bool:
        """Plan another try of every part refused for the enqueued-token limit; False if none."""
        refused = [
            (part, record)
            for part in run.parts
            if part.batches and (record := part.batches[-1]).token_limited and record.status == "failed"
        ]
        hard = [
            record for _, record in run.records() if record.status == "failed" and not record.token_limited
        ]
        if hard:
            listed = "".join(
                f"\n  - batch {record.id} ({record.slot}): {'; '.join(record.errors)}" for record in hard
            )
            raise AirflowFailException(f"Task {self.task_id!r}: {len(hard)} batch(es) failed:{listed}")
        if not refused:
            run.token_waits = 0
            return False
        waited = time.time() - run.started_at
        if waited > self.token_limit_timeout:
            raise AirflowFailException(
                f"Task {self.task_id!r}: {len(refused)} part(s) still refused for the organization's "
                f"enqueued-token limit after {waited:,.0f} s "
                f"(token_limit_timeout={self.token_limit_timeout:,.0f} s)."
            )
        # The first resubmission comes at once (the other parts have just ended); later ones wait.
        pause = 0.0 if run.token_waits == 0 else min(self.poll_interval * 2**run.token_waits, 600.0)
        run.token_waits += 1
        self.log.warning(
            "%d part(s) refused for the enqueued-token limit; submitting them again in %.0f s "
            "(giving up %.0f s after the start).",
            len(refused),
            pause,
            self.token_limit_timeout,
        )
        run.to_submit = [
            (part.index, f"{record.slot}.t{run.token_waits}", record.input_file_id)
            for part, record in refused
        ]
        run.not_before = time.time() + pause
        return True

    def _plan_retry_round(self, run: RunState, files: RunFiles) -> bool:
        """Plan a round of retries for requests that failed for a passing reason; False if none."""
        if run.round >= self.max_retry_rounds:
            return False
        due = []
        for part in run.parts:
            if not any(record.error_file_id for record in part.batches):
                continue  # nothing failed in it: no need to read its results now
            _, count = files.retry_input(part, run.round + 1)
            if count:
                due.append((part.index, count))
        if not due:
            return False
        run.round += 1
        pause = self.retry_round_delay * 2 ** (run.round - 1)
        self.log.warning(
            "Retry round %d of %d: %d request(s) of %d part(s) failed for a reason that may pass; "
            "submitting them again in %.0f s.",
            run.round,
            self.max_retry_rounds,
            sum(count for _, count in due),
            len(due),
            pause,
        )
        run.to_submit = [(index, f"{index}.r{run.round}", None) for index, _ in due]
        run.not_before = time.time() + pause
        return True

    # -- waiting --

    def _wait(self, run: RunState) -> None:
        timeout = (
            None if run.deadline is None else timedelta(seconds=max(run.deadline - time.time(), 0) + 300)
        )
        self.defer(
            trigger=OpenAIBatchesTrigger(
                conn_id=self.conn_id,
                batch_ids=list(run.live),
                poll_interval=self.poll_interval,
                deadline=run.deadline,
                not_before=run.not_before if run.to_submit else None,
                cancel_on_kill=self.cancel_on_kill,
                state=run.model_dump(mode="json"),
            ),
            method_name="execute_complete",
            timeout=timeout,
        )

    def _cancel(self, batch_ids: Iterable[str], why: str) -> None:
        for batch_id in batch_ids:
            try:
                batch = self.hook.cancel_batch(batch_id)
            except OpenAIBatchAPIError as error:  # 409: it ended meanwhile
                self.log.warning("Could not cancel batch %s: %s", batch_id, error)
            else:
                self.log.info("Cancelled batch %s (%s): it is now %s.", batch_id, why, batch.status)

    def _push_links(self, context: Context, run: RunState) -> None:
        urls = [self.hook.batch_page_url(record.id) for _, record in run.records()]
        self.batch_id = next((record.id for _, record in run.records()), None)  # the link shows the first
        ti = context["ti"]
        ti.xcom_push(key=BATCH_URL_XCOM_KEY, value=urls[0] if urls else None)
        ti.xcom_push(key=BATCH_URLS_XCOM_KEY, value=[url for url in urls if url])

    # -- finishing --

    def _work_dir(self, context: Context) -> Path:
        return task_directory(context["ti"], "airflow-batch-work")

    def _files(self, context: Context) -> RunFiles:
        return RunFiles(self.hook, self._work_dir(context), seconds(self.output_expires_after))

    def _finish(self, context: Context, run: RunState, files: RunFiles) -> Any:
        """Join every part's results, in input order, into the output and error files."""
        destination = (
            to_path(self.destination) if self.destination is not None else default_destination(context["ti"])
        )
        local_dir = local_path(destination) or files.directory
        local_dir.mkdir(parents=True, exist_ok=True)
        checker = typed_output_checker(self.output_type) if self.output_type is not None else None
        parts = [(files.part_input(part), files.results(part)) for part in run.parts]
        output, errors = local_dir / "output.jsonl", local_dir / "errors.jsonl"
        tally = merge_parts(parts, output, errors, checker)
        summary = {
            "output_path": publish(output, destination, "output.jsonl"),
            "error_path": publish(errors, destination, "errors.jsonl"),
            "requests": sum(part.requests for part in run.parts),
            **summary_of(tally, self.prices),
            "batches": run.rounds(),
            "elapsed_seconds": round(time.time() - run.started_at, 1),
        }
        self.log.info(
            "%d request(s) succeeded, %d failed (%s); %d tokens; results in %s and %s.",
            tally.succeeded,
            tally.failed,
            tally.most_common_errors() or "no failure",
            tally.total_tokens["total"],
            summary["output_path"],
            summary["error_path"],
        )
        results = self._results(output, errors) if self.return_results else None
        shutil.rmtree(files.directory, ignore_errors=True)
        if too_many_failures(tally.succeeded + tally.failed, tally.failed, self.failure_threshold):
            raise AirflowFailException(failure_message(self.task_id, tally, self.failure_threshold))
        return results if self.return_results else summary

    def _results(self, output: Path, errors: Path) -> dict[str, Any]:
        """The results keyed by ``custom_id``, refused when larger than ``max_returned_bytes``."""
        results: dict[str, Any] = {}
        size = 0
        for path in (output, errors):
            with path.open("rb") as file:
                for line in file:
                    result = json.loads(line)
                    if result.get("error") is not None or path == errors:
                        value: Any = {
                            "error": result.get("error") or (result.get("response") or {}).get("body")
                        }
                    elif "output" in result:
                        value = result["output"]
                    else:
                        body = (result.get("response") or {}).get("body")
                        text = answer_text(body)
                        value = text if text is not None else body
                    size += len(json.dumps(value)) + len(result["custom_id"]) + 6
                    if size > self.max_returned_bytes:
                        raise AirflowFailException(
                            f"Task {self.task_id!r}: the results are larger than max_returned_bytes="
                            f"{self.max_returned_bytes:,}; read them from {output} and {errors} instead "
                            "(return_results=False returns the paths)."
                        )
                    results[result["custom_id"]] = value
        return results
