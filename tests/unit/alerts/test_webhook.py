"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, checked in constant time, fresh only."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from costwarden.alerts.webhook import sign, verify
from costwarden.config.alerts import WebhookSinkConfig

SECRET = "s3cret-s3cret-s3cret"
BODY = b'{"alerts":[]}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1750000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1750000000", BODY) == f"sha256={expected}"


def test_verify_accepts_the_right_signature_only() -> None:
    good = sign(SECRET, "1750000000", BODY)
    assert verify(SECRET, "1750000000", BODY, good, now=1_750_000_010.0)
    assert not verify("another-secret-value", "1750000000", BODY, good, now=1_750_000_010.0)
    assert not verify(SECRET, "1750000000", BODY + b" ", good, now=1_750_000_010.0)
    assert not verify(SECRET, "1750000001", BODY, good, now=1_750_000_010.0)  # timestamp is signed
    assert not verify(SECRET, "1750000000", BODY, good.upper(), now=1_750_000_010.0)
    assert not verify(SECRET, "soon", BODY, good, now=1_750_000_010.0)


def test_verify_refuses_a_stale_timestamp() -> None:
    good = sign(SECRET, "1750000000", BODY)
    assert verify(SECRET, "1750000000", BODY, good, now=1_750_000_300.0)
    assert not verify(SECRET, "1750000000", BODY, good, now=1_750_000_301.0)
    assert not verify(SECRET, "1750000000", BODY, good, now=1_749_999_000.0)


def test_the_config_keeps_the_secret_out_of_its_repr() -> None:
    config = WebhookSinkConfig(type="webhook", url="https://hooks.example/costwarden", secret=SECRET)
    assert SECRET not in repr(config) and config.max_retries == 4
    with pytest.raises(ValidationError):
        WebhookSinkConfig(type="webhook", url="https://hooks.example/", secret="short")
    with pytest.raises(ValidationError):
        WebhookSinkConfig.model_validate({"type": "webhook", "url": "https://x/", "secret": SECRET, "retries": 3})
