"""Read bench results from several hardware profiles and rank the profiles for an SLO and a rate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from costwarden.bench.results import HardwareInfo, Results, ResultsError, Run, load
from costwarden.domain.hardware import Capacity, HardwareProfile, Option, rank_options
from costwarden.domain.slo import Slo


@dataclass(frozen=True, slots=True)
class Candidate:
    """One results file: its profile, and its runs that met the SLO (best = highest throughput)."""

    path: Path
    results: Results
    profile: HardwareProfile
    capacity: Capacity
    best: Run | None


def profile_of(info: HardwareInfo, resolve: Callable[[str], HardwareProfile | None]) -> HardwareProfile:
    """The file's profile, priced by the user's config when it declares one of that name."""
    declared = resolve(info.name)
    if declared is not None and declared.price_source == "config":
        return declared
    return info.profile(f"results file ({info.price_source})")


def candidate(path: Path, results: Results, slo: Slo, resolve: Callable[[str], HardwareProfile | None]) -> Candidate:
    if results.hardware is None:
        raise ResultsError(f"{path}: the bench ran without --hardware, so it has no hourly price to compare")
    profile = profile_of(results.hardware, resolve)
    passing = [r for r in results.runs if r.ok > 0 and slo.met(r.stats())]
    best = max(passing, key=lambda r: r.throughput_rps, default=None)
    tokens = (best.input_tokens + best.output_tokens) / best.ok if best is not None else 0.0
    label = f"{path.name}: {results.target.deployment}"
    capacity = Capacity(profile, best.throughput_rps if best else 0.0, tokens, label)
    return Candidate(path, results, profile, capacity, best)


def read_dir(folder: Path, slo: Slo, resolve: Callable[[str], HardwareProfile | None]) -> list[Candidate]:
    """Every `*.json` results file in `folder` (not recursive), sorted by name."""
    if not folder.is_dir():
        raise ResultsError(f"{folder}: not a folder of results files")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ResultsError(f"{folder}: no *.json results files")
    return [candidate(path, load(path), slo, resolve) for path in files]


def recommend(candidates: list[Candidate], rate: float | None, spot: bool = False) -> list[Option]:
    return rank_options([c.capacity for c in candidates], rate, spot)
