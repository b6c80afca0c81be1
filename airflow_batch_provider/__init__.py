"""Apache Airflow provider for the OpenAI Batch API and OpenAI-compatible Batch APIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_batch_provider.version import __version__

__all__ = ["__version__", "example_dags_folder", "get_provider_info"]


def example_dags_folder() -> Path:
    """The folder of the example DAGs, to point ``[core] dags_folder`` or a DAG bundle at.

    An installed wheel carries them inside the package (``airflow_batch_provider/example_dags/``,
    where Airflow's ``load_examples`` also finds them); in a clone, or an editable install of
    one, they are the repository's top-level ``example_dags/``.
    """
    package = Path(__file__).resolve().parent
    for folder in (package / "example_dags", package.parent / "example_dags"):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"No example DAGs in {package} nor beside it: reinstall airflow-batch-provider")


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow (entry point ``apache_airflow_provider``)."""
    from airflow_batch_provider.hooks.connection import connection_type_info

    return {
        "package-name": "airflow-batch-provider",
        "name": "OpenAI Batch",
        "description": "Run OpenAI (and OpenAI-compatible) Batch API jobs from Airflow.",
        "versions": [__version__],
        "hook-class-names": ["airflow_batch_provider.hooks.batch.OpenAIBatchHook"],
        # hook-name, conn-fields and ui-field-behaviour: the connection form, read by Airflow >= 3.2
        # without importing the hook.
        "connection-types": [connection_type_info("airflow_batch_provider.hooks.batch.OpenAIBatchHook")],
        "hooks": [
            {
                "integration-name": "OpenAI Batch",
                "python-modules": ["airflow_batch_provider.hooks.batch"],
            }
        ],
        "triggers": [
            {
                "integration-name": "OpenAI Batch",
                "python-modules": ["airflow_batch_provider.triggers.batch"],
            }
        ],
        "operators": [
            {
                "integration-name": "OpenAI Batch",
                "python-modules": ["airflow_batch_provider.operators.batch"],
            }
        ],
        "sensors": [
            {
                "integration-name": "OpenAI Batch",
                "python-modules": ["airflow_batch_provider.sensors.batch"],
            }
        ],
        "extra-links": ["airflow_batch_provider.links.OpenAIBatchLink"],
        # The "OpenAI Batches" page and the "Batch" tab of task instances (Airflow >= 3.1).
        "plugins": [{"name": "openai_batch", "plugin-class": f"{__name__}.plugins.plugin.OpenAIBatchPlugin"}],
        "config": {
            "openai_batch": {
                "description": "The OpenAI Batch provider's pages in the Airflow UI.",
                "options": {
                    "ui_conn_ids": {
                        "description": (
                            "Connections whose batches the 'OpenAI Batches' page shows, beside every "
                            "connection of type openai_batch in the metadata database and in AIRFLOW_CONN_ "
                            "variables: name here those kept in another secrets backend, which cannot "
                            "be listed. Comma-separated."
                        ),
                        "version_added": None,
                        "type": "string",
                        "example": "openai_batch_prod,azure_batch",
                        "default": "",
                    }
                },
            }
        },
        "task-decorators": [
            {
                "name": "openai_batch",
                "class-name": "airflow_batch_provider.decorators.openai_batch.openai_batch_task",
            }
        ],
    }
