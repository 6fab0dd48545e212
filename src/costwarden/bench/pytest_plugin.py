"""pytest plugin (entry point `pytest11: costwarden`): gate performance tests on cost and latency.

    pytest --costwarden-baseline baselines/ [--costwarden-save results/] [--costwarden-max-p99-increase 10%]

A test takes the `costwarden_gate` fixture, benches (`costwarden_gate.bench(url, deployment, ...)`
or any `Results`), and calls `costwarden_gate.check(results)`: with a baseline
`<baseline dir>/<name>.json` the test fails on a regression, with the markdown summary as the
message; `--costwarden-save DIR` writes the results as `<DIR>/<name>.json` (the next baselines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from costwarden.bench import api
from costwarden.bench.gate import Policy, compare, fraction
from costwarden.bench.gate_report import markdown
from costwarden.bench.results import Results, load, save
from costwarden.domain.gate import Finding, Verdict, overall

_OPTIONS = ("max_cost_increase", "max_p99_increase", "max_error_rate")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("costwarden", "costwarden cost and latency gate")
    group.addoption("--costwarden-baseline", metavar="DIR", default=None, help="folder of baseline results <name>.json")
    group.addoption("--costwarden-save", metavar="DIR", default=None, help="write each test's results here")
    for name in _OPTIONS:
        flag = "--costwarden-" + name.replace("_", "-")
        group.addoption(flag, metavar="PCT", default=None, help=f"{name} (e.g. 5%%); default as `costwarden check`")


@dataclass
class Gate:
    """What the fixture gives a test: bench, then check against the baseline of the same name."""

    name: str
    baseline_dir: Path | None
    save_dir: Path | None
    policy: Policy

    def bench(self, url: str, deployment: str, **kwargs: Any) -> Results:
        """`costwarden.bench.api.bench` (closed loop, generated payloads); see its parameters."""
        return api.bench(url, deployment, **kwargs)

    def check(self, results: Results, name: str | None = None) -> list[Finding]:
        """Save the results if asked; fail the test when they regress from the baseline."""
        key = name or self.name
        if self.save_dir is not None:
            save(results, self.save_dir / f"{key}.json")
        baseline = self.baseline_dir / f"{key}.json" if self.baseline_dir is not None else None
        if baseline is None or not baseline.is_file():
            return []
        findings = compare(load(baseline), results, self.policy)  # one file a side: sequential repeats
        if overall(findings) is Verdict.FAIL:
            pytest.fail(markdown(findings, str(baseline), key), pytrace=False)
        return findings


@pytest.fixture
def costwarden_gate(request: pytest.FixtureRequest) -> Gate:
    config = request.config
    thresholds = {}
    for name in _OPTIONS:
        value = config.getoption("--costwarden-" + name.replace("_", "-"))
        if value is not None:
            thresholds[name] = fraction(value, "--costwarden-" + name.replace("_", "-"))
    baseline, save_dir = config.getoption("--costwarden-baseline"), config.getoption("--costwarden-save")
    return Gate(
        name=re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name),
        baseline_dir=Path(baseline) if baseline else None,
        save_dir=Path(save_dir) if save_dir else None,
        policy=replace(Policy(), **thresholds),
    )
