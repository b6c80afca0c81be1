"""The "OpenAI Batches" page with 1,000 batches across 3 connections: time to answer, cold and warm.

Sets up a throwaway Airflow home (SQLite) with 10 DAGs, three emulators as subprocesses, each
the Batch API of one ``openai_batch`` connection, and a real ``airflow api-server``. It creates
1,000 batches whose metadata names a task instance of those DAGs (as the operators write it):
334 stay validating on one emulator, the others complete or are cancelled on the other two,
so that nothing churns while the page is timed. Then, over HTTP as a browser would:

- the first request (it also builds the plugin's app);
- cold: the page after its listings expired (``LISTING_MAX_AGE`` plus a margin between
  samples), so every connection is read again, page after page;
- warm: the page again within that time, from the listings kept;
- warm variants: a filtered page, the last page, the fragment a refresh fetches, a task
  instance's tab.

Target: the nav page answers in under 1 s at p95, cold and warm. Prints a markdown table and
exits 1 when the target is missed.

    .venv/bin/python benchmarks/ui_bench.py [--batches 1000] [--cold 7] [--warm 40]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

API_KEY = "sk-ui-bench"
DAGS = [f"bench_dag_{n}" for n in range(10)]
CONNECTIONS = ("bench_validating", "bench_completed", "bench_cancelled")
TARGET_SECONDS = 1.0
RUN_ID = "scheduled__2026-01-01T00:00:00+00:00"


def prepare_airflow_home() -> Path:
    """A throwaway Airflow home, set in this process before Airflow is imported, and migrated."""
    home = Path(tempfile.mkdtemp(prefix="abp-ui-bench-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        }
    )
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return home


def register_dags() -> None:
    from datetime import datetime

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.sdk import DAG

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    for dag_id in DAGS:
        bag.bag_dag(DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)))
    sync_bag_to_db(bag, "dags-folder", None)


async def create_batches(base_url: str, count: int, offset: int, cancel: bool) -> None:
    """``count`` one-request batches on one emulator, each naming a task instance of :data:`DAGS`."""
    line = {
        "custom_id": "r0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        upload = await client.post(
            "/files",
            data={"purpose": "batch"},
            files={"file": ("in.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n"))},
        )
        file_id = upload.raise_for_status().json()["id"]
        limit = asyncio.Semaphore(16)

        async def create(number: int) -> None:
            metadata = {
                "airflow_dag_id": DAGS[number % len(DAGS)],
                "airflow_run_id": RUN_ID,
                "airflow_task_id": f"task_{number % 7}",
                "airflow_map_index": str(number),
            }
            body = {
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": metadata,
            }
            async with limit:
                batch = (await client.post("/batches", json=body)).raise_for_status().json()
                if cancel and number % 2:
                    (await client.post(f"/batches/{batch['id']}/cancel")).raise_for_status()

        await asyncio.gather(*(create(offset + n) for n in range(count)))


def wait_until_settled(base_url: str, expected_unfinished: int, timeout: float = 300.0) -> None:
    """Wait until the emulator has no more than ``expected_unfinished`` unfinished batches."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unfinished, after = 0, None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
            page = httpx.get(f"{base_url}/batches", params=params, headers=headers, timeout=30).json()
            unfinished += sum(b["status"] not in ("completed", "cancelled", "failed") for b in page["data"])
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        if unfinished <= expected_unfinished:
            return
        time.sleep(1)
    raise TimeoutError(f"{base_url}: batches still running after {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api_server(home: Path, connections: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/"
    env = {
        **os.environ,
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        **{f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in connections.items()},
    }
    log = (home / "api-server.log").open("wb")
    command = [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{base_url}api/v2/monitor/health", timeout=2).status_code == 200:
                return server, base_url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.terminate()
    raise RuntimeError(f"airflow api-server did not start; see {home / 'api-server.log'}")


def timed(client: httpx.Client, url: str, params: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    response = client.get(url, params=params)
    took = time.perf_counter() - started
    response.raise_for_status()
    return took, response.text


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def measure(
    base_url: str, token: str, batches: int, cold: int, warm: int
) -> list[tuple[str, list[float], bool]]:
    """(case, seconds per sample, whether the target applies)."""
    from airflow_batch_provider.plugins.listing import LISTING_MAX_AGE
    from airflow_batch_provider.plugins.pages import PAGE_SIZE

    page = f"{base_url}openai-batches/"
    tab = f"{page}task-instance/{DAGS[3]}/task_3/3/{RUN_ID.replace(':', '%3A').replace('+', '%2B')}"
    last_page = str(math.ceil(batches / PAGE_SIZE))
    results: list[tuple[str, list[float], bool]] = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        first, html = timed(client, page)
        shown = re.search(r"([\d,]+) batch", html)
        if shown is None or int(shown.group(1).replace(",", "")) != batches:
            raise AssertionError(f"the page does not show {batches:,} batches: {shown and shown.group(0)}")
        results.append(("first request (builds the app, reads every listing)", [first], False))
        cold_samples = []
        for _ in range(cold):
            time.sleep(LISTING_MAX_AGE + 0.5)  # the listings expire: the next page reads them again
            cold_samples.append(timed(client, page)[0])
        results.append(("nav page, cold (3 connections listed again)", cold_samples, True))
        results.append(("nav page, warm", [timed(client, page)[0] for _ in range(warm)], True))
        filtered = {"status": "completed", "dag_id": DAGS[2]}
        results.append(
            (
                "filtered by status and DAG, warm",
                [timed(client, page, filtered)[0] for _ in range(warm)],
                False,
            )
        )
        results.append(
            (
                f"last page ({last_page}), warm",
                [timed(client, page, {"page": last_page})[0] for _ in range(warm)],
                False,
            )
        )
        results.append(
            (
                "refresh fragment, warm",
                [timed(client, page, {"fragment": "1"})[0] for _ in range(warm)],
                False,
            )
        )
        results.append(("task instance tab, warm", [timed(client, tab)[0] for _ in range(warm)], False))
    return results


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--batches", type=int, default=1000)
    options.add_argument(
        "--cold", type=int, default=7, help="cold samples (each waits for the listings to expire)"
    )
    options.add_argument("--warm", type=int, default=40)
    args = options.parse_args()

    home = prepare_airflow_home()
    register_dags()
    from airflow_batch_provider.emulator.server import EmulatorProcess

    share = args.batches // 3
    counts = [args.batches - 2 * share, share, share]
    emulators = [
        EmulatorProcess("--api-key", API_KEY, "--validation-delay", "3600"),
        EmulatorProcess(
            "--api-key", API_KEY, "--validation-delay", "0", "--request-delay", "0", "--concurrency", "16"
        ),
        EmulatorProcess(
            "--api-key", API_KEY, "--validation-delay", "0.5", "--cancel-delay", "0", "--concurrency", "16"
        ),
    ]
    server = None
    try:
        for emulator in emulators:
            emulator.start()
        offset = 0
        for emulator, count, conn_id in zip(emulators, counts, CONNECTIONS, strict=True):
            asyncio.run(create_batches(emulator.base_url, count, offset, cancel=conn_id == "bench_cancelled"))
            offset += count
        for emulator, expected in zip(emulators, (counts[0], 0, 0), strict=True):
            wait_until_settled(emulator.base_url, expected)
        connections = {
            conn_id: json.dumps({"conn_type": "openai_batch", "host": emulator.base_url, "password": API_KEY})
            for conn_id, emulator in zip(CONNECTIONS, emulators, strict=True)
        }
        server, base_url = start_api_server(home, connections)
        token = httpx.get(f"{base_url}auth/token", timeout=30).json()["access_token"]
        results = measure(base_url, token, args.batches, args.cold, args.warm)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        for emulator in emulators:
            emulator.stop()

    scale = f"{args.batches:,} batches over {len(CONNECTIONS)} connections"
    print(f"\n{scale}; target p95 < {TARGET_SECONDS:.0f} s\n")
    print("| case | samples | p50 ms | p95 ms | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    missed = False
    for case, samples, targeted in results:
        p50, p95 = statistics.median(samples) * 1000, percentile(samples, 0.95) * 1000
        verdict = ""
        if targeted:
            ok = p95 < TARGET_SECONDS * 1000
            missed |= not ok
            verdict = "met" if ok else "MISSED"
        print(f"| {case} | {len(samples)} | {p50:,.0f} | {p95:,.0f} | {verdict} |")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
