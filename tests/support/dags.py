"""Registering DAG objects in the metadata database, as the DAG processor would."""

from __future__ import annotations

from typing import Any


def register_dags(*dags: Any) -> None:
    """Serialize ``dags`` into the metadata database (bundle ``dags-folder``), so that the API server
    and ``dag.test()`` know them."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    for dag in dags:
        bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
