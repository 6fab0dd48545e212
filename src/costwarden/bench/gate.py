"""`check`'s inputs: the baseline and current results (same deployment and protocol), the
thresholds (options or a YAML policy), and the findings of domain/gate.py over them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from costwarden.bench.results import Results, ResultsError, Run, load
from costwarden.domain.gate import Finding, cost_check, error_rate_check, latency_check
from costwarden.domain.money import quantize


class PolicyError(ValueError):
    """A threshold or policy file that cannot be read."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Thresholds as fractions: 0.05 = 5 %."""

    max_cost_increase: Decimal = Decimal("0.05")
    max_p99_increase: Decimal = Decimal("0.10")
    max_error_rate: Decimal = Decimal("0.005")


POLICY_KEYS = ("max_cost_increase", "max_p99_increase", "max_error_rate")


def fraction(text: str | float | int, what: str) -> Decimal:
    """`5%` or `0.05` -> Decimal("0.05"); raises PolicyError for anything else."""
    raw = str(text).strip()
    try:
        value = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
    except InvalidOperation as exc:
        raise PolicyError(f"{what}: {raw!r} is not a percentage (5%) or a fraction (0.05)") from exc
    if not value.is_finite() or value < 0 or value > 100:
        raise PolicyError(f"{what}: {raw!r} must be between 0 and 10000%")
    return value


def read_policy(path: Path) -> dict[str, Decimal]:
    """A YAML mapping of POLICY_KEYS to percentages; raises PolicyError naming the file and key."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: expected a mapping of {', '.join(POLICY_KEYS)}")
    unknown = sorted(set(map(str, data)) - set(POLICY_KEYS))
    if unknown:
        raise PolicyError(f"{path}: unknown key(s) {unknown}; known: {', '.join(POLICY_KEYS)}")
    return {str(k): fraction(v, f"{path}: {k}") for k, v in data.items()}


def load_side(paths: list[Path]) -> tuple[Results, Path]:
    """One side of the comparison: the runs of every file (repeats may be benched one file at a
    time, interleaved with the other side's, so machine noise falls on both sides alike)."""
    if not paths:
        raise ResultsError("no results files given")
    found = [(path, load(path)) for path in paths]
    for path, results in found:
        if not results.runs:
            raise ResultsError(f"{path}: the results have no runs")
    first_path, first = found[0]
    for path, results in found[1:]:
        _same_target(first_path, first, path, results)
    merged = first.model_copy(update={"runs": [run for _, results in found for run in results.runs]})
    return merged, first_path


def _same_target(a_path: Path, a: Results, b_path: Path, b: Results) -> None:
    for field in ("deployment", "protocol", "stream"):
        if getattr(a.target, field) != getattr(b.target, field):
            raise ResultsError(
                f"the results measure different {field}s ({getattr(a.target, field)!r} in {a_path}, "
                f"{getattr(b.target, field)!r} in {b_path}): compare like with like"
            )


def load_pair(baseline: list[Path], current: list[Path]) -> tuple[Results, Results]:
    """Both sides, or ResultsError when a file is unusable or they measure different things."""
    (base, base_path), (cur, cur_path) = load_side(baseline), load_side(current)
    _same_target(base_path, base, cur_path, cur)
    bases = {r.cost.basis.split(" ")[0] for r in base.runs + cur.runs if r.cost is not None}
    if len(bases) > 1:
        raise ResultsError(f"the two sides price cost on different bases ({sorted(bases)}): rerun both the same way")
    return base, cur


def cost_per_1k(runs: list[Run]) -> Decimal | None:
    """Total cost / total successful requests over every run, per 1,000 (None: no run priced)."""
    priced = [r for r in runs if r.cost is not None]
    if not priced or len(priced) != len(runs):
        return None
    served = sum(r.ok for r in priced)
    total = sum((r.cost.total_usd for r in priced if r.cost is not None), Decimal(0))
    return quantize(total * 1000 / served) if served else None


def _series(runs: list[Run], block: str) -> list[float]:
    values = [getattr(r, block) for r in runs if r.ok > 0]
    return [v.p99 for v in values if v is not None]


def compare(base: Results, cur: Results, policy: Policy, seed: int = 0) -> list[Finding]:
    rng = random.Random(seed)
    cost = cost_check("cost per 1k requests", cost_per_1k(base.runs), cost_per_1k(cur.runs), policy.max_cost_increase)
    findings = [cost]
    for block, name in (("latency_ms", "latency p99"), ("ttft_ms", "TTFT p99"), ("tpot_ms", "TPOT p99")):
        b, c = _series(base.runs, block), _series(cur.runs, block)
        if b or c or block == "latency_ms":
            findings.append(latency_check(name, b, c, policy.max_p99_increase, rng))
    errors = sum(r.requests - r.ok for r in cur.runs)
    findings.append(error_rate_check(errors, sum(r.requests for r in cur.runs), policy.max_error_rate))
    return findings
