"""`costwarden check`: the CI gate. Compare current bench results with a baseline; exit 0 pass,
1 regression, 2 usage or input error (never a traceback)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from costwarden.bench.gate import POLICY_KEYS, Policy, PolicyError, compare, fraction, load_pair, read_policy
from costwarden.bench.gate_report import as_json, junit, markdown
from costwarden.bench.results import ResultsError
from costwarden.cli.common import console, errors
from costwarden.domain.gate import Verdict, overall


def check(
    baseline: list[Path] = typer.Option(..., help="Results JSON of the base (repeat the option for several)."),
    current: list[Path] = typer.Option(..., help="Results JSON of the change (repeatable)."),
    max_cost_increase: str | None = typer.Option(None, help="e.g. 5% (default 5%)."),
    max_p99_increase: str | None = typer.Option(None, help="e.g. 10% (default 10%); also TTFT/TPOT p99."),
    max_error_rate: str | None = typer.Option(None, help="e.g. 0.5% (default 0.5%)."),
    policy: Path | None = typer.Option(None, help=f"YAML with any of: {', '.join(POLICY_KEYS)}; options win."),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Write the markdown summary here."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the findings as JSON here."),
    junit_out: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here."),
    seed: int = typer.Option(0, help="Seed of the bootstrap (the verdict is reproducible)."),
) -> None:
    """Fail (exit 1) when the current results cost more or are slower than the baseline allows."""
    try:
        thresholds = read_policy(policy) if policy is not None else {}
        for key, value in (
            ("max_cost_increase", max_cost_increase),
            ("max_p99_increase", max_p99_increase),
            ("max_error_rate", max_error_rate),
        ):
            if value is not None:
                thresholds[key] = fraction(value, f"--{key.replace('_', '-')}")
        rules = replace(Policy(), **thresholds)
        base, cur = load_pair(baseline, current)
    except (PolicyError, ResultsError) as exc:
        errors.print(f"[bold red]check:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    findings = compare(base, cur, rules, seed)
    base_names, cur_names = ", ".join(map(str, baseline)), ", ".join(map(str, current))
    text = markdown(findings, base_names, cur_names)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if markdown_out is not None:
        markdown_out.write_text(text, encoding="utf-8")
    if json_out is not None:
        json_out.write_bytes(as_json(findings, base_names, cur_names))
    if junit_out is not None:
        junit_out.write_bytes(junit(findings))
    raise typer.Exit(1 if overall(findings) is Verdict.FAIL else 0)
