"""Dashboard session cookies: signed, expiring, and refused when altered in any way."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.app.dashboard_session import Role, Session, SessionSigner, session_secret

NOW = 1_800_000_000.0
SIGNER = SessionSigner(session_secret("admin-token-for-tests-0123456789"), 3600)


def test_round_trip_and_expiry() -> None:
    value = SIGNER.issue(Role.TEAM, "search", "k1", NOW)
    assert SIGNER.read(value, NOW + 10) == Session(Role.TEAM, "search", "k1", NOW + 3600)
    assert SIGNER.read(value, NOW + 3600) is None
    assert "admin-token" not in value


def test_the_secret_follows_the_admin_token() -> None:
    value = SIGNER.issue(Role.ADMIN, None, None, NOW)
    assert SessionSigner(session_secret("admin-token-for-tests-0123456789"), 60).read(value, NOW) is not None
    assert SessionSigner(session_secret("rotated-token"), 60).read(value, NOW) is None
    assert session_secret(None) != session_secret(None)  # no token: random per process


def _signed(body: object) -> str:
    payload = base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode()
    return f"{payload}.{SIGNER._mac(payload)}"


@pytest.mark.parametrize(
    "body",
    [
        {"r": "root", "t": None, "k": None, "e": NOW + 60},
        {"r": "team", "t": None, "k": None, "e": NOW + 60},  # a team session must name its team
        {"r": "admin", "t": None, "k": None, "e": True},
        {"r": "admin", "t": None, "k": None, "e": float("inf")},
        {"r": "admin", "t": None, "k": None, "e": "never"},
        {"r": "admin", "t": 3, "k": None, "e": NOW + 60},
        ["admin"],
    ],
)
def test_a_signed_but_malformed_payload_is_refused(body: object) -> None:
    assert SIGNER.read(_signed(body), NOW) is None


@given(st.integers(min_value=0), st.sampled_from("AQgw-_"))
def test_any_altered_character_is_refused(position: int, char: str) -> None:
    value = SIGNER.issue(Role.ADMIN, None, None, NOW)
    index = position % len(value)
    if value[index] == char or value[index] == ".":
        return
    assert SIGNER.read(value[:index] + char + value[index + 1 :], NOW) is None


@pytest.mark.parametrize("value", [None, "", ".", "x" * 5000, "a.b.c", "é.é"])
def test_garbage_is_refused(value: str | None) -> None:
    assert SIGNER.read(value, NOW) is None
