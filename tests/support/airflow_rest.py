"""Driving a running Airflow through its public REST API (``/api/v2``), as a user would.

    rest = AirflowREST("http://127.0.0.1:8080/", token)
    run_id = rest.trigger_run("my_dag", conf={"n": 3})
    ti = rest.wait_for_task_state("my_dag", run_id, "wait", {"deferred"}, timeout=60)
    rest.set_task_state("my_dag", run_id, "wait", "failed")
    rest.xcom("my_dag", run_id, "wait")                 # the return value
    rest.extra_links("my_dag", run_id, "submit")        # {"OpenAI Batch": "http://..."}
    rest.task_log("my_dag", run_id, "wait", try_number=1)

Every wait polls with a deadline and fails with the last state it saw.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from tests.support.processes import wait_until

FINISHED_RUN_STATES = frozenset({"success", "failed"})
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def _q(value: str) -> str:
    return quote(value, safe="")


def epoch(timestamp: str) -> float:
    """Seconds since the epoch of a timestamp the REST API answers (``2026-11-26T10:00:00Z``)."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


class AirflowREST:
    """A client of one Airflow API server, authenticated with a JWT.

    :param base_url: the server's root, ending in ``/``.
    :param token: a JWT of a user allowed to do what the test does (``/auth/token``).
    """

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2/<path>``; return the JSON answer; raise on an HTTP error, with its body."""
        response = self.client.request(method, f"api/v2/{path.lstrip('/')}", **kwargs)
        if response.is_error:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json() if response.content else None

    # --- DAGs and runs ---

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the API knows it, or None before the DAG processor has stored it."""
        response = self.client.get(f"api/v2/dags/{_q(dag_id)}")
        return None if response.status_code == 404 else response.raise_for_status().json()

    def wait_for_dags(self, dag_ids: Collection[str], timeout: float = 120.0) -> None:
        """Wait until every DAG of ``dag_ids`` is parsed, stored and not paused."""

        def ready() -> bool:
            return all((dag := self.dag(dag_id)) is not None and not dag["is_paused"] for dag_id in dag_ids)

        wait_until(ready, timeout, f"the DAGs {sorted(dag_ids)} to be parsed")

    def trigger_run(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a manual run now; return its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        return str(self.request("POST", f"dags/{_q(dag_id)}/dagRuns", json=body)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"dags/{_q(dag_id)}/dagRuns/{_q(run_id)}"))

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float, states: Collection[str] = FINISHED_RUN_STATES
    ) -> dict[str, Any]:
        """Wait until the run is in one of ``states`` (default: finished); return it."""
        seen: dict[str, Any] = {}

        def done() -> dict[str, Any] | None:
            seen.update(self.dag_run(dag_id, run_id))
            return dict(seen) if seen["state"] in states else None

        return wait_until(
            done, timeout, f"run {run_id} of {dag_id} to be {sorted(states)}", details=lambda: str(seen)
        )

    # --- task instances ---

    def _ti_path(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        path = f"dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
        return path if map_index < 0 else f"{path}/{map_index}"

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The task instance, with ``state``, ``try_number``, ``pid``, ``trigger`` and ``triggerer_job``."""
        return dict(self.request("GET", self._ti_path(dag_id, run_id, task_id, map_index)))

    def task_try(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> dict[str, Any]:
        """One try of a task instance, as its history keeps it."""
        return dict(self.request("GET", f"{self._ti_path(dag_id, run_id, task_id)}/tries/{try_number}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (mapped ones each on their own)."""
        found = self.request("GET", f"dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances?limit=1000")
        return list(found["task_instances"])

    def wait_for_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Collection[str],
        timeout: float,
        map_index: int = -1,
        condition: Any = None,
    ) -> dict[str, Any]:
        """Wait until the task instance is in one of ``states`` (and ``condition(ti)`` holds); return it."""
        seen: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            seen.clear()
            seen.update(self.task_instance(dag_id, run_id, task_id, map_index))
            if seen["state"] in states and (condition is None or condition(seen)):
                return dict(seen)
            return None

        return wait_until(
            reached,
            timeout,
            f"{dag_id}.{task_id} of {run_id} to be {sorted(states)}",
            details=lambda: f"last seen: state={seen.get('state')} try={seen.get('try_number')}",
        )

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, map_index: int = -1) -> None:
        """Mark the task instance ``success``, ``failed`` or ``skipped``, as from the UI."""
        self.request("PATCH", self._ti_path(dag_id, run_id, task_id, map_index), json={"new_state": state})

    def clear_task(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Clear the task instance (its state goes back to none; a new try follows), as from the UI."""
        body = {"dag_run_id": run_id, "task_ids": [task_id], "dry_run": False, "only_failed": False}
        self.request("POST", f"dags/{_q(dag_id)}/clearTaskInstances", json=body)

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """The XCom value (deserialized), or raise when there is none."""
        path = f"{self._ti_path(dag_id, run_id, task_id)}/xcomEntries/{_q(key)}"
        params = {"map_index": map_index, "deserialize": True, "stringify": False}
        return self.request("GET", path, params=params)["value"]

    def extra_links(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> dict[str, str | None]:
        """The task instance's extra links: name -> URL."""
        path = f"{self._ti_path(dag_id, run_id, task_id)}/links"
        return dict(self.request("GET", path, params={"map_index": map_index})["extra_links"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The whole log of one try (the trigger's lines included), one line per message.

        Each line is the message's ``event`` followed by its other fields as ``key=value``.
        """
        path = f"{self._ti_path(dag_id, run_id, task_id)}/logs/{try_number}"
        found = self.request("GET", path, params={"full_content": True, "map_index": map_index})
        lines = []
        for message in found["content"]:
            if isinstance(message, dict):
                fields = " ".join(f"{k}={v}" for k, v in message.items() if k not in ("event", "timestamp"))
                lines.append(f"{message.get('timestamp', '')} {message.get('event', '')} {fields}".strip())
            else:
                lines.append(str(message))
        return "\n".join(lines)

    def wait_for_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, text: str, timeout: float = 60.0
    ) -> str:
        """Wait until ``text`` shows in the log of one try; return the log."""

        def logged() -> str | None:
            log = self.task_log(dag_id, run_id, task_id, try_number)
            return log if text in log else None

        return wait_until(logged, timeout, f"{text!r} in the log of {dag_id}.{task_id} try {try_number}")

    # --- jobs ---

    def alive_jobs(self, job_type: str) -> list[dict[str, Any]]:
        """The running jobs of a type (``TriggererJob``, ``SchedulerJob``, ``DagProcessorJob``)."""
        found = self.request("GET", "jobs", params={"job_type": job_type, "is_alive": True, "limit": 100})
        return list(found["jobs"])

    def health(self) -> dict[str, Any]:
        return dict(self.request("GET", "monitor/health"))
