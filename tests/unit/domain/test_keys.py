"""API keys: `cw_<id>_<secret>` format, split and salted-hash verification."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.keys import (
    KEY_PREFIX,
    KeyIdentity,
    StoredKey,
    format_key,
    hash_secret,
    split_key,
    verify,
)

FAST = settings(max_examples=100, deadline=None, database=None)
KEY_IDS = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=24)
# Secrets are URL-safe base64 with `_` replaced (see services/keys.py), so never contain `_`.
SECRETS = st.text(alphabet="ABCxyz0189-", min_size=1, max_size=48)
SALTS = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)


def stored(key_id: str, secret: str, salt: str) -> StoredKey:
    identity = KeyIdentity(key_id=key_id, team="t", project="p", environment="prod")
    return StoredKey(identity, salt, hash_secret(salt, secret), created_at=0.0)


@FAST
@given(KEY_IDS, SECRETS, SALTS)
def test_format_split_verify_round_trip(key_id: str, secret: str, salt: str) -> None:
    token = format_key(key_id, secret)
    assert token.startswith(KEY_PREFIX)
    assert split_key(token) == (key_id, secret)
    assert verify(stored(key_id, secret, salt), secret)


@FAST
@given(KEY_IDS, SECRETS, SALTS, st.data())
def test_a_tampered_secret_fails(key_id: str, secret: str, salt: str, data: st.DataObject) -> None:
    other = data.draw(SECRETS.filter(lambda s: s != secret))
    assert not verify(stored(key_id, secret, salt), other)


def test_a_single_changed_character_fails() -> None:
    key = stored("abc123", "s3cretValue", "00ff00ff00ff00ff")
    assert verify(key, "s3cretValue")
    assert not verify(key, "s3cretValuf")
    assert not verify(key, "s3cretValue ")
    assert not verify(key, "")


def test_the_hash_is_salted() -> None:
    assert hash_secret("aa", "secret") != hash_secret("bb", "secret")
    assert len(hash_secret("aa", "secret")) == 64
    identity = KeyIdentity(key_id="k", team="t", project="p", environment="prod")
    assert not verify(StoredKey(identity, "aa", hash_secret("bb", "secret"), 0.0), "secret")


def test_an_id_may_contain_underscores_but_not_the_secret() -> None:
    assert split_key("cw_team_a_secret") == ("team_a", "secret")


@pytest.mark.parametrize(
    "token",
    ["", "sk-abc", "cw_", "cw_onlyid", "cw__secret", "cw_id_", "CW_id_secret", "xcw_id_secret"],
)
def test_split_rejects_malformed(token: str) -> None:
    assert split_key(token) is None


def test_may_use() -> None:
    everywhere = KeyIdentity(key_id="k", team="t", project="p", environment="prod")
    assert everywhere.may_use("anything")
    restricted = KeyIdentity(key_id="k", team="t", project="p", environment="prod", deployments=frozenset({"gpt"}))
    assert restricted.may_use("gpt")
    assert not restricted.may_use("iris")
    nothing = KeyIdentity(key_id="k", team="t", project="p", environment="prod", deployments=frozenset())
    assert not nothing.may_use("gpt")
