"""Scale-out on Airflow's own engine: CeleryExecutor, Redis as broker, PostgreSQL as metadata
database and Celery result backend, two Celery workers and two triggerers, every component a
process of its own, every run driven through the REST API, the emulator in a process of its own.

One deployment serves the module. Each worker has a temporary directory of its own (as on two
machines), so a task resumed on the other worker finds none of the first one's files.

Settings this module chooses (:data:`CELERY_SETTINGS`), and why:

* ``[triggerer] capacity = 6``: each triggerer runs at most six triggers, so the eleven of
  ``celery_scale`` cannot all land on the triggerer that looks first; both must hold some.
  (Airflow's default, 1,000, lets one triggerer take every trigger of a small run.)
* ``[scheduler] task_instance_heartbeat_timeout = 15`` (default 300) with
  ``task_instance_heartbeat_timeout_detection_interval = 2`` (default 10) and
  ``[workers] min_heartbeat_interval = 2`` (default 5): a task whose worker died stops
  heartbeating; the scheduler fails that try 15 s after the last heartbeat (instead of five
  minutes) and, with retries left, schedules the next try. Fifteen seconds is seven heartbeats,
  enough margin for a busy two-core machine never to fail a live task.
* Celery's own settings stay Airflow's defaults: ``task_acks_late = True`` and the Redis
  ``visibility_timeout`` of 86,400 s. Detection of a dead worker's task is the scheduler's job
  (above), not Celery's: a redelivered message names the dead try's task instance id, which
  Airflow 3 replaces with a new one for the next try, so the Execution API refuses to run it
  (404); and a short visibility timeout would redeliver the messages of live long tasks too.
* ``--concurrency 2`` per worker: four task slots on two cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_rest import epoch
from tests.support.databases import postgres_admin_url, redis_url
from tests.support.deployment import AirflowDeployment
from tests.support.emulator import EmulatorControl
from tests.support.processes import ManagedProcess, wait_until
from tests.system.conftest import API_KEY, CONN_VARIABLE, DAGS, record
from tests.system.dags.celery_dags import (
    MAPPED_BATCHES,
    ONE_TASK_REQUESTS,
    PART_SIZE,
    PARTS,
    REQUEST_SETS,
)

SCALE_DAG = "celery_scale"
CRASH_DAG = "celery_worker_crash"
WORKERS = ("worker-1", "worker-2")
TRIGGERERS = ("triggerer-1", "triggerer-2")
WORKER_CONCURRENCY = 2
TRIGGERER_CAPACITY = 6
HEARTBEAT_TIMEOUT = 15
CELERY_SETTINGS = {
    "triggerer.capacity": TRIGGERER_CAPACITY,
    "scheduler.task_instance_heartbeat_timeout": HEARTBEAT_TIMEOUT,
    "scheduler.task_instance_heartbeat_timeout_detection_interval": 2,
    "workers.min_heartbeat_interval": 2,
}
"""Airflow settings of the module's deployment (the module's docstring says why)."""
RUN_TIMEOUT = 180.0
"""Seconds a run, or one step of it, may take on a busy two-core machine."""

pytestmark = pytest.mark.skipif(
    not (postgres_admin_url() and redis_url()),
    reason="the CeleryExecutor tests need ABP_SYSTEM_POSTGRES_URL (PostgreSQL) and "
    "ABP_SYSTEM_REDIS_URL (Redis as broker)",
)


def _start_worker(airflow: AirflowDeployment, name: str) -> ManagedProcess:
    """Start (or start again) the Celery worker ``name``, with a temporary directory of its own."""
    tmp = airflow.root / "tmp" / name
    tmp.mkdir(parents=True, exist_ok=True)
    return airflow.start_worker(name, concurrency=WORKER_CONCURRENCY, env={"TMPDIR": str(tmp)})


@pytest.fixture(scope="module")
def airflow(
    emulator: EmulatorControl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    """CeleryExecutor on PostgreSQL and Redis: two triggerers, two workers, the Celery DAGs."""
    deployment = AirflowDeployment(
        tmp_path_factory.mktemp("airflow-celery"),
        dags=[DAGS / "celery_dags.py"],
        env={CONN_VARIABLE: emulator.connection()},
        executor="CeleryExecutor",
        broker_url=redis_url(),
        config=CELERY_SETTINGS,
        name_hosts=True,
    )
    started = time.monotonic()
    try:
        deployment.start(triggerers=len(TRIGGERERS))
        for name in WORKERS:
            _start_worker(deployment, name)
        deployment.rest.wait_for_dags([SCALE_DAG, CRASH_DAG])
        record("Celery deployment start (2 triggerers, 2 workers)", time.monotonic() - started)
        yield deployment
    finally:
        deployment.stop()


# --- celery_scale: ten mapped batches and a task of three parts, in one run ---


@dataclass(frozen=True)
class ScaleRun:
    """One run of ``celery_scale``, seen while its triggers waited and after it ended."""

    run_id: str
    run: dict[str, Any]
    """The finished run, as the REST API answers it."""
    task_instances: list[dict[str, Any]]
    """Every task instance once the run ended."""
    deferred: list[dict[str, Any]]
    """Every deferrable task instance at the moment all of them were deferred at once."""
    holders: dict[tuple[str, int], str]
    """Which triggerer process ran the trigger of each deferred task instance, by (task, map index)."""


def _all_deferred_in_triggerers(airflow: AirflowDeployment, run_id: str) -> list[dict[str, Any]] | None:
    """The run's ``wait`` and ``one_task`` instances when every one is deferred in a triggerer."""
    deferrable = [ti for ti in airflow.rest.task_instances(SCALE_DAG, run_id) if ti["task_id"] != "submit"]
    ready = len(deferrable) == MAPPED_BATCHES + 1 and all(
        ti["state"] == "deferred" and ti.get("triggerer_job") for ti in deferrable
    )
    return deferrable if ready else None


