"""A real Airflow deployment as child processes, for the system tests.

An :class:`AirflowDeployment` has a fresh ``AIRFLOW_HOME`` under a directory of the test's, its
own metadata database (a new PostgreSQL database when ``ABP_SYSTEM_POSTGRES_URL`` is set, else
SQLite), and runs Airflow's components as separate processes, each in a process group of its
own with its output in ``<root>/logs/<name>.log``:

* ``api-server`` (core API, UI and the execution API) on a free port of 127.0.0.1,
* ``scheduler`` (with the executor's workers: LocalExecutor by default),
* ``dag-processor``,
* ``triggerer-1``, ``triggerer-2``, ... (``--skip-serve-logs``, as the scheduler),
* with ``executor="CeleryExecutor"``: ``worker-1``, ``worker-2``, ... (``airflow celery worker``
  on a queue of this deployment's own, so deployments sharing a Redis never take each other's
  tasks; broker ``broker_url``, result backend the deployment's PostgreSQL database).

Nothing listens on anything but 127.0.0.1: the log servers are off (``--skip-serve-logs``) and
every component reads task logs from the shared ``AIRFLOW_HOME``. Readiness is polled with
deadlines: the REST API answering, the scheduler and DAG processor healthy, each triggerer's job
heartbeating, each Celery worker ready. :meth:`AirflowDeployment.stop` ends every process group
it started (and any descendant that left it), drops the database, removes the queue from the
broker (:mod:`tests.support.broker`), and runs from the fixture's
``finally`` (an atexit hook is the fallback).

Use::

    with AirflowDeployment(tmp_path, dags=[DAGS / "system_dags.py"], env=connection_env) as airflow:
        airflow.rest.wait_for_dags(["system_sensor"])
        run_id = airflow.rest.trigger_run("system_sensor")
        ti = airflow.rest.wait_for_task("system_sensor", run_id, "wait", {"deferred"}, timeout=60)
        triggerer = airflow.triggerer_holding(ti)      # the ManagedProcess that runs its trigger
        triggerer.kill()                               # SIGKILL
        airflow.start_triggerer()                      # a new one, "triggerer-2"
        airflow.rest.wait_for_run("system_sensor", run_id, timeout=120)

Settings that make a test faster than Airflow's defaults (all overridable through ``config``):
a triggerer heartbeats every :data:`TRIGGERER_HEARTBEAT` s and counts as dead after
:data:`TRIGGERER_HEALTH_THRESHOLD` s without one (Airflow: 5 and 30), and the DAG processor
looks for new files every 5 s.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from typing_extensions import Self

from tests.support.airflow_rest import AirflowREST
from tests.support.broker import forget_queue
from tests.support.databases import (
    MetadataDatabase,
    PostgresDatabase,
    metadata_database,
    postgres_admin_url,
)
from tests.support.processes import ManagedProcess, free_port, tail, wait_until

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 180.0
"""Seconds a component may take to become ready (two cores, several Airflow processes starting)."""
TRIGGERER_HEARTBEAT = 2.0
TRIGGERER_HEALTH_THRESHOLD = 10  # an int: Airflow 3.1 reads it with getint
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-password"


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _inherited_environment() -> dict[str, str]:
    """This process's environment without any Airflow setting (the test session's own home)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW"))
        and key not in {"AIRFLOW_HOME", "PYTEST_CURRENT_TEST"}
    }


