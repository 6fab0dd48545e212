"""Head limits: the target's length, header count, per-header and total sizes, each checked at its boundary."""

from __future__ import annotations

import pytest

from costwarden.protocols.request_limits import HeaderLimits, head_problem, header_problem

LIMITS = HeaderLimits(total_bytes=1000, count=10, each_bytes=300)


def headers(count: int, size: int) -> list[tuple[bytes, bytes]]:
    """`count` headers of `size` bytes each (name + value)."""
    return [(b"x-%03d" % i, b"v" * (size - 5)) for i in range(count)]


@pytest.mark.parametrize(
    ("given", "code"),
    [
        (headers(10, 100), None),
        (headers(11, 10), "too_many_headers"),
        (headers(1, 300), None),
        (headers(1, 301), "header_too_large"),
        (headers(4, 250), None),
        (headers(5, 201), "headers_too_large"),
        ([], None),
    ],
)
def test_header_limits_at_their_boundaries(given: list[tuple[bytes, bytes]], code: str | None) -> None:
    problem = header_problem(given, LIMITS)
    if code is None:
        assert problem is None
    else:
        assert problem is not None and (problem.status, problem.code) == (431, code)
        assert problem.message


def test_the_message_names_the_header_but_not_all_of_it() -> None:
    problem = header_problem([(b"x-" + b"n" * 500, b"v")], LIMITS)
    assert problem is not None and problem.code == "header_too_large"
    assert len(problem.message) < 200


def test_the_target_limit_counts_path_and_query_at_its_boundary() -> None:
    limits = HeaderLimits(target_bytes=300)
    assert head_problem("/" + "a" * 299, b"", [], limits) is None
    assert head_problem("/" + "a" * 200, b"q" * 98, [], limits) is None  # 201 + "?" + 98
    problem = head_problem("/" + "a" * 200, b"q" * 99, headers(11, 10), limits)
    assert problem is not None and problem.status == 414 and problem.code == "uri_too_long"  # before the 431
