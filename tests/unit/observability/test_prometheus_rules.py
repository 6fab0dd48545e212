"""`costwarden export prometheus-rules`: promtool accepts the rules and their unit tests pass (series
crossing each alert's threshold, and series beside them that must not); the copy under deploy/ is
what the command prints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.observability.rules import RuleOptions, rule_groups, rules_yaml
from tests.conftest import need

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    need(shutil.which("promtool") is not None, "promtool (scripts/test installs it: scripts/setup-debian-tool)")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_committed_rules_are_what_the_command_prints() -> None:
    result = CliRunner().invoke(app, ["export", "prometheus-rules"])
    assert result.exit_code == 0
    assert result.stdout == (DEPLOY / "costwarden-rules.yml").read_text() == rules_yaml()


def test_promtool_checks_the_rules_and_passes_their_unit_tests(tmp_path: Path) -> None:
    (tmp_path / "costwarden-rules.yml").write_text(rules_yaml())
    shutil.copy(DEPLOY / "costwarden-rules.test.yml", tmp_path)
    checked = promtool("check", "rules", "costwarden-rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "costwarden-rules.test.yml", cwd=tmp_path)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_the_unit_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    # The same tests against rules with a looser error ratio: the error alert must no longer fire.
    (tmp_path / "costwarden-rules.yml").write_text(rules_yaml(RuleOptions(error_ratio=0.2)))
    shutil.copy(DEPLOY / "costwarden-rules.test.yml", tmp_path)
    tested = promtool("test", "rules", "costwarden-rules.test.yml", cwd=tmp_path)
    assert tested.returncode != 0 and "CostwardenGatewayErrorRatioHigh" in tested.stdout + tested.stderr


def test_every_alert_has_a_severity_and_a_runbook_link_into_the_runbooks_doc() -> None:
    runbooks = (DEPLOY.parents[1] / "docs" / "runbooks.md").read_text()
    anchors = {line[3:].strip().lower().replace(" ", "-") for line in runbooks.splitlines() if line.startswith("## ")}
    alerts = [rule for group in rule_groups()["groups"] for rule in group["rules"] if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "CostwardenBudgetBurnRateCritical",
        "CostwardenCostSpike",
        "CostwardenGatewayErrorRatioHigh",
        "CostwardenLedgerLagging",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning"}
        base, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert base == "docs/runbooks.md" and anchor in anchors, alert["alert"]


def test_options_reach_the_rules(tmp_path: Path) -> None:
    target = tmp_path / "rules.yml"
    args = ["export", "prometheus-rules", "-o", str(target), "--error-ratio", "0.25", "--runbook-base", "https://x/rb"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0
    rules = yaml.safe_load(target.read_text())["groups"][1]["rules"]
    errors = next(r for r in rules if r["alert"] == "CostwardenGatewayErrorRatioHigh")
    assert "> 0.25" in errors["expr"] and errors["annotations"]["runbook_url"] == "https://x/rb#gateway-errors"
    bad = CliRunner().invoke(app, ["export", "prometheus-rules", "--error-ratio", "2"])
    assert bad.exit_code == 2


def test_the_two_worker_tests_fail_when_a_shared_gauge_is_summed(tmp_path: Path) -> None:
    # `server.workers: 2` repeats the budget gauges once per worker: summing them doubles the burn rate.
    summed = rules_yaml().replace("max by (budget, scope, window, tz)", "sum by (budget, scope, window, tz)")
    assert summed != rules_yaml()
    (tmp_path / "costwarden-rules.yml").write_text(summed)
    shutil.copy(DEPLOY / "costwarden-rules.test.yml", tmp_path)
    tested = promtool("test", "rules", "costwarden-rules.test.yml", cwd=tmp_path)
    out = tested.stdout + tested.stderr
    assert tested.returncode != 0 and 'budget="split"' in out and "8.64E+01" in out, out
