"""Run the emulator: in a thread of this process, or as a subprocess of the CLI.

Both bind their socket before serving, so with ``port=0`` the real port is known at once,
and both wait for the application's startup to finish (no fixed sleeps).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from typing_extensions import Self

from airflow_batch_provider.emulator.app import create_app
from airflow_batch_provider.emulator.serving import uvicorn_config
from airflow_batch_provider.emulator.settings import EmulatorSettings

READY_MESSAGE = "Serving the OpenAI Batch API emulator at {base_url}"
"""What the CLI prints (and flushes) once it answers requests."""
_READY_PATTERN = re.compile(r"Serving the OpenAI Batch API emulator at (?P<url>\S+)")
STARTUP_TIMEOUT = 30.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), reusable after a restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT/v1`` for a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


class ReadyServer(uvicorn.Server):
    """A uvicorn server that calls ``on_ready`` once its application has started."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


class _Running:
    """A context manager of ``start()`` / ``stop()``, shown by the base URL it serves."""

    base_url: str

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url or 'not started'})"


class EmulatorServer(_Running):
    """The emulator served by uvicorn in a background thread of this process.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with EmulatorServer(api_key="sk-test", request_delay=0) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)

    :param settings: the emulator's settings (defaults when None).
    :param overrides: settings fields to change, e.g. ``request_delay=0``.
        Without a ``data_dir``, a temporary one is made and removed by :meth:`stop`.
    """

    def __init__(self, settings: EmulatorSettings | None = None, **overrides: Any) -> None:
        fields = (settings or EmulatorSettings()).model_dump()
        fields.update(overrides)
        self.settings = EmulatorSettings.model_validate(fields)
        self._owned_dir: Path | None = None
        self._server: ReadyServer | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.base_url = ""

    @property
    def api_key(self) -> str | None:
        """The key clients must send, or None when any is accepted."""
        key = self.settings.api_key
        return None if key is None else key.get_secret_value()

    @property
    def url(self) -> str:
        """The root URL, where the HTML page is."""
        return self.base_url.removesuffix("/v1")

    @property
    def data_dir(self) -> Path:
        """Where the state is kept."""
        assert self.settings.data_dir is not None, "start() sets the data directory"
        return self.settings.data_dir

    def start(self) -> EmulatorServer:
        """Serve; return once the emulator answers requests."""
        if self._thread is not None:
            raise RuntimeError("the emulator server is already started")
        if self.settings.data_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="openai-batch-emulator-"))
            self.settings = self.settings.model_copy(update={"data_dir": self._owned_dir})
        self._socket = bind_socket(self.settings.host, self.settings.port)
        self.base_url = base_url_of(self._socket)
        ready = threading.Event()
        app = create_app(self.settings)
        config = uvicorn_config(app, self.settings, log_config=None, log_level="warning")
        self._server = ReadyServer(config, on_ready=ready.set)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="openai-batch-emulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator server did not start; see the log above")
        return self

    def stop(self) -> None:
        """Stop serving (running batches resume on a later start with the same data directory)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STARTUP_TIMEOUT)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self.settings = self.settings.model_copy(update={"data_dir": None})
            self._owned_dir = None


class EmulatorProcess(_Running):
    """The emulator's CLI in a subprocess: for restarts, benchmarks and demos.

    :param cli_args: more CLI arguments, e.g. ``"--request-delay", "0.05"``.
    :param data_dir: the state directory; a temporary one (removed by :meth:`stop`) when None.
    :param port: the port; a free one when None. A restart keeps the port it got.
    """

    def __init__(self, *cli_args: str, data_dir: Path | None = None, port: int | None = None) -> None:
        self.cli_args = cli_args
        self._owned_dir: Path | None = None
        if data_dir is None:
            data_dir = self._owned_dir = Path(tempfile.mkdtemp(prefix="openai-batch-emulator-"))
        self.data_dir = data_dir
        self.port = port or 0
        self.base_url = ""
        self.log_path = self.data_dir / "emulator.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_key(self) -> str | None:
        """The ``--api-key`` given in ``cli_args``, if any."""
        args = list(self.cli_args)
        for index, arg in enumerate(args):
            if arg == "--api-key" and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith("--api-key="):
                return arg.partition("=")[2]
        return None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> EmulatorProcess:
        """Start the CLI; return once it printed that it serves."""
        if self._process is not None:
            raise RuntimeError("the emulator process is already started")
        command = [sys.executable, "-m", "airflow_batch_provider.emulator"]
        command += ["--data-dir", str(self.data_dir), "--port", str(self.port), *self.cli_args]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        ready: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=self._copy_output, args=(self._process, ready), name="emulator-output", daemon=True
        ).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                self.base_url = ready.get(timeout=0.05)
                break
            except queue.Empty:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self._terminate(kill=True)
                    log_tail = self.log_path.read_text(errors="replace")[-4000:]
                    raise RuntimeError(
                        f"the emulator did not start; its log ({self.log_path}):\n{log_tail}"
                    ) from None
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])
        return self

    def _copy_output(self, process: subprocess.Popen[bytes], ready: queue.Queue[str]) -> None:
        """Copy the process's output into the log (so its pipe never fills); report the URL line."""
        assert process.stdout is not None
        with open(self.log_path, "ab") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if match := _READY_PATTERN.search(line.decode(errors="replace")):
                    ready.put(match["url"])

    def _terminate(self, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self, kill: bool = False) -> None:
        """Stop and start again on the same data directory and port.

        :param kill: end the process with SIGKILL (a crash) instead of SIGTERM.
        """
        self._terminate(kill)
        self.start()

    def stop(self, kill: bool = False) -> None:
        """End the process and remove the data directory if it was made here."""
        self._terminate(kill)
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
