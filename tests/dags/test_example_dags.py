"""The example DAGs run end to end against the emulator, configured only by the connection."""

from __future__ import annotations

import pytest

from airflow_batch_provider import example_dags_folder, jsonl


@pytest.fixture(scope="module")
def examples():
    from tests.support.airflow import DagBag

    bag = DagBag(dag_folder=example_dags_folder(), collect_dags=True)
    assert not bag.import_errors
    return bag


def test_chat_example(run_dag, examples, emulator, emulator_conn, assert_no_secret) -> None:
    emulator_conn(emulator)
    result = run_dag(examples.get_dag("example_openai_batch_chat"))

    assert result.state == "success", result.states
    batch_id = result.xcom("submit")
    page = f"{emulator.url}/batches/{batch_id}"
    assert result.xcom("submit", "batch_url") == page
    assert result.xcom("submit", "_link_OpenAIBatchLink") == page  # the "OpenAI Batch" button
    output_file_id = result.xcom("wait")
    assert result.xcom("wait", "batch")["id"] == batch_id
    assert result.xcom("wait", "request_counts") == {"total": 6, "completed": 6, "failed": 0}
    summary = result.xcom("download")
    assert summary["output_file_id"] == output_file_id
    assert summary["succeeded"] == 6
    assert len(list(jsonl.read_results(summary["output_path"]))) == 6
    assert result.xcom("summarize")["answered"] == 6
    assert "Q: What is the capital of France?" in result.output
    assert_no_secret(result, emulator)


def test_embeddings_example(run_dag, examples, emulator, emulator_conn, assert_no_secret) -> None:
    emulator_conn(emulator)
    result = run_dag(examples.get_dag("example_openai_batch_embeddings"))

    assert result.state == "success", result.states
    assert [summary["succeeded"] for summary in result.xcoms_by_map_index("download")] == [3, 2, 3]
    assert len(set(result.xcoms_by_map_index("submit"))) == 3  # one batch per document set
    pairs = result.xcoms_by_map_index("most_similar")
    assert [pair["a"] is not None for pair in pairs] == [True, True, True]
    assert all(-1 <= pair["similarity"] <= 1 for pair in pairs)
    assert_no_secret(result, emulator)


def test_reviews_example(run_dag, examples, emulator, emulator_conn, assert_no_secret) -> None:
    emulator_conn(emulator)
    result = run_dag(examples.get_dag("example_openai_batch_reviews"))

    assert result.state == "success", result.states
    summary = result.xcom("classify")
    assert (summary["succeeded"], summary["failed"]) == (6, 0)  # every answer validated as ReviewLabel
    assert set(summary["batches"]) == {"0", "1"}  # the two flaky reviews needed a retry round
    assert sum(result.xcom("report").values()) == 6
    assert "6 labelled, 0 failed." in result.output
    assert_no_secret(result, emulator)
