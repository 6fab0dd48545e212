"""`hardware:` profiles: validated with file, line and key; a declared price wins over the catalogue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from costwarden.config import ConfigError, parse_config
from costwarden.config.hardware import CATALOGUE, CATALOGUE_SOURCE, resolve_profile

BASE = """\
deployments:
  - {name: iris, protocol: v2, upstream: "http://127.0.0.1:9001"}
hardware:
"""


def test_profiles_load_with_exact_prices_and_win_over_the_catalogue() -> None:
    text = BASE + (
        "  - {name: aws-c7i.large, vcpus: 2, memory_gib: 4, hourly_usd: 0.0712, spot_hourly_usd: 0.031}\n"
        "  - {name: h200, accelerator: NVIDIA H200, accelerator_count: 1, vcpus: 16, memory_gib: 128,\n"
        "     hourly_usd: 3.5}\n"
    )
    config = parse_config(text)
    mine = resolve_profile("aws-c7i.large", config.hardware)
    assert mine is not None and mine.hourly_usd == Decimal("0.0712") and mine.price_source == "config"
    assert mine.hourly(spot=True) == Decimal("0.031")
    listed = resolve_profile("aws-g6.xlarge", config.hardware)
    assert listed is not None and listed.price_source == CATALOGUE_SOURCE and listed.accelerator == "NVIDIA L4"
    assert resolve_profile("nope", config.hardware) is None
    assert len({e.name for e in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize(
    ("entry", "line", "message"),
    [
        ("  - {name: a, vcpus: 2, memory_gib: 4}\n", 4, "hardware[0].hourly_usd: Field required"),
        ("  - {name: a, vcpus: 0, memory_gib: 4, hourly_usd: 1}\n", 4, "hardware[0].vcpus"),
        ("  - {name: a, vcpus: 2, memory_gib: 4, hourly_usd: -1}\n", 4, "hardware[0].hourly_usd"),
        ("  - {name: a, vcpus: 2, memory_gib: 4, hourly_usd: 1, gpus: 1}\n", 4, "hardware[0].gpus: Extra inputs"),
        ("  - {name: a, vcpus: 2, memory_gib: 4, hourly_usd: 1, accelerator: L4}\n", 4, "`accelerator_count` together"),
        ("  - {name: a, vcpus: 2, memory_gib: 4, hourly_usd: 1, spot_hourly_usd: 2}\n", 4, "spot_hourly_usd is above"),
        (
            "  - {name: a, vcpus: 2, memory_gib: 4, hourly_usd: 1}\n"
            "  - {name: a, vcpus: 2, memory_gib: 4, hourly_usd: 2}\n",
            5,
            "hardware[1].name: hardware profile 'a' is used twice",
        ),
    ],
)
def test_bad_profiles_name_file_line_and_key(entry: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + entry, "costwarden.yaml")
    text = str(caught.value)
    assert f"costwarden.yaml:{line}:" in text and message in text
