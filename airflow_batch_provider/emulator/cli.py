"""``openai-batch-emulator``: serve the OpenAI Batch API emulator from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_batch_provider.emulator.app import create_app
from airflow_batch_provider.emulator.faults import FaultSettings, parse_cli_fault
from airflow_batch_provider.emulator.server import READY_MESSAGE, ReadyServer, base_url_of, bind_socket
from airflow_batch_provider.emulator.serving import uvicorn_config
from airflow_batch_provider.emulator.settings import EmulatorSettings

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments; defaults come from :class:`EmulatorSettings`."""
    defaults = EmulatorSettings()
    parser = argparse.ArgumentParser(
        prog="openai-batch-emulator", description="A local emulator of the OpenAI Files and Batch APIs."
    )
    _add_serving(parser.add_argument_group("serving"), defaults)
    _add_processing(parser.add_argument_group("processing"), defaults)
    _add_retention(parser.add_argument_group("retention"), defaults)
    _add_models(parser.add_argument_group("models"))
    _add_faults(parser.add_argument_group("faults"))
    upstream = parser.add_argument_group("upstream")
    upstream.add_argument(
        "--upstream", metavar="URL", help="execute requests on this OpenAI-compatible API root instead"
    )
    upstream.add_argument("--upstream-api-key", help="the API key sent to --upstream")
    return parser


def _add_serving(serve: argparse._ArgumentGroup, defaults: EmulatorSettings) -> None:
    serve.add_argument("--host", default=defaults.host, help="interface to bind (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=defaults.port, help="TCP port; 0 picks a free one (default: %(default)s)"
    )
    serve.add_argument("--data-dir", type=Path, help="directory of the state (default: a new temporary one)")
    serve.add_argument(
        "--api-key",
        help="the only API key accepted, as 'Authorization: Bearer KEY' or Azure's 'api-key: KEY' "
        "(default: none needed)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=defaults.keep_alive_timeout,
        help="seconds an idle connection stays open; keep it above the clients' (default: %(default)s)",
    )


def _add_processing(processing: argparse._ArgumentGroup, defaults: EmulatorSettings) -> None:
    for flag, default, text in (
        ("--completion-window-seconds", defaults.completion_window_seconds, 'what the "24h" window lasts'),
        ("--validation-delay", defaults.validation_delay, "how long a batch validates"),
        ("--request-delay", defaults.request_delay, "how long each request takes"),
        ("--finalizing-delay", defaults.finalizing_delay, "how long a batch finalizes"),
        ("--cancel-delay", defaults.cancel_delay, "how long a batch stays cancelling"),
    ):
        processing.add_argument(
            flag, type=float, default=default, help=f"{text}, in seconds (default: %(default)s)"
        )
    processing.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="requests of one batch executed at once (default: %(default)s)",
    )
    processing.add_argument(
        "--enqueued-token-limit",
        type=int,
        metavar="N",
        help="fail a batch with token_limit_exceeded when it would bring the tokens of batches in "
        "progress past N (default: no limit)",
    )


def _add_retention(retention: argparse._ArgumentGroup, defaults: EmulatorSettings) -> None:
    retention.add_argument(
        "--retention-seconds",
        type=int,
        metavar="N",
        default=defaults.retention_seconds,
        help="seconds a finished batch's output and error files are kept, unless the batch set "
        "output_expires_after; then they answer 404 (default: %(default)s, the live API's 30 days)",
    )
    retention.add_argument(
        "--batch-retention-seconds",
        type=int,
        metavar="N",
        help="seconds a finished batch is kept after it ended; then it answers 404 and leaves the "
        "lists (default: kept)",
    )


def _add_models(models: argparse._ArgumentGroup) -> None:
    models.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this model on every endpoint besides the catalogue's (GET /v1/models lists it), "
        "e.g. a fine-tuned model or an Azure deployment name (repeatable)",
    )
    models.add_argument(
        "--any-model",
        action="store_true",
        help="accept any model; by default a batch naming a model its endpoint does not offer fails "
        "at validation with model_not_found (the upstream mode never checks models)",
    )


def _add_faults(faults: argparse._ArgumentGroup) -> None:
    faults.add_argument(
        "--fault",
        dest="faults",
        action="append",
        type=parse_cli_fault,
        default=[],
        metavar="SPEC",
        help="inject a fault, '[METHOD ]PATH:ACTION[:OPTION=VALUE]...', "
        "e.g. 'GET /v1/batches/*:429:rate=0.5' (repeatable)",
    )
    faults.add_argument("--fault-seed", type=int, help="seed for the faults' random picks")
    faults.add_argument(
        "--enable-admin", action="store_true", help="serve /_emulator/faults to change faults"
    )


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    """The settings the parsed arguments describe."""
    return EmulatorSettings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        api_key=args.api_key,
        completion_window_seconds=args.completion_window_seconds,
        validation_delay=args.validation_delay,
        request_delay=args.request_delay,
        concurrency=args.concurrency,
        enqueued_token_limit=args.enqueued_token_limit,
        finalizing_delay=args.finalizing_delay,
        cancel_delay=args.cancel_delay,
        retention_seconds=args.retention_seconds,
        batch_retention_seconds=args.batch_retention_seconds,
        faults=FaultSettings(rules=args.faults, seed=args.fault_seed),
        enable_admin=args.enable_admin,
        models=tuple(args.models),
        any_model=args.any_model,
        upstream_url=args.upstream,
        upstream_api_key=args.upstream_api_key,
        keep_alive_timeout=args.keep_alive_timeout,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted; print the base URL once the emulator answers requests."""
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    sock = bind_socket(settings.host, settings.port)
    base_url = base_url_of(sock)
    app = create_app(settings)
    config = uvicorn_config(app, settings, log_level=args.log_level, access_log=args.access_log)

    def announce() -> None:
        log.info("Emulator state in %s", app.state.data_dir)
        print(READY_MESSAGE.format(base_url=base_url), flush=True)

    server = ReadyServer(config, on_ready=announce)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)