class AirflowDeployment:
    """Airflow's components as processes on one machine (see the module's docstring).

    :param root: an empty directory of the test's: ``home/`` (AIRFLOW_HOME, with ``dags/``,
        ``logs/``), ``logs/`` (one file per process).
    :param dags: DAG files copied into the DAGs folder.
    :param env: more environment for every component (``AIRFLOW_CONN_...``).
    :param executor: ``LocalExecutor`` or ``CeleryExecutor``.
    :param broker_url: the Celery broker (Redis), for ``CeleryExecutor``.
    :param config: ``"section.key": value`` Airflow settings, over this harness's defaults.
    :param database: the metadata database (default: :func:`metadata_database`).
    :param name_hosts: report each component's name as its hostname (``worker-2``), so that a
        task instance's ``hostname`` and a job's say which process ran it
        (:func:`tests.support.hostname.process_hostname`).
    """

    def __init__(
        self,
        root: Path,
        dags: Iterable[Path] = (),
        env: Mapping[str, str] | None = None,
        executor: str = "LocalExecutor",
        broker_url: str | None = None,
        config: Mapping[str, Any] | None = None,
        database: MetadataDatabase | None = None,
        name_hosts: bool = False,
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.dags_folder = self.home / "dags"
        self.task_logs = self.home / "logs"
        self.process_logs = root / "logs"
        for directory in (self.dags_folder, self.task_logs, self.process_logs):
            directory.mkdir(parents=True, exist_ok=True)
        for dag in dags:
            shutil.copy(dag, self.dags_folder / dag.name)
        self.executor = executor
        self.broker_url = broker_url
        if executor == "CeleryExecutor" and (
            broker_url is None or (database is None and postgres_admin_url() is None)
        ):
            raise ValueError("CeleryExecutor needs a broker URL and PostgreSQL (the result backend)")
        self.database = database or metadata_database(self.home)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/"
        self.queue = f"abp-{secrets.token_hex(4)}"
        self.processes: dict[str, ManagedProcess] = {}
        """Every component started, by name (``scheduler``, ``triggerer-1``, ``worker-2``...)."""
        self.triggerer_jobs: dict[str, int] = {}
        """The job id of each running triggerer process, by name."""
        self._env = self._environment(env or {}, broker_url, config or {}, name_hosts)
        self._rest: AirflowREST | None = None
        self._database_created = False

    # --- configuration ---

    def _environment(
        self, extra: Mapping[str, str], broker_url: str | None, config: Mapping[str, Any], name_hosts: bool
    ) -> dict[str, str]:
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD}))
        settings: dict[str, Any] = {
            "core.executor": self.executor,
            "core.dags_folder": self.dags_folder,
            "core.load_examples": False,
            "core.dags_are_paused_at_creation": False,
            "core.fernet_key": _fernet_key(),
            "core.execution_api_server_url": f"{self.base_url}execution/",
            "core.auth_manager": SIMPLE_AUTH_MANAGER,
            "core.simple_auth_manager_users": f"{ADMIN_USER}:admin",
            "core.simple_auth_manager_passwords_file": passwords,
            "core.simple_auth_manager_all_admins": False,
            "database.sql_alchemy_conn": self.database.sqlalchemy_url,
            "api.base_url": self.base_url,
            "api.host": "127.0.0.1",
            "api.port": self.port,
            "api.workers": 1,
            "api.secret_key": secrets.token_hex(16),
            "api_auth.jwt_secret": secrets.token_hex(32),
            "logging.base_log_folder": self.task_logs,
            # Unused (--skip-serve-logs everywhere), but never the well-known ports if one starts.
            "logging.worker_log_server_port": free_port(),
            "logging.trigger_log_server_port": free_port(),
            "dag_processor.refresh_interval": 5,
            "triggerer.job_heartbeat_sec": TRIGGERER_HEARTBEAT,
            "triggerer.triggerer_health_check_threshold": TRIGGERER_HEALTH_THRESHOLD,
            "scheduler.enable_health_check": False,  # its health server would listen on 8974
            "operators.default_queue": self.queue,
        }
        if self.executor == "CeleryExecutor":
            assert isinstance(self.database, PostgresDatabase)
            settings |= {
                "celery.broker_url": broker_url,
                "celery.result_backend": self.database.celery_result_backend,
                "celery.worker_concurrency": 4,
            }
        if name_hosts:
            settings["core.hostname_callable"] = "tests.support.hostname.process_hostname"
        settings |= dict(config)
        env = _inherited_environment() | {
            "AIRFLOW_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        for key, value in settings.items():
            section, option = key.split(".")
            env[f"AIRFLOW__{section.upper()}__{option.upper()}"] = str(value)
        return env | dict(extra)

    @property
    def env(self) -> dict[str, str]:
        """The environment every component gets (a copy)."""
        return dict(self._env)

    # --- lifecycle ---

    def start(self, triggerers: int = 1, workers: int = 0) -> Self:
        """Create the database, migrate it, start every component and wait until each is ready."""
        try:
            self.database.create()
            self._database_created = True
            self._airflow("db", "migrate", timeout=300)
            self._start_api_server()
            self.start_process("scheduler", "scheduler", "--skip-serve-logs")
            self.start_process("dag-processor", "dag-processor")
            for _ in range(triggerers):
                self.start_triggerer()
            for _ in range(workers):
                self.start_worker()
            self.wait_healthy("scheduler", "dag_processor")
        except BaseException:
            self.stop()
            raise
        return self

    def _airflow(self, *args: str, timeout: float) -> None:
        """Run an ``airflow`` command to its end; its output goes to ``logs/airflow-<args>.log``."""
        log = self.process_logs / f"airflow-{'-'.join(args)}.log"
        process = ManagedProcess(
            log.stem, [sys.executable, "-m", "airflow", *args], self._env, self.process_logs
        )
        process.start()
        try:
            wait_until(lambda: not process.alive(), timeout, f"`airflow {' '.join(args)}`")
        finally:
            process.stop()
        if process.returncode != 0:
            raise RuntimeError(f"`airflow {' '.join(args)}` exited {process.returncode}:\n{tail(log)}")

    def start_process(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> ManagedProcess:
        """Start ``airflow <args>`` as the component ``name`` (``env``: more environment for it)."""
        if name in self.processes:
            if self.processes[name].alive():
                raise RuntimeError(f"{name} is already running")
            self.processes[name].stop()  # reap it and anything it left behind
        process_env = self._env | {"ABP_PROCESS_NAME": name} | dict(env or {})
        process = ManagedProcess(
            name, [sys.executable, "-m", "airflow", *args], process_env, self.process_logs
        )
        self.processes[name] = process.start()
        return process

    def _start_api_server(self) -> None:
        process = self.start_process(
            "api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port)
        )

        def answers() -> bool:
            if not process.alive():
                raise RuntimeError(f"the API server exited:\n{tail(process.log_path)}")
            try:
                return httpx.get(f"{self.base_url}api/v2/monitor/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, STARTUP_TIMEOUT, "the API server", details=lambda: tail(process.log_path))

    def _next_name(self, prefix: str) -> str:
        number = 1
        while f"{prefix}-{number}" in self.processes:
            number += 1
        return f"{prefix}-{number}"

    def start_triggerer(
        self, name: str | None = None, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        """Start a triggerer (``triggerer-N`` unless named) and wait for its job to heartbeat.

        A name already used restarts that triggerer (a new process and a new job).
        """
        name = name or self._next_name("triggerer")
        known = {job["id"] for job in self.rest.alive_jobs("TriggererJob")}
        process = self.start_process(name, "triggerer", "--skip-serve-logs", env=env)

        def new_job() -> int | None:
            if not process.alive():
                raise RuntimeError(f"{name} exited:\n{tail(process.log_path)}")
            fresh = [job["id"] for job in self.rest.alive_jobs("TriggererJob") if job["id"] not in known]
            return fresh[0] if fresh else None

        self.triggerer_jobs[name] = wait_until(
            new_job, STARTUP_TIMEOUT, f"{name}'s job", details=lambda: tail(process.log_path)
        )
        return process

    def running_triggerers(self) -> list[ManagedProcess]:
        """The triggerer processes running now, oldest first."""
        return [p for name, p in self.processes.items() if name in self.triggerer_jobs and p.alive()]

    def ensure_triggerers(self, count: int) -> list[ManagedProcess]:
        """Start triggerers until ``count`` run (none is stopped); return the running ones."""
        while len(self.running_triggerers()) < count:
            self.start_triggerer()
        return self.running_triggerers()

    def start_worker(
        self, name: str | None = None, concurrency: int = 4, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        """Start a Celery worker on this deployment's queue (``worker-N`` unless named); wait until ready."""
        if self.executor != "CeleryExecutor":
            raise RuntimeError("Celery workers need executor='CeleryExecutor'")
        name = name or self._next_name("worker")
        process = self.start_process(
            name,
            *("celery", "worker", "--skip-serve-logs", "--without-gossip", "--without-mingle"),
            *("--queues", self.queue, "--concurrency", str(concurrency), "--celery-hostname", f"{name}@%h"),
            env=env,
        )

        def ready() -> bool:
            if not process.alive():
                raise RuntimeError(f"{name} exited:\n{tail(process.log_path)}")
            return f"{name}@" in (text := process.log_path.read_text(errors="replace")) and " ready." in text

        wait_until(ready, STARTUP_TIMEOUT, f"Celery worker {name}", details=lambda: tail(process.log_path))
        return process

    def wait_healthy(self, *components: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until ``/api/v2/monitor/health`` calls each of ``components`` healthy."""

        def healthy() -> bool:
            self.check_running()
            health = self.rest.health()
            return all((health.get(c) or {}).get("status") == "healthy" for c in components)

        wait_until(healthy, timeout, f"{components} to be healthy", details=self.describe)

    def check_running(self) -> None:
        """Raise when a component exited that no test stopped (a crash at start-up, say)."""
        for name, process in self.processes.items():
            if process.returncode is not None and not process.stopped_on_purpose:
                raise RuntimeError(f"{name} exited {process.returncode}:\n{tail(process.log_path)}")

    @property
    def rest(self) -> AirflowREST:
        """A REST client logged in as the admin (a JWT from ``/auth/token``)."""
        if self._rest is None:
            response = httpx.post(
                f"{self.base_url}auth/token",
                json={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
                timeout=30,
            )
            response.raise_for_status()
            self._rest = AirflowREST(self.base_url, str(response.json()["access_token"]))
        return self._rest

    def token(self) -> str:
        """A fresh JWT of the admin user (for a browser's ``_token`` cookie)."""
        response = httpx.post(
            f"{self.base_url}auth/token",
            json={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
            timeout=30,
        )
        return str(response.raise_for_status().json()["access_token"])

    def stop(self) -> None:
        """End every process started (SIGTERM, then SIGKILL), and drop the database. Idempotent."""
        if self._rest is not None:
            self._rest.close()
            self._rest = None
        errors: list[str] = []
        # Workers and triggerers first, the API server they report to last.
        for name in sorted(self.processes, key=lambda n: n == "api-server"):
            try:
                self.processes[name].stop()
            except Exception as error:  # keep stopping the others
                errors.append(f"{name}: {error}")
        if self._database_created:
            self._database_created = False
            self.database.drop()
        if self.executor == "CeleryExecutor" and self.broker_url is not None:
            forget_queue(self.broker_url, self.queue)  # and the messages of workers killed mid-task
        if errors:
            raise RuntimeError("; ".join(errors))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- looking inside ---

    def triggerer_holding(self, task_instance: Mapping[str, Any]) -> ManagedProcess | None:
        """The triggerer process whose job runs the deferred task instance's trigger, if any."""
        job = task_instance.get("triggerer_job") or {}
        for name, job_id in self.triggerer_jobs.items():
            if job.get("id") == job_id and self.processes[name].alive():
                return self.processes[name]
        return None

    def wait_for_executor_event(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        try_number: int,
        map_index: int = -1,
        timeout: float = 60.0,
    ) -> None:
        """Wait until the scheduler has taken in the executor's report of a task's last exit.

        A deferred task's process exits at once, but the executor reports that exit to the
        scheduler seconds later (about 5 s here). If the trigger fires before, the scheduler
        takes the late report of the deferral for the end of the resumed task and fails it
        ("finished with state success, but the task instance's state attribute is queued"):
        Airflow's race (apache/airflow#66374, #72716), not this provider's. Tests that end a
        batch right after the sensor deferred wait for this first, as a user's batch, which
        takes minutes, does.
        """
        key = (
            f"TaskInstanceKey(dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}', "
            f"try_number={try_number}, map_index={map_index})"
        )
        log = self.processes["scheduler"].log_path

        def reported() -> bool:
            lines = log.read_text(errors="replace").splitlines()
            return any("Received executor event" in line and key in line for line in lines)

        wait_until(reported, timeout, f"the executor's report of {key}")

    def log_files(self) -> Iterator[Path]:
        """Every log file of the deployment: each component's output and every task's log."""
        for directory in (self.process_logs, self.task_logs):
            yield from (path for path in directory.rglob("*") if path.is_file())

    def describe(self) -> str:
        """Which components run, and the end of each one's log: for a failing test's report."""
        parts = []
        for name, process in self.processes.items():
            parts.append(
                f"--- {name} ({'running' if process.alive() else 'stopped'}):\n{tail(process.log_path, 15)}"
            )
        return "\n".join(parts)
