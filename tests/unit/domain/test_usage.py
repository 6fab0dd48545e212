"""Usage: the copy the meter makes for every request keeps every field."""

from __future__ import annotations

from dataclasses import fields, replace

from costwarden.domain.usage import Usage


def test_timed_is_replace_of_upstream_seconds_and_keeps_every_other_field() -> None:
    # Each field a distinct value, so a field added to Usage but not to `timed` (or passed in the
    # wrong position) shows here.
    values = {f.name: (0.5 if f.name == "upstream_seconds" else i + 1) for i, f in enumerate(fields(Usage))}
    usage = Usage(**values)  # type: ignore[arg-type]
    timed = usage.timed(2.25)
    assert timed == replace(usage, upstream_seconds=2.25)
    assert {f.name: getattr(timed, f.name) for f in fields(Usage)} == {**values, "upstream_seconds": 2.25}
    assert usage.upstream_seconds == 0.5  # the original is unchanged