@pytest.fixture(scope="module")
def scale_run(airflow: AirflowDeployment, emulator: EmulatorControl) -> ScaleRun:
    """Run ``celery_scale``: hold every batch until all eleven triggers wait, then let them end."""
    emulator.hold()
    started = time.monotonic()
    run_id = airflow.rest.trigger_run(SCALE_DAG)
    deferred = wait_until(
        lambda: _all_deferred_in_triggerers(airflow, run_id),
        RUN_TIMEOUT,
        f"every trigger of {SCALE_DAG} to wait in a triggerer",
        details=airflow.describe,
    )
    holders = {}
    for ti in deferred:
        holder = airflow.triggerer_holding(ti)
        assert holder is not None, f"no running triggerer of ours holds {ti['task_id']}[{ti['map_index']}]"
        holders[(ti["task_id"], ti["map_index"])] = holder.name
    emulator.release()
    run = airflow.rest.wait_for_run(SCALE_DAG, run_id, timeout=RUN_TIMEOUT)
    record(f"{SCALE_DAG} run, trigger to end (batches held until all 11 waited)", time.monotonic() - started)
    record(f"{SCALE_DAG} run, its own start to end", epoch(run["end_date"]) - epoch(run["start_date"]))
    return ScaleRun(run_id, run, airflow.rest.task_instances(SCALE_DAG, run_id), deferred, holders)


def test_the_scale_run_succeeds_with_every_task_instance_at_its_first_try(scale_run: ScaleRun) -> None:
    assert scale_run.run["state"] == "success"
    tasks = sorted((ti["task_id"], ti["map_index"]) for ti in scale_run.task_instances)
    mapped = list(range(MAPPED_BATCHES))
    assert tasks == sorted([("one_task", -1)] + [(task, i) for task in ("submit", "wait") for i in mapped])
    assert {(ti["state"], ti["try_number"]) for ti in scale_run.task_instances} == {("success", 1)}


def test_the_mapped_tasks_ran_on_both_workers(scale_run: ScaleRun) -> None:
    for task_id in ("submit", "wait"):
        hosts = [ti["hostname"] for ti in scale_run.task_instances if ti["task_id"] == task_id]
        assert sorted(set(hosts)) == list(WORKERS), f"{task_id} ran on {hosts}"


def _trigger_logs(airflow: AirflowDeployment, ti: dict[str, Any]) -> list[Path]:
    """The files of the task instance's first try that its trigger's lines went to."""
    directory = (
        airflow.task_logs
        / f"dag_id={ti['dag_id']}"
        / f"run_id={ti['dag_run_id']}"
        / f"task_id={ti['task_id']}"
    )
    if ti["map_index"] >= 0:
        directory /= f"map_index={ti['map_index']}"
    return sorted(directory.glob("attempt=1.log.trigger.*.log"))


