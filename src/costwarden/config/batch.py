"""The `batch:` section: the durable batch queue, its workers' windows and caps, and limits."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr, field_validator

from costwarden.config.base import Model
from costwarden.domain.batch_window import Window, parse_window


class CallbackConfig(Model):
    """Where `X-Costwarden-Callback` results are POSTed from: signed with `secret` exactly as the
    webhook alert sink signs (X-Costwarden-Signature / X-Costwarden-Timestamp). Without a secret,
    a request with a callback URL is refused (400)."""

    secret: SecretStr | None = Field(default=None, min_length=16)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=8, ge=1, le=100)  # then the delivery is given up (logged, counted)
    backoff_s: float = Field(default=1.0, gt=0)  # before the 2nd attempt; doubles up to max_backoff_s
    max_backoff_s: float = Field(default=300.0, gt=0)


class BatchConfig(Model):
    enabled: bool = True  # the Batch API and this gateway's workers
    # Where the queue lives: sqlite:///path or postgresql://... (default: the ledger's database).
    queue: str | None = Field(default=None, pattern=r"^(sqlite:///|postgres(ql)?://)")
    windows: tuple[str, ...] = ()  # off-peak windows in UTC, e.g. ["22:00-06:00"]; none: always
    concurrency: int = Field(default=4, ge=1, le=1024)  # jobs in flight per gateway
    rate_per_second: float = Field(default=20.0, gt=0, le=100_000)  # job starts per second per gateway
    price_multiplier: Decimal = Field(default=Decimal(1), ge=0, le=10)  # applied to each job's cost
    lease_seconds: float = Field(default=300.0, ge=1)  # longer than any request takes
    poll_seconds: float = Field(default=1.0, gt=0, le=60)  # while the queue holds unfinished jobs
    # While it holds none: a job queued on this gateway wakes its worker at once; one queued by
    # another gateway sharing the queue's database is seen within this.
    idle_poll_seconds: float = Field(default=30.0, gt=0, le=3600)
    retry_seconds: float = Field(default=5.0, gt=0)  # a job refused by admission waits this long
    max_file_bytes: int = Field(default=100 * 1024 * 1024, gt=0, le=1024**3)
    max_requests: int = Field(default=50_000, gt=0, le=1_000_000)  # lines in one batch
    # Who may queue a realtime request with `X-Costwarden-Priority: batch` (nobody by default).
    priority_keys: tuple[str, ...] = ()
    priority_teams: tuple[str, ...] = ()
    # Realtime requests one team may have queued at once (202s not yet run); more get 429 queue_full.
    max_queued_per_team: int = Field(default=10_000, ge=1, le=10_000_000)
    callbacks: CallbackConfig = CallbackConfig()
    # Finished batches (their jobs, output and error files) are deleted this many days after they
    # finished, and uploads this many days after upload once no kept batch was created from them;
    # by the leading gateway every `retention_every_seconds` (0: only `costwarden queue prune`).
    # None (the default): kept until a client deletes them, as OpenAI keeps files. At least a day,
    # so a client polling a batch still finds its results. The ledger's records are never touched.
    retention_days: float | None = Field(default=None, ge=1)
    retention_batch: int = Field(default=1000, gt=0, le=100_000)  # rows deleted per transaction
    retention_every_seconds: float = Field(default=3600.0, ge=0)

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_window(text)  # ValueError names the bad window
        return value

    def parsed_windows(self) -> tuple[Window, ...]:
        return tuple(parse_window(w) for w in self.windows)
