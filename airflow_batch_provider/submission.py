"""Creating the batches of one task instance at most once, and finding them again on a later try.

Every batch an operator creates carries in its metadata the task instance that made it (the
run identity), which part of the task's input it runs (its slot; empty for a single batch), and
the fingerprint of everything that decides its results. A later try of the task (a retry, a
clear) finds the batch again and reattaches to it, instead of paying for the same requests twice:

1. through Airflow's durable task state store (3.3+), which records the intent to create a
   batch (its slot and fingerprint, and when) before the paid call and the batch id after it;
   a try that died between the two is recovered by a look at the batches created since the
   intent was recorded (the newest page, as a rule);
2. otherwise (Airflow < 3.3, or a record gone), by listing the batches created since the
   run started.

A batch found there whose fingerprint differs from the current input's (the requests, the
endpoint, the connection, the window or the output expiry changed) is not reused: per
``on_input_change`` it is cancelled and a new one submitted ("resubmit"), or the task fails
("fail").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from airflow_batch_provider.client import OpenAIBatchAPIError
from airflow_batch_provider.models import Batch
from airflow_batch_provider.rules import (
    METADATA_MAX_KEY_LENGTH,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_LENGTH,
    RESULTLESS_STATUSES,
    TERMINAL_STATUSES,
)
from airflow_batch_provider.utils import RUN_IDENTITY_KEYS, run_identity

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import Logger

    from airflow_batch_provider.hooks.batch import OpenAIBatchHook

#: Metadata keys, beside the run identity, that tie a batch to its task's input.
SLOT_KEY = "airflow_part"
FINGERPRINT_KEY = "airflow_input_sha256"
#: Metadata keys the operators set; a user's metadata may use the rest of the API's 16, minus
#: one the client keeps for its own retries.
RESERVED_KEYS = (*RUN_IDENTITY_KEYS, SLOT_KEY, FINGERPRINT_KEY)
#: Durable task state key (Airflow 3.3+) of a slot's record; ``batch`` for the single batch.
STATE_KEY_PREFIX = "openai_batch"

# Clocks of Airflow and of the API may disagree; look a little earlier than asked.
_CLOCK_SKEW = timedelta(minutes=10)

#: Most metadata keys a user may set: the API's 16, less the operators' and one the client keeps.
USER_METADATA_KEYS = METADATA_MAX_KEYS - len(RESERVED_KEYS) - 1
#: XCom key under which the submit operator pushes the id of the uploaded input file.
INPUT_FILE_ID_XCOM_KEY = "input_file_id"

OnInputChange = Literal["resubmit", "fail"]


def check_metadata(metadata: Mapping[str, Any], task_id: str) -> None:
    """Raise ValueError naming each user metadata entry the API would refuse, or the operators need."""
    problems = []
    if reserved := sorted(set(metadata) & set(RESERVED_KEYS)):
        problems.append(f"keys {reserved} are set by the operator")
    if len(metadata) > USER_METADATA_KEYS:
        problems.append(
            f"{len(metadata)} keys, but at most {USER_METADATA_KEYS} are free "
            f"({len(RESERVED_KEYS) + 1} of the API's {METADATA_MAX_KEYS} tie the batch to its task)"
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


class InputChangedError(Exception):
    """An earlier try's batch was made from other input, and ``on_input_change`` is ``"fail"``."""


