"""Client tags: `k=v,...` parsing within bounds, and merging under the key's fixed tags."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.tags import MAX_TAG_LENGTH, MAX_TAGS, TagError, merge_tags, parse_tag_header

FAST = settings(max_examples=100, deadline=None, database=None)
NAMES = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=64)
VALUES = st.text(alphabet="abc XYZ019/:@", max_size=MAX_TAG_LENGTH).map(str.strip)


def test_parses_name_value_pairs() -> None:
    assert parse_tag_header("feature=search, ticket=ABC-12 ,ab.c_d-e=") == {
        "feature": "search",
        "ticket": "ABC-12",
        "ab.c_d-e": "",
    }


def test_empty_parts_are_ignored() -> None:
    assert parse_tag_header("") == {}
    assert parse_tag_header(" , ,a=1,,") == {"a": "1"}


def test_value_may_contain_equals() -> None:
    assert parse_tag_header("q=a=b") == {"q": "a=b"}


@FAST
@given(st.dictionaries(NAMES, VALUES, max_size=MAX_TAGS))
def test_round_trip_within_bounds(tags: dict[str, str]) -> None:
    header = ",".join(f"{k}={v}" for k, v in tags.items())
    assert parse_tag_header(header) == tags


def test_at_most_max_tags() -> None:
    eight = ",".join(f"t{i}=v" for i in range(MAX_TAGS))
    assert len(parse_tag_header(eight)) == MAX_TAGS
    with pytest.raises(TagError, match=f"at most {MAX_TAGS}"):
        parse_tag_header(eight + ",t8=v")


def test_a_repeated_name_counts_once() -> None:
    repeated = ",".join(f"t{i % MAX_TAGS}=v{i}" for i in range(MAX_TAGS * 2))
    tags = parse_tag_header(repeated)
    assert len(tags) == MAX_TAGS
    assert tags["t0"] == f"v{MAX_TAGS}"  # the last one wins


def test_value_length_bound() -> None:
    assert parse_tag_header("a=" + "x" * MAX_TAG_LENGTH) == {"a": "x" * MAX_TAG_LENGTH}
    with pytest.raises(TagError, match="longer than 64"):
        parse_tag_header("a=" + "x" * (MAX_TAG_LENGTH + 1))


@pytest.mark.parametrize(
    "name",
    ["", "has space", "émoji", "semi;colon", "slash/", "x" * 65, "quote'"],
)
def test_name_syntax(name: str) -> None:
    with pytest.raises(TagError, match="tag name"):
        parse_tag_header(f"{name}=v")


def test_name_of_64_characters_is_allowed() -> None:
    assert parse_tag_header("n" * 64 + "=v") == {"n" * 64: "v"}


@pytest.mark.parametrize("header", ["novalue", "a=1,broken", "  lonely  "])
def test_malformed_part(header: str) -> None:
    with pytest.raises(TagError, match="name=value"):
        parse_tag_header(header)


def test_tag_error_is_a_value_error() -> None:
    assert issubclass(TagError, ValueError)


def test_client_tags_never_override_the_keys_tags() -> None:
    fixed = (("team_cost_center", "cc-1"), ("tier", "gold"))
    merged = merge_tags(fixed, {"tier": "free", "feature": "chat"})
    assert merged == {"team_cost_center": "cc-1", "tier": "gold", "feature": "chat"}


@FAST
@given(st.dictionaries(NAMES, VALUES), st.dictionaries(NAMES, VALUES))
def test_merge_property(fixed: dict[str, str], client: dict[str, str]) -> None:
    merged = merge_tags(tuple(fixed.items()), client)
    assert set(merged) == set(fixed) | set(client)
    for name, value in merged.items():
        assert value == (fixed[name] if name in fixed else client[name])
