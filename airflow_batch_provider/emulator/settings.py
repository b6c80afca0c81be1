"""Settings of one emulator instance."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from airflow_batch_provider.emulator.faults import FaultSettings
from airflow_batch_provider.rules import DEFAULT_OUTPUT_RETENTION_SECONDS

DAY_SECONDS = 24 * 60 * 60
KEEP_ALIVE_SECONDS = 30.0
"""The emulator's default keep-alive: well above the client's 4 s (and uvicorn's own 5 s)."""


class EmulatorSettings(BaseModel):
    """How an emulator serves, stores, and how fast it processes batches.

    The default delays let a person, or a test, see a small batch pass through every status,
    with ``request_counts`` rising on the way.
    """

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    """Interface to bind; loopback unless told otherwise."""
    port: int = Field(default=0, ge=0, le=65535)
    """TCP port; 0 picks a free one."""
    data_dir: Path | None = None
    """Where the SQLite database and file bytes live; None means a new temporary directory."""
    api_key: SecretStr | None = None
    """When set, every request must carry it (``Authorization: Bearer`` or Azure's ``api-key``)."""
    completion_window_seconds: float = Field(default=DAY_SECONDS, gt=0)
    """What the only completion window, "24h", lasts; small values let tests see expiry."""
    validation_delay: float = Field(default=0.3, ge=0)
    """Seconds a batch stays ``validating`` before its input is checked."""
    request_delay: float = Field(default=0.1, ge=0)
    """Seconds each request takes to execute."""
    concurrency: int = Field(default=4, ge=1)
    """Requests of one batch executed at the same time."""
    finalizing_delay: float = Field(default=0.3, ge=0)
    """Seconds a batch stays ``finalizing``."""
    cancel_delay: float = Field(default=0.3, ge=0)
    """Seconds a batch stays ``cancelling``."""
    retention_seconds: int = Field(default=DEFAULT_OUTPUT_RETENTION_SECONDS, ge=1)
    """How long a batch's output and error files are kept, from when the batch ends, unless the batch
    set ``output_expires_after``; then they answer 404, as the live API's do once they expire
    (30 days by default)."""
    batch_retention_seconds: int | None = Field(default=None, ge=1)
    """How long a finished batch is kept, from when it ended; then it answers 404 and leaves the
    lists, as batches past retention do on the live API. None (the default): kept."""
    faults: FaultSettings = Field(default_factory=FaultSettings)
    """Faults injected into responses (errors, 429s, latency, dropped connections)."""
    enable_admin: bool = False
    """Serve ``/_emulator/faults`` so tests can change the faults at runtime."""
    enqueued_token_limit: int | None = Field(default=None, ge=1)
    """The organization's enqueued-token limit: a batch whose tokens (estimated from its input's
    size) would bring the tokens of batches in progress past it fails at validation with
    ``token_limit_exceeded``, as on the live API. None: no limit."""
    models: tuple[str, ...] = ()
    """Model names offered besides the catalogue's, on every endpoint (fine-tuned models, Azure
    deployment names, a local server's models)."""
    any_model: bool = False
    """Accept any model in a batch; by default a batch naming a model its endpoint does not offer
    fails at validation with ``model_not_found``. The upstream mode never checks models."""
    upstream_url: str | None = None
    """Execute each request against this OpenAI-compatible base URL instead of locally."""
    upstream_api_key: SecretStr | None = None
    """The key sent to ``upstream_url``."""
    keep_alive_timeout: float = Field(default=KEEP_ALIVE_SECONDS, gt=0)
    """Seconds an idle client connection is kept open: above the client's keep-alive expiry, so
    that the client, not the server, closes an idle connection (no request meets one closing)."""
