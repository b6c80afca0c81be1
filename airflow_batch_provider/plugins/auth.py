"""Who is asking, and what the API server's auth manager lets them do with each DAG's batches.

A batch belongs to the DAG named in its metadata (``airflow_dag_id``): seeing it takes read
access to that DAG's task instances, cancelling it write access to them, and reading its files
or the task's results read access to that DAG's XComs. Only batches of DAGs this Airflow knows
are shown. The auth manager's calls, and the database reads of DAG ids and teams, block: they
run in a worker thread.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

Method = Literal["GET", "PUT"]
Entity = Literal["TASK_INSTANCE", "XCOM"]
Access = tuple[Method, Entity]

SEE: Access = ("GET", "TASK_INSTANCE")
"""See a DAG's task instances: its batches show."""
EDIT: Access = ("PUT", "TASK_INSTANCE")
"""Edit a DAG's task instances: cancel its batches."""
READ_XCOM: Access = ("GET", "XCOM")
"""Read a DAG's XComs: its batches' files and error lines, its tasks' result paths."""

_bearer = HTTPBearer(auto_error=False)


async def _user_from_header_or_cookie(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> BaseUser:
    """Airflow 3.1's ``get_user`` reads only the Authorization header; a page in an iframe sends
    the session cookie. Either token is checked by the auth manager alike."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    if credentials is not None and credentials.scheme.lower() == "bearer":
        return await resolve_user_from_token(credentials.credentials)
    return await resolve_user_from_token(request.cookies.get(COOKIE_NAME_JWT_TOKEN))


def user_dependency() -> Callable[..., Awaitable[BaseUser]]:
    """Airflow's own ``get_user`` where it reads the session cookie too (3.2+), else the 3.1 twin above.

    Either answers 401 without a token, 401 for an expired one, 403 for an invalid one.
    """
    from airflow.api_fastapi.core_api.security import get_user

    return get_user if "request" in inspect.signature(get_user).parameters else _user_from_header_or_cookie


CurrentUser = Annotated[Any, Depends(user_dependency())]
"""The authenticated user (an auth manager's ``BaseUser``); unauthenticated requests are refused."""


def _known_dags(dag_ids: Collection[str]) -> dict[str, str | None]:
    """The DAGs among ``dag_ids`` that this Airflow knows, each with its team (None outside multi-team)."""
    from airflow.configuration import conf
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    if not dag_ids:
        return {}
    with create_session() as session:
        known = list(session.scalars(select(DagModel.dag_id).where(DagModel.dag_id.in_(list(dag_ids)))))
        teams: dict[str, str | None] = {}
        if known and conf.getboolean("core", "multi_team", fallback=False):
            teams = DagModel.get_dag_id_to_team_name_mapping(known, session=session)
    return {dag_id: teams.get(dag_id) for dag_id in known}


def _is_authorized(user: BaseUser, dag_id: str, team: str | None, method: Method, entity: Entity) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return get_auth_manager().is_authorized_dag(
        method=method,
        access_entity=DagAccessEntity[entity],
        details=DagDetails(id=dag_id, team_name=team),
        user=user,
    )


def _permitted(user: BaseUser, dag_ids: Collection[str], asks: Collection[Access]) -> dict[Access, set[str]]:
    known = _known_dags(dag_ids)
    return {
        ask: {dag_id for dag_id, team in known.items() if _is_authorized(user, dag_id, team, *ask)}
        for ask in asks
    }


async def permitted_dags(user: BaseUser, dag_ids: Collection[str], *asks: Access) -> dict[Access, set[str]]:
    """For each access asked, the DAGs among ``dag_ids`` the user has it to.

    DAGs this Airflow does not know are in no set.

    :param user: the authenticated user.
    :param dag_ids: the DAGs to decide about (each asked once, whatever its batches).
    :param asks: :data:`SEE`, :data:`EDIT`, :data:`READ_XCOM`.
    """
    return await run_in_threadpool(_permitted, user, set(dag_ids), asks)


async def require_dag_access(user: BaseUser, dag_id: str, access: Access) -> None:
    """Refuse (403) unless the user has ``access`` to this DAG (:data:`SEE`, :data:`EDIT`, :data:`READ_XCOM`).

    An unknown DAG is refused the same way, so the answer does not tell which DAGs exist.
    """
    if dag_id not in (await permitted_dags(user, [dag_id], access))[access]:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
