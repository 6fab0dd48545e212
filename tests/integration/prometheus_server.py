"""A real Prometheus (Debian's `prometheus`) on loopback, scraping gateways, with costwarden's rules."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import need
from tests.integration.procs import Proc, free_port, wait_until


class Prometheus(Proc):
    def __init__(self, tmp: Path, targets: list[str], rules: str) -> None:
        binary = shutil.which("prometheus")
        need(binary is not None, "prometheus (apt-get install prometheus; scripts/test does it)")
        assert binary is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "rules.yml").write_text(rules)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp / "rules.yml")],
            "scrape_configs": [{"job_name": "costwarden", "static_configs": [{"targets": targets}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        super().__init__(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            tmp / "prometheus.log",
            cwd=tmp,
        )

    def start(self) -> None:
        super().start()
        wait_until(lambda: _ok(f"{self.url}/-/ready"), 60, "Prometheus", self.proc)

    def query(self, expr: str) -> dict[str, Any]:
        """The API's whole answer (status, data or error), for any expression."""
        answer: dict[str, Any] = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30).json()
        return answer

    def vector(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
