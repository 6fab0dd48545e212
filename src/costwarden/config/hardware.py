"""`hardware:` profiles in costwarden.yaml (machine shapes with hourly prices) and the bundled
catalogue of indicative list prices. A profile declared in the file always wins over the catalogue."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator

from costwarden.config.base import Model
from costwarden.domain.hardware import HardwareProfile


class HardwareConfig(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-:]{1,64}$")
    accelerator: str | None = Field(default=None, min_length=1, max_length=64)  # e.g. "NVIDIA H100 80GB"
    accelerator_count: int = Field(default=0, ge=0, le=64)
    vcpus: int = Field(ge=1, le=4096)
    memory_gib: Decimal = Field(gt=0, le=65536)
    hourly_usd: Decimal = Field(ge=0, le=100_000)
    spot_hourly_usd: Decimal | None = Field(default=None, ge=0, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> HardwareConfig:
        if (self.accelerator is None) != (self.accelerator_count == 0):
            raise ValueError("set `accelerator` and `accelerator_count` together (or neither, for a CPU machine)")
        if self.spot_hourly_usd is not None and self.spot_hourly_usd > self.hourly_usd:
            raise ValueError("spot_hourly_usd is above hourly_usd")
        return self

    def profile(self, source: str = "config") -> HardwareProfile:
        return HardwareProfile(
            name=self.name,
            hourly_usd=self.hourly_usd,
            accelerator=self.accelerator,
            accelerator_count=self.accelerator_count,
            vcpus=self.vcpus,
            memory_gib=self.memory_gib,
            spot_hourly_usd=self.spot_hourly_usd,
            price_source=source,
        )


def _entry(name: str, vcpus: int, memory: str, hourly: str, accel: str | None = None, count: int = 0) -> HardwareConfig:
    return HardwareConfig(
        name=name,
        vcpus=vcpus,
        memory_gib=Decimal(memory),
        hourly_usd=Decimal(hourly),
        accelerator=accel,
        accelerator_count=count,
    )


# Indicative on-demand list prices (AWS us-east-1, Linux, late 2025), for a first estimate only:
# prices change and differ by region and contract; declare your own under `hardware:`.
CATALOGUE_SOURCE = "catalogue (AWS us-east-1 on-demand list price, late 2025; indicative)"
CATALOGUE: tuple[HardwareConfig, ...] = (
    _entry("aws-c7i.large", 2, "4", "0.08925"),
    _entry("aws-c7i.xlarge", 4, "8", "0.1785"),
    _entry("aws-c7i.2xlarge", 8, "16", "0.357"),
    _entry("aws-g5.xlarge", 4, "16", "1.006", "NVIDIA A10G", 1),
    _entry("aws-g6.xlarge", 4, "16", "0.8048", "NVIDIA L4", 1),
    _entry("aws-p5.48xlarge", 192, "2048", "55.04", "NVIDIA H100 80GB", 8),
)


def resolve_profile(name: str, declared: tuple[HardwareConfig, ...]) -> HardwareProfile | None:
    """The named profile: the file's own declaration first, else the catalogue's, else None."""
    for entry in declared:
        if entry.name == name:
            return entry.profile("config")
    for entry in CATALOGUE:
        if entry.name == name:
            return entry.profile(CATALOGUE_SOURCE)
    return None


def known_names(declared: tuple[HardwareConfig, ...]) -> list[str]:
    return sorted({e.name for e in declared} | {e.name for e in CATALOGUE})
