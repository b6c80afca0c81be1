"""The pages' Jinja2 templates: every value escaped, every link relative, numbers formatted for people."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import Request
from jinja2 import Environment, PackageLoader
from starlette.templating import Jinja2Templates

from airflow_batch_provider.client.protocol import segment

REFRESH_SECONDS = 5
"""How often a page showing an unfinished batch refreshes itself."""


def duration(seconds: float | None) -> str:
    """``42s``, ``41m 10s``, ``2h 05m``, ``3d 04h``; empty for None."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def utc(stamp: int | None) -> str:
    """An epoch time as ``2026-11-26 14:03 UTC``; empty for None."""
    if stamp is None:
        return ""
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cost(value: float | None) -> str:
    """An estimated cost with four decimals (``0.0123``), ``< 0.0001`` below that; empty for None."""
    if value is None:
        return ""
    return "< 0.0001" if 0 < value < 0.0001 else f"{value:,.4f}"


def relative_root(request: Request) -> str:
    """The path from the page's URL up to the app's root (``./``, ``../../``), as a browser resolves it.

    Read from the raw path, so that an id holding an encoded ``/`` counts as one segment.
    """
    mount = request.scope.get("root_path", "")
    raw = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    route = raw[len(mount) :] if mount and raw.startswith(mount) else request.url.path
    depth = route.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("airflow_batch_provider.plugins", "templates"),
        autoescape=True,  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(duration=duration, utc=utc, cost=cost, segment=segment, grouped="{:,}".format)
    env.globals["refresh_seconds"] = REFRESH_SECONDS
    return env


templates = Jinja2Templates(env=_environment())

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
"""No inline script or style: a value that escaped escaping still could not run."""
