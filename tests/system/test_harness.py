"""The harness itself: what it starts, it ends, with every descendant, port and database."""

from __future__ import annotations

import json
import secrets
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.support.broker import forget_queue, leftovers
from tests.support.databases import PostgresDatabase, postgres_admin_url, redis_url
from tests.support.deployment import AirflowDeployment
from tests.support.processes import ManagedProcess, free_port, port_is_free, wait_until

# A parent listening on a port, a child in its process group, and a grandchild that left the
# group (a session of its own), all sleeping until killed.
_FAMILY = textwrap.dedent(
    """
    import os, socket, subprocess, sys, time
    port = int(sys.argv[1])
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen()
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    subprocess.Popen(sleep)
    subprocess.Popen(sleep, start_new_session=True)
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_stop_ends_the_group_and_descendants_that_left_it_and_frees_the_port(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "family.py"
    script.write_text(_FAMILY)
    process = ManagedProcess("family", [sys.executable, str(script), str(port)], {}, tmp_path).start()
    wait_until(lambda: "ready" in process.log_path.read_text(), 30, "the family to start")
    family = process.descendants()
    assert len(family) == 3
    assert (
        len({member.pid for member in family if member.pid != process.pid and member.ppid() == process.pid})
        == 2
    )
    assert not port_is_free(port)

    process.stop(grace=5)

    assert not [member.pid for member in family if member.is_running()]
    assert port_is_free(port)
    assert not process.alive()


def test_kill_is_a_sigkill_of_the_group(tmp_path: Path) -> None:
    process = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], {}, tmp_path)
    process.start()
    process.kill()
    assert process.returncode == -9
    process.stop()


def test_kill_with_descendants_also_ends_those_that_left_the_group(tmp_path: Path) -> None:
    script = tmp_path / "family.py"
    script.write_text(_FAMILY)
    process = ManagedProcess("family", [sys.executable, str(script), str(free_port())], {}, tmp_path).start()
    wait_until(lambda: "ready" in process.log_path.read_text(), 30, "the family to start")
    family = process.descendants()
    assert len(family) == 3

    process.kill(descendants=True)

    assert process.returncode == -9
    assert not [member.pid for member in family if _alive(member)]
    process.stop()


def test_a_stopped_deployment_leaves_no_process_port_or_database(tmp_path: Path) -> None:
    deployment = AirflowDeployment(tmp_path, dags=[])
    deployment.start(triggerers=1)
    try:
        processes = [p for component in deployment.processes.values() for p in component.descendants()]
        assert {"api-server", "scheduler", "dag-processor", "triggerer-1"} <= set(deployment.processes)
        assert len(deployment.rest.alive_jobs("TriggererJob")) == 1
        assert not port_is_free(deployment.port)
        listening = _listening_ports(processes)
        assert listening == {("127.0.0.1", deployment.port)}, listening  # nothing on 0.0.0.0, no log server
    finally:
        deployment.stop()
    assert not [process.pid for process in processes if _alive(process)]
    assert port_is_free(deployment.port)
    if isinstance(deployment.database, PostgresDatabase):
        psycopg2 = pytest.importorskip("psycopg2")
        with psycopg2.connect(deployment.database.admin_url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (deployment.database.name,))
            assert cursor.fetchone() is None


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _listening_ports(processes: list[psutil.Process]) -> set[tuple[str, int]]:
    found = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def test_a_stopped_celery_deployment_leaves_nothing_of_its_queue_in_the_broker(tmp_path: Path) -> None:
    broker = redis_url()
    if not (broker and postgres_admin_url()):
        pytest.skip("needs ABP_SYSTEM_REDIS_URL and ABP_SYSTEM_POSTGRES_URL")
    redis = pytest.importorskip("redis")
    deployment = AirflowDeployment(tmp_path, executor="CeleryExecutor", broker_url=broker)
    other = f"abp-{secrets.token_hex(4)}"  # another deployment's queue, on the same Redis
    ours_tag, other_tag = f"tag-{secrets.token_hex(4)}", f"tag-{secrets.token_hex(4)}"

    def message(queue: str) -> str:  # as kombu keeps a message taken and not acknowledged
        return json.dumps([{"body": "", "headers": {}, "properties": {}}, "", queue])

    with redis.Redis.from_url(broker) as client:
        client.rpush(deployment.queue, "a waiting message")
        client.sadd(f"_kombu.binding.{deployment.queue}", "a binding")
        client.hset("unacked", mapping={ours_tag: message(deployment.queue), other_tag: message(other)})
        client.zadd("unacked_index", {ours_tag: 1.0, other_tag: 1.0})
    try:
        assert len(leftovers(broker, deployment.queue)) == 3

        deployment.stop()  # never started: nothing to end but what the broker holds

        assert leftovers(broker, deployment.queue) == []
        assert leftovers(broker, other) == [f"unacked:{other_tag}"]
    finally:
        forget_queue(broker, other)
