"""An auth manager for tests: Airflow's SimpleAuthManager, less some DAGs for some users.

``AIRFLOW__CORE__AUTH_MANAGER=tests.support.auth_manager.DagDeniedAuthManager`` and
``ABP_TEST_DENIED_DAGS=user:dag_a|dag_b,other:dag_c`` deny those users every access to those DAGs;
everything else is decided by the SimpleAuthManager (viewer reads, user and above edit).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

DENIED_DAGS_VARIABLE = "ABP_TEST_DENIED_DAGS"


def denied_dags() -> dict[str, set[str]]:
    """The DAGs each user is denied, from :data:`DENIED_DAGS_VARIABLE`."""
    denied: dict[str, set[str]] = {}
    for entry in filter(None, os.environ.get(DENIED_DAGS_VARIABLE, "").split(",")):
        user, _, dags = entry.partition(":")
        denied.setdefault(user, set()).update(filter(None, dags.split("|")))
    return denied


class DagDeniedAuthManager(SimpleAuthManager):
    """SimpleAuthManager, with DAGs denied per user (see the module's docstring)."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        dag_id = details.id if details is not None else None
        if dag_id is not None and dag_id in denied_dags().get(user.username, set()):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
