"""examples/ci: bench.sh serves and benches two checkouts interleaved, the gate passes identical code,
and the GitHub Actions and GitLab CI files call exactly these commands."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import need
from tests.integration.bench_cli import costwarden
from tests.integration.procs import IRIS_MODEL, MLSERVER_BIN, ROOT, VENV_BIN

pytestmark = pytest.mark.integration
CI = ROOT / "examples/ci"


def test_bench_sh_on_two_identical_checkouts_passes_the_gate(tmp_path: Path) -> None:
    need(MLSERVER_BIN.exists() and IRIS_MODEL.exists(), "MLServer with the iris model (run scripts/setup-mlserver)")
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "BENCH_REQUESTS": "20"}
    done = subprocess.run(
        [str(CI / "bench.sh"), str(tmp_path / "results"), str(ROOT), str(ROOT), "2"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    base = sorted((tmp_path / "results").glob("a-*.json"))
    current = sorted((tmp_path / "results").glob("b-*.json"))
    assert len(base) == len(current) == 2
    sides = [a for p in base for a in ("--baseline", p)] + [a for p in current for a in ("--current", p)]
    # The plumbing is what this test holds (bench.sh, both sides, the policy file, JUnit). Twenty requests a
    # run cannot hold a 10 % p99 bound while the rest of the suite loads this 2-core machine, so the latency
    # limit is widened here on the command line (which wins over the policy file); the gate's own noise
    # figures (20 of 20 identical runs pass at 10 %) come from bench/gate_repeat.py, docs/benchmarks.md.
    gate = costwarden(
        "check", *sides, "--policy", CI / "policy.yaml", "--max-p99-increase", "300%", "--junit", tmp_path / "junit.xml"
    )
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "no regression" in gate.stdout and (tmp_path / "junit.xml").is_file()


def test_the_ci_files_bench_both_sides_and_run_the_gate() -> None:
    github = yaml.safe_load((CI / "github-actions.yml").read_text())
    steps = github["jobs"]["cost-gate"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    gitlab = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    script = "\n".join(gitlab["costwarden-cost-gate"]["script"])
    for text in (commands, script):
        assert "examples/ci/bench.sh results" in text
        assert "costwarden check" in text and "--policy" in text and "--junit costwarden-junit.xml" in text
    assert gitlab["costwarden-cost-gate"]["artifacts"]["reports"]["junit"] == "costwarden-junit.xml"
