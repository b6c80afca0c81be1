"""``make demo``: the chat example DAG, run by real Airflow against the local emulator.

Starts the emulator, migrates a throwaway Airflow home, runs ``airflow dags test
example_openai_batch_chat`` with the connection pointing at the emulator, prints the batch,
its output file and a short summary, then stops the emulator. Needs nothing but the
package's environment: no account, no network.

With ``--ui`` (``make demo-ui``) it then serves Airflow's UI from a local API server, every
user an admin (a throwaway home on 127.0.0.1), prints the address of the "OpenAI Batches" page
and of the task's "Batch" tab, and keeps both running until Ctrl-C.

Run it from a clone (``make demo``) or wherever the package is installed:
``python -m airflow_batch_provider.demo`` (the DAG comes from :func:`example_dags_folder`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_batch_provider import example_dags_folder

DAG_ID = "example_openai_batch_chat"
PRICES = {"gpt-4o-mini": {"input": 0.075, "cached_input": 0.0375, "output": 0.30}}
"""Example prices per million tokens (the connection extra ``prices``), so that the page shows a cost."""
API_SERVER_TIMEOUT = 120.0


def _airflow(args: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    """Run an ``airflow`` CLI command, its output to ``log``; return the exit code and duration."""
    started = time.monotonic()
    with log.open("a") as out:
        code = subprocess.call(
            [sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return code, time.monotonic() - started


def _run_xcoms() -> tuple[str, str, dict[tuple[str, str], Any]]:
    """The id, state and XComs of the DAG's latest run, read from the throwaway metadata database."""
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
        xcoms = {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}
        return str(dag_run.run_id), str(dag_run.state), xcoms


def _show_answers(log: Path, limit: int = 3) -> None:
    lines = [line.rstrip() for line in log.read_text().splitlines() if line.startswith(("Q: ", "A: "))]
    for line in lines[: 2 * limit]:
        print(f"  {line}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_api_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``airflow api-server`` on a free port of 127.0.0.1, every user an admin, and its base URL once
    it answers."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/"
    env = {
        **env,
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__WORKERS": "1",
    }
    with log.open("a") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + API_SERVER_TIMEOUT
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}api/v2/monitor/health", timeout=2):
                return server, base_url
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)  # polling until it answers
    server.terminate()
    raise RuntimeError(f"airflow api-server did not start; see {log}")


def _serve_ui(env: dict[str, str], log: Path, run_id: str) -> None:
    """Serve the UI until Ctrl-C, after printing where the batch pages are."""
    print("  airflow api-server ...", end=" ", flush=True)
    server, base_url = _start_api_server(env, log)
    print("ready\n")
    print(f"OpenAI Batches  {base_url}plugin/openai-batches")
    tab = f"dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/submit/plugin/openai-batch"
    print(f"Batch tab       {base_url}{tab}")
    print("\nServing until Ctrl-C.")
    # A SIGTERM stops the server too, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.wait()
    except KeyboardInterrupt:
        print()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--ui", action="store_true", help="then serve the batch pages until Ctrl-C")
    ui = options.parse_args(argv).ui
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
        connection = {
            "conn_type": "openai_batch",
            "host": emulator.base_url,
            "password": api_key,
            "extra": {"prices": PRICES},
        }
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
        run_id, state, xcoms = _run_xcoms()
        print(f"{state} ({took:.1f} s)")
        if code != 0 or state != "success":
            print("\n".join(log.read_text().splitlines()[-40:]))
            print(f"\nThe DAG run ended {state}; the whole log is {log}")
            return code or 1

        _print_summary(xcoms, log)
        if ui:
            _serve_ui(env, log, run_id)
    return 0


def _print_summary(xcoms: dict[tuple[str, str], Any], log: Path) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
