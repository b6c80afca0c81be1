"""Metadata databases for system tests: a fresh PostgreSQL database per deployment, or SQLite.

``ABP_SYSTEM_POSTGRES_URL`` names a PostgreSQL server and a database to connect to for
administration (``postgresql://postgres@127.0.0.1:5432/postgres``); each deployment creates a
database of its own there (``abp_system_<random>``) and drops it at the end. Without it the
deployments use SQLite.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

POSTGRES_URL_VARIABLE = "ABP_SYSTEM_POSTGRES_URL"
REDIS_URL_VARIABLE = "ABP_SYSTEM_REDIS_URL"


class MetadataDatabase(Protocol):
    """Where a deployment keeps Airflow's metadata."""

    kind: str

    @property
    def sqlalchemy_url(self) -> str: ...

    def create(self) -> None: ...

    def drop(self) -> None: ...


@dataclass
class SqliteDatabase:
    """A SQLite file (removed with the deployment's directory)."""

    path: Path
    kind: str = "sqlite"

    @property
    def sqlalchemy_url(self) -> str:
        return f"sqlite:///{self.path}"

    def create(self) -> None:
        """Nothing to do: ``airflow db migrate`` creates the file."""

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)


class PostgresDatabase:
    """A new database on the PostgreSQL server of ``admin_url``, dropped by :meth:`drop`.

    :param admin_url: ``postgresql://user[:password]@host:port/dbname`` of an existing database,
        used to create and drop this one.
    """

    kind = "postgres"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"abp_system_{secrets.token_hex(4)}"
        parts = urlsplit(admin_url)
        self._server = parts._replace(scheme="postgresql", path=f"/{self.name}")

    @property
    def sqlalchemy_url(self) -> str:
        return urlunsplit(self._server._replace(scheme="postgresql+psycopg2"))

    @property
    def celery_result_backend(self) -> str:
        """The same database as a Celery result backend (SQLAlchemy through Celery)."""
        return urlunsplit(self._server._replace(scheme="db+postgresql+psycopg2"))

    def _execute(self, statement: str) -> None:
        import psycopg2

        connection = psycopg2.connect(self.admin_url)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def create(self) -> None:
        self._execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        """Drop the database, ending the sessions still connected to it."""
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def postgres_admin_url() -> str | None:
    """The PostgreSQL server the system tests may use (``ABP_SYSTEM_POSTGRES_URL``), if any."""
    return os.environ.get(POSTGRES_URL_VARIABLE) or None


def redis_url() -> str | None:
    """The Redis the Celery tests use as broker (``ABP_SYSTEM_REDIS_URL``), if any."""
    return os.environ.get(REDIS_URL_VARIABLE) or None


def metadata_database(home: Path) -> MetadataDatabase:
    """PostgreSQL when ``ABP_SYSTEM_POSTGRES_URL`` is set, else a SQLite file in ``home``."""
    admin_url = postgres_admin_url()
    return PostgresDatabase(admin_url) if admin_url else SqliteDatabase(home / "airflow.db")
