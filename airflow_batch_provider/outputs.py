"""What the operators do with results: download them where asked, count them, merge parts, price them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_batch_provider.expiry import reading_file
from airflow_batch_provider.jsonl import ResultTally, join_results, tally_results
from airflow_batch_provider.utils import local_path, safe_name

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_batch_provider.hooks.batch import OpenAIBatchHook
    from airflow_batch_provider.models import Batch

#: Prices per million tokens, by model: ``{"gpt-4o-mini": {"input": 0.075, "output": 0.30}}``;
#: ``cached_input`` (default: ``input``) prices input tokens served from the prompt cache.
Prices = Mapping[str, Mapping[str, float]]


def publish(local: Path, destination: Path | ObjectStoragePath, name: str) -> str:
    """Put a local file at ``destination/name`` (copied to object storage when remote); return where."""
    if local_path(destination) is not None:
        return str(local)
    target = destination / name
    with local.open("rb") as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, length=1 << 20)
    return str(target)


def download_results(
    hook: OpenAIBatchHook,
    destination: Path | ObjectStoragePath,
    output_file_id: str | None,
    error_file_id: str | None,
    errors_kept: int = 10,
    batch: Batch | None = None,
) -> tuple[dict[str, str], ResultTally]:
    """Download a batch's output and error files to ``destination`` and count what they hold.

    :param batch: the batch the files belong to, when known: a file that is gone (404) is
        described with the batch's times.
    :return: where each file went (``{"output": ..., "error": ...}``) and the tally of its lines.
    :raises GoneError: a file answered 404 (it expired).
    """
    paths: dict[str, str] = {}
    local_dir = local_path(destination)
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openai-batch-") as scratch:
        downloaded = []
        for kind, file_id in (("output", output_file_id), ("error", error_file_id)):
            if not file_id:
                continue
            name = f"{safe_name(file_id)}.jsonl"
            with reading_file(kind, file_id, batch):
                local = hook.download_file(file_id, (local_dir or Path(scratch)) / name)
            paths[kind] = publish(local, destination, name)
            hook.log.info("Downloaded %s file %s to %s.", kind, file_id, paths[kind])
            downloaded.append(local)
        tally = tally_results(*downloaded, errors_kept=errors_kept)
    return paths, tally


def merge_parts(
    parts: Sequence[tuple[Path, Sequence[Path]]],
    output: Path,
    errors: Path,
    check_output: Callable[[bytes], tuple[bytes, str | None]] | None = None,
    errors_kept: int = 10,
) -> ResultTally:
    """Join each part's results to its requests, part after part, into one output and one error file.

    :param parts: ``(input file, result files earliest first)`` per part, in input order.
    :param output: the merged output file (every request that succeeded, in input order).
    :param errors: the merged error file (every request that failed, in input order).
    :param check_output: validates each successful answer (see :func:`jsonl.typed_output_checker`).
    """
    tally = ResultTally(errors_kept=errors_kept)
    with output.open("wb") as out, errors.open("wb") as err:
        for requests, results in parts:
            join_results(requests, results, out, err, tally=tally, check_output=check_output)
    return tally


def estimate_cost(tokens: Mapping[str, Mapping[str, int]], prices: Prices | None) -> float | None:
    """The cost of the tokens at ``prices`` (per million tokens), or None without a price for each model."""
    if not prices or not tokens:
        return None
    total = 0.0
    for model, counts in tokens.items():
        price = prices.get(model)
        if price is None:
            return None
        cached = counts.get("cached", 0)
        total += (counts.get("input", 0) - cached) * price.get("input", 0.0)
        total += cached * price.get("cached_input", price.get("input", 0.0))
        total += counts.get("output", 0) * price.get("output", 0.0)
    return round(total / 1_000_000, 6)


def failure_message(task_id: str, tally: ResultTally, failure_threshold: float | None) -> str:
    """Why a task fails for its failed requests: how many, the threshold, the commonest reasons."""
    total = tally.succeeded + tally.failed
    allowed = (
        "every request failed"
        if failure_threshold is None
        else f"more than failure_threshold={failure_threshold}"
    )
    share = tally.failed / max(total, 1)
    reasons = tally.most_common_errors().rstrip(".") or "none reported"
    return (
        f"Task {task_id!r}: {tally.failed:,} of {total:,} request(s) failed ({share:.1%}): {allowed}. "
        f"Commonest reasons: {reasons}."
    )


def summary_of(tally: ResultTally, prices: Prices | None = None) -> dict[str, Any]:
    """The counts, reasons and tokens of a tally, for an XCom."""
    return {
        "succeeded": tally.succeeded,
        "failed": tally.failed,
        "error_codes": dict(tally.error_codes),
        "tokens": tally.total_tokens,
        "tokens_by_model": tally.tokens,
        "estimated_cost": estimate_cost(tally.tokens, prices),
        "errors": tally.first_errors,
    }
