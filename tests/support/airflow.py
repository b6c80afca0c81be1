"""Airflow internals the tests use, imported from where each supported Airflow version keeps them."""

from __future__ import annotations

from typing import Any

try:  # Airflow 3.2+
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag, sync_bag_to_db  # type: ignore[no-redef]

__all__ = ["DagBag", "register_dags", "sync_bag_to_db"]


def register_dags(*dags: Any) -> None:
    """Serialize ``dags`` into the metadata database (bundle ``dags-folder``), so that the API server
    and ``dag.test()`` know them."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    for dag in dags:
        bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
