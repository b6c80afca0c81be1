"""Child processes the system tests own: started in their own process group, logged to a file,
signalled, restarted, and always ended (also at interpreter exit), with every descendant.

    process = ManagedProcess("scheduler", [sys.executable, "-m", "airflow", "scheduler"], env, log_dir)
    process.start()
    process.kill()          # SIGKILL to the whole process group: a crash
    process.restart()       # a new process, same command, same log file (appended)
    process.stop()          # SIGTERM to the group, SIGKILL after a grace period, then every descendant

Waiting is by polling with a deadline (:func:`wait_until`), never by sleeping for an outcome.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")

POLL_INTERVAL = 0.2
"""Seconds between two looks of :func:`wait_until`: how often, not how long."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listening socket could be bound to ``host:port`` now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
    details: Callable[[], str] | None = None,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    :param what: what is awaited, for the error (``"the scheduler to be healthy"``).
    :param details: called on timeout for more text (a log's tail).
    :raises TimeoutError: not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' when it is missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class ManagedProcess:
    """One long-running child, in a process group of its own, its output in ``log_path``.

    :param name: unique within its owner (``"triggerer-1"``); names the log file.
    :param command: the argv.
    :param env: the whole environment of the child.
    :param log_dir: where ``<name>.log`` goes.
    """

    def __init__(self, name: str, command: Sequence[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        """``time.time()`` when the current process was started."""
        self._known: dict[int, psutil.Process] = {}
        self.stopped_on_purpose = False
        """Whether the current process was signalled through this object (not a crash)."""
        self.signalled_at: float | None = None
        """``time.monotonic()`` when the current process was last signalled through this object."""

    @property
    def pid(self) -> int:
        """The pid of the current process (also its process group id)."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status of the process started last (None while it runs)."""
        return None if self._popen is None else self._popen.poll()

    def alive(self) -> bool:
        """Whether the process started last is still running."""
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> ManagedProcess:
        """Start the command in a new session (its own process group); output appends to the log."""
        if self.alive():
            raise RuntimeError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            log.write(f"--- started: {' '.join(self.command)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.time()
        self.stopped_on_purpose = False
        self.signalled_at = None
        _REGISTRY.add(self)
        return self

    def descendants(self) -> list[psutil.Process]:
        """The process and every live descendant of it now; each is remembered for :meth:`stop`."""
        if self._popen is None:
            return []
        try:
            root = psutil.Process(self._popen.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            found = []
        for process in found:
            self._known.setdefault(process.pid, process)
        return found

    def _group_is_ours(self) -> bool:
        """Whether the process group still holds a process of ours, so its id is still ours.

        Once the leader is reaped its pid may be reused, but Linux never hands out a pid that a
        live process still uses as its group id: while one of our processes is in the group,
        signalling the group reaches nobody else's.
        """
        if self._popen is None:
            return False
        if self._popen.poll() is None:
            return True
        for process in self._known.values():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if process.is_running() and os.getpgid(process.pid) == self._popen.pid:
                    return True
        return False

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole process group (every child that stayed in it too)."""
        self.descendants()
        self.stopped_on_purpose = True
        self.signalled_at = time.monotonic()
        if self._group_is_ours():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def kill(self, descendants: bool = False) -> None:
        """SIGKILL the process group, as a crash or an OOM kill would; wait until it is reaped.

        :param descendants: also SIGKILL every descendant that left the group, as the crash of
            the machine would (Airflow's task runner, for one, runs in a process group of its own,
            so a worker's group dies without it).
        """
        family = [process for process in self.descendants() if process.pid != self.pid]
        self.signal(signal.SIGKILL)
        if descendants:
            for process in family:
                with contextlib.suppress(psutil.Error):  # psutil checks the create time: never a recycled pid
                    process.kill()
            psutil.wait_procs(family, timeout=30)
        if self._popen is not None:
            self._popen.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group (a graceful stop) and wait for the process to exit."""
        self.signal(signal.SIGTERM)
        if self._popen is not None:
            self._popen.wait(timeout=timeout)

    def restart(self) -> ManagedProcess:
        """Stop the current process (if it runs) and start the same command again."""
        self.stop()
        return self.start()

    def stop(self, grace: float = 10.0) -> None:
        """End the process and every descendant ever seen: SIGTERM, then SIGKILL after ``grace`` s.

        Descendants that left the process group (a daemon, a task in a session of its own) are
        found through the process tree and killed too. Idempotent.
        """
        if self._popen is not None and self._popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self._popen.wait(timeout=30)
        if self._group_is_ours():  # stragglers left in the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        for process in list(self._known.values()):
            with contextlib.suppress(psutil.Error):
                if process.is_running():  # psutil checks the create time: never a recycled pid
                    process.kill()
        _, alive = psutil.wait_procs(list(self._known.values()), timeout=10)
        if alive:
            raise RuntimeError(f"{self.name}: processes survived SIGKILL: {[p.pid for p in alive]}")
        self._known.clear()
        _REGISTRY.discard(self)

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"ManagedProcess({self.name!r}, pid={self._popen.pid if self._popen else None}, {state})"


class _Registry:
    """Every process started and not yet stopped, ended at interpreter exit whatever happened."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: set[ManagedProcess] = set()
        atexit.register(self.stop_all)

    def add(self, process: ManagedProcess) -> None:
        with self._lock:
            self._processes.add(process)

    def discard(self, process: ManagedProcess) -> None:
        with self._lock:
            self._processes.discard(process)

    def stop_all(self) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop(grace=2.0)


_REGISTRY = _Registry()