def test_the_triggers_ran_on_both_triggerers_within_their_capacity(
    airflow: AirflowDeployment, scale_run: ScaleRun
) -> None:
    held = [scale_run.holders[(ti["task_id"], ti["map_index"])] for ti in scale_run.deferred]
    counts = {name: held.count(name) for name in TRIGGERERS}
    assert sorted(set(held)) == list(TRIGGERERS), counts
    assert max(counts.values()) <= TRIGGERER_CAPACITY, counts
    for ti in scale_run.deferred:
        # The job's own record names the same process (its hostname is the component's name).
        assert ti["triggerer_job"]["hostname"] == scale_run.holders[(ti["task_id"], ti["map_index"])]
        assert ti["triggerer_job"]["id"] == airflow.triggerer_jobs[ti["triggerer_job"]["hostname"]]
        # The triggerer writes a trigger's lines to a log file named for its job: it ran it there.
        logs = _trigger_logs(airflow, ti)
        assert [path.name for path in logs] == [f"attempt=1.log.trigger.{ti['triggerer_job']['id']}.log"]
        assert "Trigger fired event" in logs[0].read_text()
    classpaths = {ti["task_id"]: ti["trigger"]["classpath"] for ti in scale_run.deferred}
    assert classpaths == {
        "wait": "airflow_batch_provider.triggers.batch.OpenAIBatchTrigger",
        "one_task": "airflow_batch_provider.triggers.batch.OpenAIBatchesTrigger",
    }


def test_each_mapped_request_set_made_one_batch_and_its_sensor_got_its_output(
    airflow: AirflowDeployment, emulator: EmulatorControl, scale_run: ScaleRun
) -> None:
    batches = [
        b
        for b in emulator.batches_of(SCALE_DAG, scale_run.run_id)
        if b["metadata"]["airflow_task_id"] == "submit"
    ]
    by_index = {int(batch["metadata"]["airflow_map_index"]): batch for batch in batches}
    assert len(batches) == len(by_index) == MAPPED_BATCHES  # one batch per request set, none twice
    for index, batch in sorted(by_index.items()):
        assert batch["status"] == "completed"
        size = len(REQUEST_SETS[index])
        assert batch["request_counts"] == {"total": size, "completed": size, "failed": 0}
        assert airflow.rest.xcom(SCALE_DAG, scale_run.run_id, "submit", map_index=index) == batch["id"]
        assert (
            airflow.rest.xcom(SCALE_DAG, scale_run.run_id, "wait", map_index=index) == batch["output_file_id"]
        )


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_the_one_task_operator_ran_three_batches_and_joined_their_results(
    airflow: AirflowDeployment, emulator: EmulatorControl, scale_run: ScaleRun
) -> None:
    batches = [
        b
        for b in emulator.batches_of(SCALE_DAG, scale_run.run_id)
        if b["metadata"]["airflow_task_id"] == "one_task"
    ]
    by_part = {batch["metadata"]["airflow_part"]: batch for batch in batches}
    assert sorted(by_part) == [str(part) for part in range(PARTS)]
    assert len(batches) == PARTS
    for batch in batches:
        assert batch["status"] == "completed"
        assert batch["request_counts"] == {"total": PART_SIZE, "completed": PART_SIZE, "failed": 0}

    summary = airflow.rest.xcom(SCALE_DAG, scale_run.run_id, "one_task")
    assert summary["batches"] == {"0": [by_part[str(part)]["id"] for part in range(PARTS)]}
    count = len(ONE_TASK_REQUESTS)
    assert (summary["requests"], summary["succeeded"], summary["failed"]) == (count, count, 0)
    results = _read_jsonl(summary["output_path"])
    assert [result["custom_id"] for result in results] == [
        request["custom_id"] for request in ONE_TASK_REQUESTS
    ]
    for result, request in zip(results, ONE_TASK_REQUESTS, strict=True):
        answer = result["response"]["body"]["choices"][0]["message"]["content"]
        assert request["body"]["messages"][0]["content"] in answer
    assert _read_jsonl(summary["error_path"]) == []


# --- celery_worker_crash: the worker of a submitting task dies ---


LISTING_SECONDS = 20
"""How long the dead try's look for its batch hangs. The test kills the worker a second or so
after the look starts (a later kill fails the test: try 1 would have gone on to parts 1 and 2);
the look is over before the test releases the batches (after the retry, 15 s and more), so the
emulator's restart then need not wait for it to end."""


