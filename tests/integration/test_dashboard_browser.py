"""The dashboard and /admin/docs in a real browser (headless Chromium) against a gateway with real
traffic: sign in, every page renders, the figures shown equal the ledger's, a wrong token is
refused; a screenshot of each page is kept (pytest's tmp dir; COSTWARDEN_SCREENSHOTS=DIR copies them)."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.integration import ledger
from tests.integration.browser import chromium, wait_for
from tests.integration.conftest import GatewayFactory
from tests.integration.dashboard_traffic import auth, dashboard_gateway, ledger_spend
from tests.integration.procs import Gateway, TextModel
from tests.integration.setup_config import ADMIN_TOKEN, KEYS, Upstreams, config_dict

pytestmark = pytest.mark.integration


def shoot(driver: WebDriver, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    copy_to = os.environ.get("COSTWARDEN_SCREENSHOTS")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(copy_to) / path.name)


def sign_in(driver: WebDriver, gateway: Gateway, token: str) -> None:
    driver.get(gateway.url + "/dashboard")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()


def cells(driver: WebDriver, table: str, key: str) -> list[str]:
    return [td.text for td in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody td[data-key='{key}']")]


def open_page(driver: WebDriver, page: str) -> None:
    driver.execute_script(f"location.hash = '#{page}'")
    wait_for(driver, f"document.body.dataset.ready === '{page}'")
    assert driver.find_element(By.ID, "status").text == ""


def requests_page(driver: WebDriver, gateway: Gateway, tmp_path: Path) -> None:
    """All the requests, then those of one team through the filter form."""
    open_page(driver, "requests")
    assert len(cells(driver, "requests-table", "request_id")) == 15
    driver.find_element(By.CSS_SELECTOR, "#request-filters input[name=team]").send_keys("ads")
    driver.find_element(By.CSS_SELECTOR, "#request-filters button").click()
    shown_teams = "[...document.querySelectorAll('#requests-table td[data-key=team]')].map(t => t.textContent)"
    wait_for(driver, f"{shown_teams}.every(t => t === 'ads')")
    ads = sum(1 for r in ledger.records(gateway.ledger) if r.team == "ads")
    assert len(cells(driver, "requests-table", "team")) == ads
    shoot(driver, tmp_path, "dashboard-requests")


def test_dashboard_pages_in_chromium(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = dashboard_gateway(make_gateway)
    with chromium(tmp_path) as driver:
        sign_in(driver, gateway, "not-the-token")
        # the refusal is a new page: wait for it (the form's own empty #error may still be there)
        wait_for(driver, "(document.getElementById('error') || {}).textContent?.includes('not the admin token')")
        shoot(driver, tmp_path, "dashboard-login-refused")

        sign_in(driver, gateway, ADMIN_TOKEN)
        wait_for(driver, "document.body.dataset.ready === 'spend'")
        assert driver.find_element(By.ID, "who").text == "admin"
        cookie = driver.get_cookie("costwarden_session")
        assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert driver.execute_script("return document.cookie") == ""  # HttpOnly: no script can read it
        teams = cells(driver, "spend-table", "team")
        costs = [Decimal(c) for c in cells(driver, "spend-table", "cost_usd")]
        expected = ledger_spend(gateway, "team")
        assert dict(zip(teams[:-1], costs[:-1], strict=True)) == expected and teams[-1] == "total"
        assert costs[-1] == sum(expected.values())
        assert driver.find_elements(By.CSS_SELECTOR, "#spend-chart canvas"), "the stacked chart is drawn"
        deployments = {d or "–" for d in ledger_spend(gateway, "deployment")}
        assert set(cells(driver, "latency-table", "deployment")) == deployments
        shoot(driver, tmp_path, "dashboard-spend")

        open_page(driver, "budgets")
        assert cells(driver, "budget-table", "id") == ["search-daily", "all-monthly"]
        assert Decimal(cells(driver, "budget-table", "spent_usd")[0]) == expected["search"]
        assert len(driver.find_elements(By.CSS_SELECTOR, ".burndown canvas")) == 2
        shoot(driver, tmp_path, "dashboard-budgets")

        open_page(driver, "alerts")
        link = driver.find_element(By.CSS_SELECTOR, "#alerts-active a[href='#budgets/search-daily']")
        assert "team=search" in driver.find_element(By.ID, "alerts-active").text
        shoot(driver, tmp_path, "dashboard-alerts")
        link.click()  # the alert's link opens its budget alone
        wait_for(driver, "document.body.dataset.ready === 'budgets'")
        charts = [e.get_attribute("id") for e in driver.find_elements(By.CSS_SELECTOR, ".burndown")]
        assert charts == ["burndown-search-daily"]

        open_page(driver, "drivers")
        keys, key_costs = cells(driver, "drivers-key_id", "key_id"), cells(driver, "drivers-key_id", "cost_usd")
        shown = dict(zip(keys, key_costs, strict=True))
        assert {k: Decimal(v) for k, v in shown.items()} == ledger_spend(gateway, "key_id")
        shoot(driver, tmp_path, "dashboard-drivers")

        requests_page(driver, gateway, tmp_path)
        open_page(driver, "compute")  # no deployment has `compute:` here: said so, no table
        assert "No deployment has `compute:`" in driver.find_element(By.ID, "compute-empty").text
        assert not driver.find_elements(By.ID, "compute-table")
        shoot(driver, tmp_path, "dashboard-compute-empty")
        driver.find_element(By.ID, "signout").click()
        wait_for(driver, "document.getElementById('login') !== null")
        driver.get(gateway.url + "/dashboard#budgets")
        assert driver.find_elements(By.ID, "login"), "signed out: the login form again"


def test_team_lead_sees_only_their_team_in_chromium(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = dashboard_gateway(make_gateway)
    with chromium(tmp_path) as driver:
        sign_in(driver, gateway, KEYS["ads"])
        wait_for(driver, "document.body.dataset.ready === 'spend'")
        assert driver.find_element(By.ID, "who").text == "team ads (read-only)"
        assert cells(driver, "spend-table", "team") == ["ads", "total"]
        assert Decimal(cells(driver, "spend-table", "cost_usd")[-1]) == ledger_spend(gateway, "team")["ads"]
        for page in ("budgets", "alerts", "drivers", "compute", "requests"):
            open_page(driver, page)
            assert "search" not in driver.find_element(By.ID, "page").text, page
            if page == "compute":
                assert driver.find_elements(By.ID, "compute-admin-only"), "compute allocation is for admins"
        assert set(cells(driver, "requests-table", "team")) == {"ads"}
        shoot(driver, tmp_path, "dashboard-team-requests")


GPU_BOX = {"name": "gpu-box", "vcpus": 8, "memory_gib": 64, "accelerator": "NVIDIA L4", "accelerator_count": 2}
COMPUTE_COLUMNS = ("provisionedCost", "usedCost", "idleCost", "gpuHours", "usedGpuHours", "idleGpuHours")


def test_compute_page_equals_the_admin_allocation(
    make_gateway: GatewayFactory, textmodel: TextModel, tmp_path: Path
) -> None:
    """GPU-hours and idle per deployment: the page's figures are the admin API's allocation for the
    page's own window, to the nano-dollar; used + idle = provisioned."""
    deployments = config_dict(Upstreams(text=textmodel.url), tmp_path)["deployments"]
    for name, replicas in (("chat", 2), ("embed", 1)):
        next(d for d in deployments if d["name"] == name)["compute"] = {"profile": "gpu-box", "replicas": replicas}
    hardware = [{**GPU_BOX, "hourly_usd": "3.6"}]
    gateway = make_gateway(extra={"deployments": deployments, "hardware": hardware})
    with httpx.Client(timeout=30) as client:
        for i in range(6):
            body = {"model": "chat", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 4 + i}
            reply = client.post(
                gateway.url + "/v1/chat/completions", json=body, headers=auth(KEYS[("search", "ads")[i % 2]])
            )
            assert reply.status_code == 200, reply.text
    ledger.wait_for(gateway.ledger, 6)
    with chromium(tmp_path) as driver:
        sign_in(driver, gateway, ADMIN_TOKEN)
        wait_for(driver, "document.body.dataset.ready === 'spend'")
        open_page(driver, "compute")
        window = driver.find_element(By.ID, "compute-window")
        params = {
            "aggregate": "deployment",
            "from": window.get_attribute("data-start"),
            "to": window.get_attribute("data-end"),
        }
        shown = {
            name: dict(zip(COMPUTE_COLUMNS, values, strict=True))
            for name, *values in zip(
                cells(driver, "compute-table", "deployment"),
                *(cells(driver, "compute-table", c) for c in COMPUTE_COLUMNS),
                strict=True,
            )
        }
        shoot(driver, tmp_path, "dashboard-compute")
    admin = httpx.get(gateway.url + "/admin/v1/allocation", params=params, headers=auth(ADMIN_TOKEN), timeout=30).json()
    assert shown == {d["deployment"]: {c: d[c] for c in COMPUTE_COLUMNS} for d in admin["deployments"]}
    assert set(shown) == {"chat", "embed"}
    chat, embed = shown["chat"], shown["embed"]
    assert Decimal(chat["usedCost"]) > 0 and Decimal(embed["usedCost"]) == 0  # only chat had traffic
    for figures in shown.values():  # used + idle = provisioned, in dollars and GPU-hours
        assert Decimal(figures["usedCost"]) + Decimal(figures["idleCost"]) == Decimal(figures["provisionedCost"])
        assert Decimal(figures["usedGpuHours"]) + Decimal(figures["idleGpuHours"]) == Decimal(figures["gpuHours"])
    rows = {r["name"]: r for r in admin["rows"]}  # the deployments' used and idle are the allocation's rows
    assert Decimal(rows["chat"]["usedCost"]) == Decimal(chat["usedCost"])
    assert Decimal(rows["__idle__"]["idleCost"]) == sum(Decimal(f["idleCost"]) for f in shown.values())
    hours = (Decimal(2) + Decimal(1)) * 2 * 86400 / 3600  # 24 h of 2 + 1 replicas of 2 GPUs each
    assert sum(Decimal(f["gpuHours"]) for f in shown.values()) == hours


def test_admin_docs_render_offline_in_chromium(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = make_gateway()
    with chromium(tmp_path) as driver:
        driver.get(gateway.url + "/admin/docs")
        wait_for(driver, "document.querySelectorAll('.opblock').length > 5")
        assert driver.find_elements(By.CSS_SELECTOR, ".btn.authorize"), "Swagger UI's Authorize button"
        assert "/admin/v1/spend" in driver.find_element(By.ID, "swagger-ui").text
        scripts = driver.execute_script("return [...document.scripts].map(s => s.src).filter(Boolean)")
        assert scripts and all(str(s).startswith(gateway.url) for s in scripts)
        shoot(driver, tmp_path, "admin-docs")
