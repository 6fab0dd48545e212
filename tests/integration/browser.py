"""Headless Chromium from Debian (`chromium`, `chromium-driver`) driven by selenium; nothing is
downloaded (selenium is given the driver's path, so its driver manager never runs)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import need

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@contextmanager
def chromium(downloads: Path) -> Iterator[WebDriver]:
    found = Path(CHROMIUM).exists() and Path(DRIVER).exists()
    need(found, "headless Chromium (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    options.add_argument(f"--user-data-dir={downloads / 'profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, script: str, timeout: float = 20) -> object:
    """Wait until a JavaScript expression is truthy in the page; its value."""
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(f"return {script}"))