class Submitter:
    """Create and find again the batches of one task instance.

    :param hook: the API.
    :param context: the task's context (its task instance, run and task state store).
    :param log: the task's log.
    :param on_input_change: what to do with an earlier try's batch made from other input:
        ``"resubmit"`` cancels it and lets the caller submit anew; ``"fail"`` raises
        :class:`InputChangedError`.
    """

    def __init__(
        self,
        hook: OpenAIBatchHook,
        context: Context,
        log: Logger,
        on_input_change: OnInputChange = "resubmit",
    ) -> None:
        self.hook = hook
        self.log = log
        self.on_input_change = on_input_change
        ti = context["ti"]
        self.identity = run_identity(ti)
        self.try_number: int = ti.try_number
        self.store = context.get("task_state_store")
        dag_run = context["dag_run"]
        started = dag_run.start_date or dag_run.run_after
        self.run_started: float = started.timestamp() if started else 0.0

    def _state_key(self, slot: str) -> str:
        return f"{STATE_KEY_PREFIX}:{slot}" if slot else STATE_KEY_PREFIX

    def find(self, slot: str, fingerprint: str) -> Batch | None:
        """The batch an earlier try created in ``slot`` from the same input, if it can still deliver.

        :param slot: which batch of the task (``""`` for a task's only batch).
        :param fingerprint: the current input's fingerprint.
        :raises InputChangedError: the earlier batch was made from other input, and
            ``on_input_change`` is ``"fail"``.
        """
        batch = self._earlier(slot)
        if batch is None:
            return None
        found = (batch.metadata or {}).get(FINGERPRINT_KEY)
        if found is not None and found != fingerprint:
            self._input_changed(batch, slot)
            return None
        if batch.status in RESULTLESS_STATUSES:
            self.log.info("Batch %s of an earlier try is %s; submitting anew.", batch.id, batch.status)
            return None
        return batch

    def _earlier(self, slot: str) -> Batch | None:
        record = self.store.get(self._state_key(slot)) if self.store is not None else None
        if isinstance(record, dict) and record.get("batch_id"):
            try:
                return self.hook.get_batch(str(record["batch_id"]))
            except OpenAIBatchAPIError as error:
                if error.status_code != 404:
                    raise
                self.log.info("Batch %s of an earlier try no longer exists.", record["batch_id"])
                return None
        if isinstance(record, dict) and record.get("intent_at"):
            # The earlier try died between asking for a batch and recording its id.
            return self._scan(slot, since=float(str(record["intent_at"])))
        if self.try_number > 1:
            # No record: Airflow < 3.3, or one cleared (clear_on_success) before the task was cleared.
            return self._scan(slot, since=self.run_started)
        return None

    def _scan(self, slot: str, since: float) -> Batch | None:
        """The newest batch of this task instance and slot created since ``since`` (epoch seconds)."""
        since -= _CLOCK_SKEW.total_seconds()
        wanted = {**self.identity, **({SLOT_KEY: slot} if slot else {})}
        for batch in self.hook.list_batches():
            if batch.created_at < since:
                break
            metadata = batch.metadata or {}
            if all(metadata.get(key) == value for key, value in wanted.items()) and (
                slot or SLOT_KEY not in metadata
            ):
                return batch
        return None

    def _input_changed(self, batch: Batch, slot: str) -> None:
        what = f"part {slot}" if slot else "the batch"
        if self.on_input_change == "fail":
            raise InputChangedError(
                f"Batch {batch.id} of an earlier try ({what}) was made from other input: the requests or "
                "the settings changed since. Cancel it and clear the task, or set on_input_change='resubmit'."
            )
        self.log.warning(
            "Batch %s of an earlier try (%s) was made from other input; on_input_change='resubmit': "
            "cancelling it and submitting the current input.",
            batch.id,
            what,
        )
        if batch.status not in TERMINAL_STATUSES:
            try:
                self.hook.cancel_batch(batch.id)
            except OpenAIBatchAPIError as error:  # 409: it ended meanwhile
                self.log.warning("Could not cancel batch %s: %s", batch.id, error)

    def create(
        self,
        slot: str,
        fingerprint: str,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Mapping[str, str],
        output_expires_after: int | None,
    ) -> Batch:
        """Create a batch for ``slot``, recording the intent before the paid call and the id after.

        :param metadata: the user's metadata; the run identity, slot and fingerprint are added.
        """
        state_key = self._state_key(slot)
        if self.store is not None:
            self.store.set(state_key, {"intent_at": time.time(), "fingerprint": fingerprint})
        tags = {**self.identity, FINGERPRINT_KEY: fingerprint, **({SLOT_KEY: slot} if slot else {})}
        batch = self.hook.create_batch(
            input_file_id=input_file_id,
            endpoint=endpoint,
            completion_window=completion_window,
            metadata={**metadata, **tags},
            output_expires_after=output_expires_after,
        )
        if self.store is not None:
            self.store.set(state_key, {"batch_id": batch.id, "fingerprint": fingerprint})
        return batch

    def forget(self, slot: str) -> None:
        """Drop the record of ``slot`` (its batch is done with), where there is a state store."""
        if self.store is not None:
            self.store.delete(self._state_key(slot))
