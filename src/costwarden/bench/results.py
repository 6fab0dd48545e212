"""The bench results file: JSON with a format version, written by `bench`, read by `hardware
recommend` and `check`. Reading one that is not usable raises ResultsError with a clear message."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costwarden.domain.hardware import HardwareProfile

FORMAT: Literal["costwarden-bench"] = "costwarden-bench"
FORMAT_VERSION = 1


class ResultsError(ValueError):
    """A results file that cannot be used (missing, not JSON, wrong format, newer version, field missing)."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Cost(Frozen):
    basis: str  # "gateway" (the gateway's metered cost), "prices" (the config's), or "hardware ..."
    total_usd: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
    per_1k_requests: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
    per_1m_tokens: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] | None = None


NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]


class Percentiles(Frozen):
    p50: NonNegative
    p90: NonNegative
    p95: NonNegative
    p99: NonNegative
    max: NonNegative
    mean: NonNegative


class Run(Frozen):
    """One load level (or one repeat): what was offered and what was measured. Times in ms."""

    label: str
    mode: Literal["open", "closed"]
    arrival: str | None = None
    offered_rate: float | None = None
    concurrency: int | None = None
    duration_s: NonNegative
    requests: Count
    ok: Count
    errors: dict[str, Count]
    error_rate: Annotated[float, Field(ge=0, le=1)]
    throughput_rps: NonNegative
    tokens_per_s: NonNegative
    input_tokens: Count
    output_tokens: Count
    items: Count
    latency_ms: Percentiles | None
    ttft_ms: Percentiles | None = None
    tpot_ms: Percentiles | None = None
    raw_percentiles_ms: dict[str, float]
    generator_late_ms: Percentiles | None = None  # how late the generator sent requests (its own timing error)
    cost: Cost | None = None
    metered_usd: Decimal | None = None  # sum of the gateway's x-costwarden-cost-usd (ledger reconciliation)
    slo_violations: list[str] | None = None  # None: no SLO given; [] met

    def stats(self) -> dict[str, float | None]:
        """The statistics an SLO names (see domain/slo.py)."""
        found: dict[str, float | None] = {"error_rate": self.error_rate}
        for prefix, block in (("latency", self.latency_ms), ("ttft", self.ttft_ms), ("tpot", self.tpot_ms)):
            for key in ("p50", "p90", "p95", "p99", "max"):
                found[f"{prefix}_{key}_ms"] = None if block is None else getattr(block, key)
        return found


class TargetInfo(Frozen):
    url: str
    protocol: Literal["openai", "v2"]
    deployment: str
    stream: bool
    via_gateway: bool


class HardwareInfo(Frozen):
    name: str
    hourly_usd: Decimal
    price_source: str
    accelerator: str | None = None
    accelerator_count: int = 0
    vcpus: int = 1
    memory_gib: Decimal = Decimal(1)
    spot_hourly_usd: Decimal | None = None

    @classmethod
    def of(cls, profile: HardwareProfile) -> HardwareInfo:
        fields = {k: getattr(profile, k) for k in cls.model_fields}
        return cls.model_validate(fields)

    def profile(self, price_source: str) -> HardwareProfile:
        fields = self.model_dump(exclude={"price_source"})
        return HardwareProfile(**fields, price_source=price_source)


class Search(Frozen):
    slo: str
    best_rate: float | None
    steps: int
    cost: Cost | None = None  # at the best rate


class Results(Frozen):
    format: Literal["costwarden-bench"] = FORMAT
    format_version: int = FORMAT_VERSION
    costwarden_version: str
    created_at: str
    target: TargetInfo
    parameters: dict[str, str | int | float | bool | None]
    machine: dict[str, str | int | float | None]
    hardware: HardwareInfo | None = None
    slo: str | None = None
    runs: list[Run]
    search: Search | None = None


def dump(results: Results) -> bytes:
    return orjson.dumps(results.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"


def save(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dump(results))


def load(path: Path) -> Results:
    """Read a results file, or raise ResultsError saying what is wrong with it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read the results file: {exc.strerror or exc}") from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResultsError(f"{path}: not a costwarden bench results file (no \"format\": \"{FORMAT}\")")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ResultsError(f"{path}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise ResultsError(
            f"{path}: format_version {version} was written by a newer costwarden "
            f"({data.get('costwarden_version', '?')}); this one reads up to {FORMAT_VERSION}: upgrade costwarden"
        )
    try:
        return Results.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ResultsError(f"{path}: {where}: {first['msg']}{more}") from exc
