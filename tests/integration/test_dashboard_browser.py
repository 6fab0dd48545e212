"""The dashboard and /admin/docs in a real browser (headless Chromium) against a gateway with real
traffic: sign in, every page renders, the figures shown equal the ledger's, a wrong token is
refused; a screenshot of each page is kept (pytest's tmp dir; COSTWARDEN_SCREENSHOTS=DIR copies them)."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.integration import ledger
from tests.integration.browser import chromium, wait_for
from tests.integration.conftest import GatewayFactory
from tests.integration.dashboard_traffic import dashboard_gateway, ledger_spend
from tests.integration.procs import Gateway
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

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
        assert "not the admin token" in driver.find_element(By.ID, "error").text
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
        for page in ("budgets", "alerts", "drivers", "requests"):
            open_page(driver, page)
            assert "search" not in driver.find_element(By.ID, "page").text, page
        assert set(cells(driver, "requests-table", "team")) == {"ads"}
        shoot(driver, tmp_path, "dashboard-team-requests")


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
