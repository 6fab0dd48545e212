"""Run the real `costwarden bench | check | hardware` commands against real servers, for the tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.integration.procs import VENV_BIN, Gateway, free_port
from tests.integration.setup_config import KEYS, Upstreams, config_dict, write_config

ITEM_PRICE = "0.00002"


def costwarden(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [str(VENV_BIN / "costwarden"), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def bench(gateway: Gateway, deployment: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Bench a deployment through the gateway (closed loop unless args say otherwise); exit 0 asserted."""
    done = costwarden(
        "bench", gateway.url, "-d", deployment, "--config", gateway.config_path, "--api-key", KEYS["search"],
        "-o", out, *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def start_gateway(tmp: Path, text_url: str, ensembles_url: str, clf_model: str, name: str) -> Gateway:
    """A gateway with `small`, `large` (V2, per item) and `clf` (V2, served by `clf_model`) deployments."""
    folder = tmp / name
    folder.mkdir()
    data: dict[str, Any] = config_dict(Upstreams(text=text_url), folder)
    for dep, model in (("small", "small"), ("large", "large"), ("clf", clf_model)):
        entry = {"name": dep, "protocol": "v2", "upstream": ensembles_url, "model": model}
        data["deployments"].append({**entry, "pricing": {"per_item": ITEM_PRICE}})
    data["hardware"] = [
        {"name": "cpu-fast", "vcpus": 8, "memory_gib": 16, "hourly_usd": "1.00"},
        {"name": "cpu-slow", "vcpus": 2, "memory_gib": 4, "hourly_usd": "0.10"},
    ]
    gateway = Gateway(write_config(folder / "costwarden.yaml", data), free_port(), folder, data["storage"]["ledger"])
    gateway.start()
    return gateway
