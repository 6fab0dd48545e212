"""The `observability` part of the config: the JSON access log, OpenTelemetry traces, FOCUS billing identity."""

from __future__ import annotations

from pydantic import Field, model_validator

from costwarden.config.base import Model


class AccessLogConfig(Model):
    """One JSON line per request (docs/metrics.md): to `path` (appended), or to stderr when no path.

    Never keys, prompts or replies: only attribution, status, usage, cost and timings.
    """

    enabled: bool = False
    path: str | None = None
    stderr: bool = False
    # Lines are buffered and written by a background task every `flush_ms` (or at `buffer_lines`).
    flush_ms: int = Field(default=200, gt=0, le=60_000)
    buffer_lines: int = Field(default=1000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _one_target(self) -> AccessLogConfig:
        if self.enabled and (self.path is None) == (not self.stderr):
            raise ValueError("set either `path` (a file) or `stderr: true` for an enabled access log")
        return self


class TracingConfig(Model):
    """OpenTelemetry traces (the `otel` extra), exported over OTLP/HTTP; off by default."""

    enabled: bool = False
    endpoint: str = Field(default="http://127.0.0.1:4318/v1/traces", pattern=r"^https?://")
    service_name: str = Field(default="costwarden", min_length=1, max_length=128)
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class FocusConfig(Model):
    """Who bills in a FOCUS export: provider (= publisher, invoice issuer) and billing account."""

    provider: str = Field(default="costwarden", min_length=1, max_length=200)
    billing_account_id: str = Field(default="costwarden", min_length=1, max_length=200)
    billing_account_name: str = Field(default="costwarden", min_length=1, max_length=200)
    service_name: str = Field(default="AI Inference", min_length=1, max_length=200)


class ObservabilityConfig(Model):
    access_log: AccessLogConfig = AccessLogConfig()
    tracing: TracingConfig = TracingConfig()
    focus: FocusConfig = FocusConfig()
