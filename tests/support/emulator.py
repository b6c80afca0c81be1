"""Talking to a running emulator from tests: its API over plain HTTP, faults, batches end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from airflow_batch_provider.emulator.server import EmulatorProcess, EmulatorServer

Emulator = EmulatorServer | EmulatorProcess
"""A running emulator, in this process or in a process of its own."""


def api(server: Emulator, method: str, path: str, **kwargs: Any) -> Any:
    """Call the emulator at ``path`` below its root (``/v1/...``, ``/_emulator/...``); return the JSON."""
    headers = {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}
    root = server.base_url.removesuffix("/v1")
    response = httpx.request(method, f"{root}{path}", headers=headers, timeout=10, **kwargs)
    return response.raise_for_status().json()


def batch_status(server: Emulator, batch_id: str) -> str:
    """The batch's status as the emulator answers it now."""
    return str(api(server, "GET", f"/v1/batches/{batch_id}")["status"])


def batches_of(server: Emulator, dag_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """The emulator's batches (newest 100) an Airflow task made for ``dag_id`` (and ``run_id``)."""
    batches = api(server, "GET", "/v1/batches", params={"limit": 100})["data"]
    return [
        batch
        for batch in batches
        if (batch.get("metadata") or {}).get("airflow_dag_id") == dag_id
        and (run_id is None or batch["metadata"].get("airflow_run_id") == run_id)
    ]


def set_faults(server: Emulator, rules: list[dict[str, Any]]) -> Callable[[], list[dict[str, Any]]]:
    """Inject faults (the emulator needs ``enable_admin``); return a function reading the rules back."""
    api(server, "PUT", "/_emulator/faults", json={"rules": rules})
    return lambda: api(server, "GET", "/_emulator/faults")["rules"]


HOLD_REQUEST_DELAY = 3600.0
"""Seconds each request takes while an :class:`EmulatorControl` holds batches: a test's lifetime."""


class EmulatorControl:
    """The emulator's CLI in a process of its own, whose batches stay in progress until released.

    While held, each request takes an hour, so a batch created then sits ``in_progress`` (0 of N
    done). :meth:`release` restarts the emulator on the same port and state with no request
    delay: every batch in progress resumes and completes within a second or so; :meth:`hold`
    restarts it slow again. Clients see the restart as a short connection error, which they ride
    out. The emulator itself knows nothing of this: it only gets other ``--request-delay`` values.

    :param api_key: the API key the emulator requires.
    """

    FAST = ("--validation-delay", "0.05", "--finalizing-delay", "0.05", "--cancel-delay", "0.05")
    """Every other step at once; ``--enable-admin`` serves ``/_emulator/faults`` (:meth:`set_faults`)."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.held = True
        self.process = EmulatorProcess(*self._args(HOLD_REQUEST_DELAY))

    def _args(self, request_delay: float) -> tuple[str, ...]:
        return (
            "--api-key",
            self.api_key,
            "--enable-admin",
            *self.FAST,
            "--request-delay",
            str(request_delay),
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return self.process.base_url

    @property
    def url(self) -> str:
        """The root, without ``/v1``."""
        return self.process.base_url.removesuffix("/v1")

    def start(self) -> EmulatorControl:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()

    def _restart(self, request_delay: float) -> None:
        self.process.cli_args = self._args(request_delay)
        self.process.restart()

    def release(self) -> None:
        """Let every batch in progress (and every later one) run to its end at once."""
        if self.held:
            self._restart(0.0)
            self.held = False

    def hold(self) -> None:
        """Keep batches created from now on in progress until :meth:`release`."""
        if not self.held:
            self._restart(HOLD_REQUEST_DELAY)
            self.held = True

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the emulator at ``path`` below its root (``/v1/batches``); return the JSON."""
        return api(self.process, method, path, **kwargs)

    def batches_of(self, dag_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
        """The batches (newest 100) an Airflow task made for ``dag_id`` (and ``run_id``)."""
        return batches_of(self.process, dag_id, run_id)

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace the fault rules (:class:`~airflow_batch_provider.emulator.faults.FaultRule` fields)."""
        set_faults(self.process, rules)

    def faults(self) -> list[dict[str, Any]]:
        """The fault rules now, ``count`` being what is left of each."""
        return list(self.api("GET", "/_emulator/faults")["rules"])

    def batch(self, batch_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/v1/batches/{batch_id}"))

    def connection(self) -> str:
        """The ``AIRFLOW_CONN_<ID>`` value (JSON) of a connection to this emulator."""
        return json.dumps({"conn_type": "openai_batch", "host": self.base_url, "password": self.api_key})
