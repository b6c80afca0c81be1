"""Embeddings for several document sets: one batch per set, by dynamic task mapping of the operators.

``OpenAIBatchSubmitOperator``, ``OpenAIBatchSensor`` and ``OpenAIBatchResultsOperator`` expand
over the sets: one submit, one deferred wait and one download per set, each downloading the
batch of its own map index (``batch_id=submit.output``). A last task finds the most similar
pair of documents in each set.

Same connection as the other examples (``openai_batch_default``): zero configuration against
the emulator, OpenAI by changing only the connection.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from airflow_batch_provider.operators.batch import OpenAIBatchResultsOperator, OpenAIBatchSubmitOperator
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor

DOCUMENT_SETS = {
    "airflow": {
        "doc-dag": "A DAG is a collection of tasks with dependencies between them.",
        "doc-sensor": "A sensor waits for something to happen before downstream tasks run.",
        "doc-trigger": "A trigger runs in the triggerer and wakes a deferred task up.",
    },
    "batch": {
        "doc-batch": "The Batch API runs many requests asynchronously at a lower price.",
        "doc-window": "A batch completes within its 24 hour completion window.",
    },
    "data": {
        "doc-xcom": "XComs let tasks exchange small pieces of data.",
        "doc-storage": "Object storage keeps large files that tasks read and write.",
        "doc-files": "Large results belong in files, not in XComs.",
    },
}


@dag(
    dag_id="example_openai_batch_embeddings",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "openai", "batch"],
    doc_md=__doc__,
)
def example_openai_batch_embeddings() -> None:
    @task
    def request_sets() -> list[list[dict[str, Any]]]:
        """One list of embedding requests per document set (``method`` and ``url`` are filled in)."""
        return [
            [
                {
                    "custom_id": doc_id,
                    "body": {"model": "text-embedding-3-small", "input": text, "dimensions": 256},
                }
                for doc_id, text in documents.items()
            ]
            for documents in DOCUMENT_SETS.values()
        ]

    submit = OpenAIBatchSubmitOperator.partial(task_id="submit", endpoint="/v1/embeddings").expand(
        requests=request_sets()
    )
    wait = OpenAIBatchSensor.partial(task_id="wait", poll_interval=5).expand(batch_id=submit.output)
    download = OpenAIBatchResultsOperator.partial(task_id="download").expand(batch_id=submit.output)
    wait >> download

    @task
    def most_similar(summary: dict[str, Any]) -> dict[str, Any]:
        """The most similar pair of documents of one set, by the cosine of their embeddings."""
        from airflow_batch_provider.jsonl import read_results

        vectors = {
            result.custom_id: result.response.body["data"][0]["embedding"]
            for result in read_results(summary["output_path"])
            if result.succeeded and result.response is not None
        }

        def cosine(a: list[float], b: list[float]) -> float:
            dot = sum(x * y for x, y in zip(a, b, strict=True))
            return dot / (math.hypot(*a) * math.hypot(*b))

        ids = sorted(vectors)
        pairs = [(cosine(vectors[a], vectors[b]), a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]
        similarity, first, second = max(pairs) if pairs else (0.0, None, None)
        print(f"{first} ~ {second}: {similarity:.4f}")
        return {"a": first, "b": second, "similarity": round(similarity, 4)}

    most_similar.expand(summary=download.output)


example_openai_batch_embeddings()
