"""`costwarden export grafana-dashboard`: the committed JSON is what the command prints; the
datasource, team and deployment variables exist and every query uses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.observability.grafana import build_dashboard, dashboard_json, panel_queries

COMMITTED = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "costwarden-dashboard.json"


def test_the_committed_dashboard_is_what_the_command_prints() -> None:
    result = CliRunner().invoke(app, ["export", "grafana-dashboard"])
    assert result.exit_code == 0
    assert result.stdout == COMMITTED.read_text() == dashboard_json()


def panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in data["panels"] if p["type"] != "row"]


def test_variables_exist_and_every_panel_queries_the_chosen_datasource() -> None:
    data = json.loads(COMMITTED.read_text())
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("team", "deployment"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["includeAll"] and variable["multi"]
        assert variable["query"] == f"label_values(costwarden_requests_total, {name})"
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(data):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
    queries = panel_queries(data)
    assert all("$team" in expr for title, expr in queries if title.startswith("Spend"))
    titles = {p["title"] for p in panels(data)}
    assert {"Spend rate by team", "Spend rate by deployment", "Cost per 1k requests", "Budget utilisation",
            "Budget burn rate", "Firing alerts", "Gateway overhead", "Time to first token (streams)"} <= titles
    rows = [p["title"] for p in data["panels"] if p["type"] == "row"]
    assert rows == ["Spend", "Unit costs", "Latency and errors", "Budgets", "Alerts and ledger"]


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in build_dashboard()["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
        assert pos["x"] + pos["w"] <= 24
