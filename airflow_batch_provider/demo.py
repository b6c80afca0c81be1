"""``make demo``: the chat example DAG, run by real Airflow against the local emulator.

Starts the emulator, migrates a throwaway Airflow home, runs ``airflow dags test
example_openai_batch_chat`` with the connection pointing at the emulator, prints the batch,
its output file and a short summary, then stops the emulator. Needs nothing but the
package's environment: no account, no network.

Run it from a clone (``make demo``) or wherever the package is installed:
``python -m airflow_batch_provider.demo`` (the DAG comes from :func:`example_dags_folder`).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_batch_provider import example_dags_folder

DAG_ID = "example_openai_batch_chat"


def _airflow(args: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    """Run an ``airflow`` CLI command, its output to ``log``; return the exit code and duration."""
    started = time.monotonic()
    with log.open("a") as out:
        code = subprocess.call(
            [sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return code, time.monotonic() - started


def _run_xcoms() -> tuple[str, dict[tuple[str, str], Any]]:
    """The state and XComs of the DAG's latest run, read from the throwaway metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_run = session.scalars(
            select(DagRun).where(DagRun.dag_id == DAG_ID).order_by(DagRun.id.desc()).limit(1)
        ).one()
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == DAG_ID, XComModel.run_id == dag_run.run_id)
        ).all()
        return str(dag_run.state), {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}


def _show_answers(log: Path, limit: int = 3) -> None:
    lines = [line.rstrip() for line in log.read_text().splitlines() if line.startswith(("Q: ", "A: "))]
    for line in lines[: 2 * limit]:
        print(f"  {line}")


def main() -> int:
    example_dags = example_dags_folder()
    home = Path(tempfile.mkdtemp(prefix="airflow-batch-demo-"))
    log = home / "demo.log"
    # Set in this process before anything imports Airflow (which reads them once): the
    # commands below inherit them, and this process reads the run's XComs afterwards.
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(example_dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        }
    )
    from airflow_batch_provider.emulator.server import EmulatorServer

    api_key = f"sk-demo-{secrets.token_hex(12)}"
    print("OpenAI Batch provider demo: a real Airflow DAG against the local Batch API emulator\n")
    with EmulatorServer(api_key=api_key) as emulator:
        connection = {"conn_type": "openai_batch", "host": emulator.base_url, "password": api_key}
        os.environ["AIRFLOW_CONN_OPENAI_BATCH_DEFAULT"] = json.dumps(connection)
        env = dict(os.environ)
        print(f"  emulator      {emulator.base_url}  (batches page: {emulator.url}/)")
        print(f"  Airflow home  {home}  (throwaway)")
        print(f"  example DAGs  {example_dags}")

        print("  airflow db migrate ...", end=" ", flush=True)
        code, took = _airflow(["db", "migrate"], env, log)
        print(f"{'done' if code == 0 else 'FAILED'} ({took:.1f} s)")
        if code != 0:
            print(f"\nSee {log}")
            return code

        print(f"  airflow dags test {DAG_ID} ...", end=" ", flush=True)
        code, took = _airflow(["dags", "test", DAG_ID], env, log)
        state, xcoms = _run_xcoms()
        print(f"{state} ({took:.1f} s)")
        if code != 0 or state != "success":
            print("\n".join(log.read_text().splitlines()[-40:]))
            print(f"\nThe DAG run ended {state}; the whole log is {log}")
            return code or 1

    batch = xcoms[("wait", "batch")]
    counts = batch["request_counts"]
    summary = xcoms[("download", "return_value")]
    print()
    done = f"{counts['completed']}/{counts['total']} requests completed"
    print(f"Batch        {batch['id']}: {batch['status']}, {done}")
    print(f"Batch page   {xcoms.get(('submit', 'batch_url'))} (served while the emulator runs)")
    print(f"Output file  {batch['output_file_id']} -> {summary['output_path']}")
    print(
        f"Summary      {summary['succeeded']} succeeded, {summary['failed']} failed, "
        f"{summary['total_tokens']} tokens"
    )
    print("First answers:")
    _show_answers(log)
    print(f"\nAirflow's log of the run: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