def test_a_worker_killed_while_its_task_submits_is_retried_on_the_other_and_no_batch_is_made_twice(
    airflow: AirflowDeployment, emulator_held: EmulatorControl
) -> None:
    # Part 0's batch is created but its answer is lost; while the client looks for it among the
    # batches (a listing that takes LISTING_SECONDS), its worker dies with every process it has.
    emulator_held.set_faults(
        [
            {"method": "POST", "path": "/v1/batches", "drop": True, "count": 1},
            {"method": "GET", "path": "/v1/batches", "latency": LISTING_SECONDS, "count": 1},
        ]
    )
    started = time.monotonic()
    run_id = airflow.rest.trigger_run(CRASH_DAG)
    wait_until(
        lambda: all(rule["count"] == 0 for rule in emulator_held.faults()),
        RUN_TIMEOUT,
        "part 0's batch to be created and the client to look for it",
        details=airflow.describe,
    )
    ti = airflow.rest.task_instance(CRASH_DAG, run_id, "one_task")
    assert (ti["state"], ti["try_number"]) == ("running", 1)
    assert ti["hostname"] in WORKERS
    (first,) = emulator_held.batches_of(CRASH_DAG, run_id)  # parts 1 and 2 were never sent
    assert first["metadata"]["airflow_part"] == "0"
    victim = airflow.processes[ti["hostname"]]
    survivor = next(name for name in WORKERS if name != victim.name)

    killed_at = time.time()
    victim.kill(descendants=True)
    try:
        retry = airflow.rest.wait_for_task(
            CRASH_DAG,
            run_id,
            "one_task",
            {"running", "deferred"},
            RUN_TIMEOUT,
            condition=lambda ti: ti["try_number"] == 2,
        )
        retry_running = time.time() - killed_at
        failed_try = airflow.rest.task_try(CRASH_DAG, run_id, "one_task", 1)
        record(
            "worker SIGKILL -> the task's try 1 failed (no heartbeat)",
            epoch(failed_try["end_date"]) - killed_at,
        )
        record("worker SIGKILL -> try 2 running on the other worker", retry_running)
        assert (failed_try["state"], failed_try["hostname"]) == ("failed", victim.name)
        assert retry["hostname"] == survivor
        # Failed by the scheduler for want of a heartbeat: nothing else could report the dead try.
        detected = [
            line
            for line in airflow.processes["scheduler"].log_path.read_text().splitlines()
            if "Detected a task instance without a heartbeat" in line and run_id in line
        ]
        assert len(detected) == 1
        assert f"'Hostname': '{victim.name}'" in detected[0]

        airflow.rest.wait_for_task(
            CRASH_DAG,
            run_id,
            "one_task",
            {"deferred"},
            RUN_TIMEOUT,
            condition=lambda ti: bool(ti["triggerer_job"]),
        )
        emulator_held.release()
        run = airflow.rest.wait_for_run(CRASH_DAG, run_id, timeout=RUN_TIMEOUT)
        record(f"{CRASH_DAG} run, trigger to end (kill and retry included)", time.monotonic() - started)
        assert run["state"] == "success"

        batches = emulator_held.batches_of(CRASH_DAG, run_id)
        by_part = {batch["metadata"]["airflow_part"]: batch for batch in batches}
        assert len(batches) == len(by_part) == PARTS  # one batch per part: none paid twice
        assert by_part["0"]["id"] == first["id"]
        assert {batch["status"] for batch in batches} == {"completed"}
        log = airflow.rest.task_log(CRASH_DAG, run_id, "one_task", try_number=2)
        assert f"Part 0: reattached to batch {first['id']}" in log
        for part in range(1, PARTS):
            assert f"Part {part}: created batch {by_part[str(part)]['id']}" in log
        summary = airflow.rest.xcom(CRASH_DAG, run_id, "one_task")
        assert summary["batches"] == {"0": [by_part[str(part)]["id"] for part in range(PARTS)]}
        assert (summary["succeeded"], summary["failed"]) == (len(ONE_TASK_REQUESTS), 0)
        results = _read_jsonl(summary["output_path"])
        assert [r["custom_id"] for r in results] == [request["custom_id"] for request in ONE_TASK_REQUESTS]
        ti = airflow.rest.task_instance(CRASH_DAG, run_id, "one_task")
        assert (ti["state"], ti["try_number"], ti["hostname"]) == ("success", 2, survivor)
    finally:
        _start_worker(airflow, victim.name)  # the module's deployment has two workers again


def test_the_api_key_is_in_no_log_file_of_any_component(
    airflow: AirflowDeployment, scale_run: ScaleRun
) -> None:
    files = list(airflow.log_files())
    names = {path.name for path in files}
    assert {*(f"{name}.log" for name in (*WORKERS, *TRIGGERERS)), "scheduler.log", "api-server.log"} <= names
    task_logs = [path for path in files if airflow.task_logs in path.parents]
    assert any(".trigger." in path.name for path in task_logs), "no trigger log to read"
    assert any(scale_run.run_id in str(path) for path in task_logs), "no task log of the scale run"
    leaking = [str(path) for path in files if API_KEY in path.read_text(errors="replace")]
    assert not leaking
