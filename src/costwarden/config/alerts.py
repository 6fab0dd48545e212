"""Pydantic models of the alert sinks (`alerts:` in the config): webhook, Slack, Alertmanager."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator


class SinkSettings(BaseModel):
    """What every HTTP sink shares. Seconds throughout; `max_retries` counts attempts after the first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")  # defaults to the type
    timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=10)
    backoff_s: float = Field(default=0.5, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)


class WebhookSinkConfig(SinkSettings):
    """`secret` keys the HMAC; share it with the receiver out of band (16 characters at least)."""

    type: Literal["webhook"]
    url: AnyHttpUrl
    secret: SecretStr = Field(min_length=16)


class SlackSinkConfig(SinkSettings):
    """`url` is the incoming-webhook URL; it is a credential, so it is kept out of reprs and logs."""

    type: Literal["slack"]
    url: SecretStr = Field(min_length=10)

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("url must be an http(s) URL")
        return value


class AlertmanagerSinkConfig(SinkSettings):
    """`url` is Alertmanager's base URL (a path prefix is kept); `bearer_token` is sent if set."""

    type: Literal["alertmanager"]
    url: AnyHttpUrl
    generator_url: AnyHttpUrl | None = None
    resend_interval_s: float = Field(default=60.0, gt=0)
    bearer_token: SecretStr | None = None


AlertSinkConfig = Annotated[
    WebhookSinkConfig | SlackSinkConfig | AlertmanagerSinkConfig,
    Field(discriminator="type"),
]
