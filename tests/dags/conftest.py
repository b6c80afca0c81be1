"""Real Airflow for DAG-level tests: a way to run a DAG in the migrated throwaway database.

``tests/conftest.py`` points AIRFLOW_HOME at a temporary directory before Airflow is
imported, and its ``airflow_db`` session fixture migrates the database once.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_batch_provider.emulator.server import EmulatorServer
from tests.support.airflow import register_dags


@dataclass
class DagResult:
    """What a DAG run left behind: task states, XComs, and everything printed meanwhile."""

    state: str
    states: dict[str, str]
    xcoms: dict[tuple[str, str], Any]
    output: str
    mapped: dict[tuple[str, str], dict[int, Any]]
    tries: dict[str, int]
    """How many tries each task instance made (by task id; mapped ones: the most of any index)."""

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_id, key))

    def xcoms_by_map_index(self, task_id: str, key: str = "return_value") -> list[Any]:
        """The values of every map index of a mapped task, in map-index order."""
        values = self.mapped.get((task_id, key), {})
        return [values[index] for index in sorted(values)]


@pytest.fixture
def run_dag(
    airflow_db: None, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Callable[..., DagResult]:
    """Run a DAG with ``dag.test()`` (tasks and triggers in this process) and collect the result.

    The output is everything the run printed (task logs included) and logged through
    Python's logging.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def run(dag: Any) -> DagResult:
        # dag.test() runs DAGs the metadata database knows: register this one first.
        register_dags(dag)
        capfd.readouterr()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            dag_run = dag.test()
        captured = capfd.readouterr()
        with create_session() as session:
            instances = dag_run.get_task_instances(session=session)
            states = {ti.task_id: str(ti.state) for ti in instances}
            tries: dict[str, int] = {}
            for ti in instances:
                tries[ti.task_id] = max(tries.get(ti.task_id, 0), ti.try_number)
            rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id)).all()
            xcoms = {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}
            mapped: dict[tuple[str, str], dict[int, Any]] = {}
            for row in rows:
                mapped.setdefault((row.task_id, row.key), {})[row.map_index] = XComModel.deserialize_value(
                    row
                )
        # Show the run's output in pytest's report when a test fails.
        sys.stdout.write(captured.out)
        sys.stderr.write(captured.err)
        output = captured.out + captured.err + caplog.text
        return DagResult(str(dag_run.state), states, xcoms, output, mapped, tries)

    return run


@pytest.fixture
def assert_no_secret() -> Callable[[DagResult, EmulatorServer], None]:
    """Check that the server's API key shows in no line the run printed and in no XCom it left."""

    def check(result: DagResult, server: EmulatorServer) -> None:
        key = server.api_key
        assert key
        assert key not in result.output
        leaked = [name for name, value in result.xcoms.items() if key in json.dumps(value, default=str)]
        assert not leaked, f"the API key is in XComs {leaked}"

    return check
