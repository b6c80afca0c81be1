"""Airflow's API server app in this process, for tests through FastAPI's TestClient.

The app is the real one (``airflow.api_fastapi.app.create_app``): its auth manager, its
middlewares, and the plugins it mounts, this provider's among them. Users are the
SimpleAuthManager's; tokens are signed by the app's auth manager, as its login would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

DEFAULT_USERS = "admin:admin,op:op,user:user,viewer:viewer"
"""``name:role`` pairs of the SimpleAuthManager's users (each named after its role)."""


def configure_auth(
    monkeypatch: pytest.MonkeyPatch, home: Path, users: str = DEFAULT_USERS, denied: str = ""
) -> None:
    """Configure the auth manager through the environment: real users, no all-admins shortcut.

    :param home: a directory for the generated passwords file.
    :param users: ``name:role`` pairs (default: one user per role).
    :param denied: ``user:dag_a|dag_b,...``: DAGs each user is denied
        (:class:`tests.support.auth_manager.DagDeniedAuthManager`).
    """
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.support.auth_manager.DagDeniedAuthManager")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", users)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(home / "passwords.json"))
    monkeypatch.setenv("ABP_TEST_DENIED_DAGS", denied)


@contextmanager
def api_test_client() -> Iterator[Any]:
    """A TestClient of a fresh Airflow API app (core API, auth, UI, plugins), in one event loop."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    purge_cached_app()
    app = create_app(apps="core")
    with TestClient(app) as client:
        yield client
    purge_cached_app()


def token_for(username: str, role: str | None = None) -> str:
    """A JWT the app's auth manager accepts for a SimpleAuthManager user (role defaults to the name)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role or username))
