"""Airflow internals the tests use, imported from where each supported Airflow version keeps them."""

from __future__ import annotations

try:  # Airflow 3.2+
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag, sync_bag_to_db  # type: ignore[no-redef]

__all__ = ["DagBag", "sync_bag_to_db"]
