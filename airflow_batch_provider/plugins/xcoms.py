"""What a task instance's XComs say about its batches and results, read from the metadata database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from airflow_batch_provider.utils import BATCH_XCOM_KEY

RETURN_VALUE = "return_value"


@dataclass(frozen=True)
class TaskResults:
    """Batches a task instance's XComs name, and where its results went.

    :param batch_ids: from the summary (``batch_id``, ``batches``) and the sensor's ``batch``.
    :param output_path: the summary's ``output_path``, if any.
    :param error_path: the summary's ``error_path``, if any.
    """

    batch_ids: tuple[str, ...] = ()
    output_path: str | None = None
    error_path: str | None = None


def results_of(xcoms: dict[str, Any]) -> TaskResults:
    """Read the operators' XComs (``return_value`` summary, the sensor's ``batch``) of one task instance."""
    summary = xcoms.get(RETURN_VALUE)
    ids: list[str] = []
    output_path = error_path = None
    if isinstance(summary, dict):
        if isinstance(summary.get("batch_id"), str):
            ids.append(summary["batch_id"])
        rounds = summary.get("batches")
        if isinstance(rounds, dict):
            ids.extend(batch_id for round_ids in rounds.values() for batch_id in round_ids or ())
        output_path = summary.get("output_path") if isinstance(summary.get("output_path"), str) else None
        error_path = summary.get("error_path") if isinstance(summary.get("error_path"), str) else None
    sensed = xcoms.get(BATCH_XCOM_KEY)
    if isinstance(sensed, dict) and isinstance(sensed.get("id"), str):
        ids.append(sensed["id"])
    unique = tuple(dict.fromkeys(batch_id for batch_id in ids if isinstance(batch_id, str)))
    return TaskResults(unique, output_path, error_path)


def _read(dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(XComModel.key, XComModel.value).where(
        XComModel.dag_id == dag_id,
        XComModel.run_id == run_id,
        XComModel.task_id == task_id,
        XComModel.map_index == map_index,
        XComModel.key.in_([RETURN_VALUE, BATCH_XCOM_KEY]),
    )
    with create_session() as session:
        return {row.key: XComModel.deserialize_value(row) for row in session.execute(query)}


async def task_results(dag_id: str, run_id: str, task_id: str, map_index: int) -> TaskResults:
    """What the task instance's XComs say (nothing when it pushed none)."""
    return results_of(await run_in_threadpool(_read, dag_id, run_id, task_id, map_index))
