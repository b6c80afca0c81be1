"""A real ``airflow api-server`` process on 127.0.0.1, for tests through HTTP and a browser.

It runs on the test session's metadata database and Airflow home (so the DAGs and runs a test
makes are the server's), with the SimpleAuthManager's users and known passwords, on a free port
and optionally below a base path, as behind a reverse proxy. Readiness is polled; the process
group is ended on :meth:`AirflowAPIServer.stop`, which a fixture calls in ``finally``.

    with AirflowAPIServer(users={"admin": "admin"}, env={"AIRFLOW_CONN_X": "..."}) as server:
        token = server.token("admin")
        httpx.get(server.url("api/v2/version"), headers={"Authorization": f"Bearer {token}"})
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx
from typing_extensions import Self

from tests.support.processes import ManagedProcess, free_port, tail, wait_until

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 120.0


class AirflowAPIServer:
    """``airflow api-server`` in a subprocess; use as a context manager.

    :param users: user name -> role (``admin``, ``op``, ``user``, ``viewer``); each user's
        password is its name followed by ``-password``.
    :param base_path: a path prefix for every URL, e.g. ``/airflow`` (default: none).
    :param env: more environment variables for the server (connections, configuration).
    :param auth_manager: the auth manager's import path (default: the SimpleAuthManager).
    """

    def __init__(
        self,
        users: Mapping[str, str],
        base_path: str = "",
        env: Mapping[str, str] | None = None,
        auth_manager: str = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    ) -> None:
        self.users = dict(users)
        self.port = free_port()
        self.base_path = base_path.rstrip("/")
        self.base_url = f"http://127.0.0.1:{self.port}{self.base_path}/"
        self._env = dict(env or {})
        self._auth_manager = auth_manager
        self._scratch = Path(tempfile.mkdtemp(prefix="abp-api-server-"))
        self._process: ManagedProcess | None = None

    @property
    def log_path(self) -> Path:
        return self._scratch / "api-server.log"

    def password(self, user: str) -> str:
        return f"{user}-password"

    def url(self, path: str) -> str:
        """The absolute URL of ``path``, relative to the base URL (``api/v2/version``)."""
        return self.base_url + path.lstrip("/")

    def token(self, user: str) -> str:
        """A JWT for ``user``, from the server's own login endpoint."""
        response = httpx.post(
            self.url("auth/token"), json={"username": user, "password": self.password(user)}, timeout=30
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def start(self) -> Self:
        passwords = self._scratch / "passwords.json"
        passwords.write_text(json.dumps({user: self.password(user) for user in self.users}))
        env = {
            **os.environ,
            # The tests' helpers (e.g. an auth manager) are importable by the server.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "AIRFLOW__CORE__AUTH_MANAGER": self._auth_manager,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in self.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__EXPOSE_CONFIG": "False",
            **self._env,
        }
        command = [
            sys.executable,
            "-m",
            "airflow",
            "api-server",
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
        ]
        self._process = ManagedProcess("api-server", command, env, self._scratch).start()
        try:
            wait_until(self._ready, STARTUP_TIMEOUT, "airflow api-server to be ready", details=self.log_tail)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        if not self._process.alive():
            raise RuntimeError(f"airflow api-server exited {self._process.returncode}:\n{self.log_tail()}")
        try:
            return httpx.get(self.url("api/v2/monitor/health"), timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's output, for a failing test's report."""
        return tail(self.log_path, lines)

    def stop(self) -> None:
        """End the server's process group (SIGTERM, then SIGKILL), and every descendant."""
        process, self._process = self._process, None
        if process is not None:
            process.stop(grace=15)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
