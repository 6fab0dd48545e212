"""The gateway config the integration tests use, written from Python values."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

KEYS = {
    "search": "cw_search_0123456789abcdefSEARCH",
    "ads": "cw_ads_0123456789abcdefADSADSAD",
    "research": "cw_research_0123456789abcdefRSRCH",
}
ADMIN_TOKEN = "admin-token-for-tests-0123456789"
CHAT_PRICES = {"input_per_1m": Decimal("0.50"), "output_per_1m": Decimal("1.50"), "per_request": Decimal("0.0001")}
EMBED_PRICES = {"input_per_1m": Decimal("0.02")}
IRIS_PRICES = {"per_item": Decimal("0.00002")}
PROXY_PRICES = {"per_request": Decimal("0.00001")}


@dataclass(frozen=True)
class Upstreams:
    text: str
    iris: str | None = None
    dead: str = "http://127.0.0.1:9"  # discard port: nothing listens there


def _prices(p: dict[str, Decimal]) -> dict[str, str]:
    return {k: str(v) for k, v in p.items()}


def config_dict(
    up: Upstreams,
    tmp: Path,
    ledger: str | None = None,
    storage: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    **server: Any,
) -> dict[str, Any]:
    deployments: list[dict[str, Any]] = [
        {
            "name": "chat",
            "protocol": "openai",
            "upstream": up.text,
            "model": "markov-small",
            "pricing": _prices(CHAT_PRICES),
        },
        {
            "name": "embed",
            "protocol": "openai",
            "upstream": up.text,
            "model": "markov-small",
            "pricing": _prices(EMBED_PRICES),
        },
        {
            "name": "failing",
            "protocol": "openai",
            "upstream": up.text,
            "model": "error-500",
            "pricing": _prices(CHAT_PRICES),
        },
        {
            "name": "slow",
            "protocol": "openai",
            "upstream": up.text,
            "model": "slow-3000",
            "timeouts": {"connect": 1, "read": 0.5},
            "pricing": _prices(CHAT_PRICES),
        },
        {"name": "down", "protocol": "openai", "upstream": up.dead, "pricing": _prices(CHAT_PRICES)},
        {"name": "textproxy", "protocol": "http", "upstream": up.text, "pricing": _prices(PROXY_PRICES)},
    ]
    if up.iris is not None:
        deployments.append({"name": "iris", "protocol": "v2", "upstream": up.iris, "pricing": _prices(IRIS_PRICES)})
    return {
        "server": {"host": "127.0.0.1", "admin_token": ADMIN_TOKEN, "max_body_bytes": 65536, **server},
        "storage": {
            "ledger": ledger or f"sqlite:///{tmp / 'ledger.db'}",
            "spool_dir": str(tmp / "spool"),
            "flush_interval_ms": 100,
            "key_refresh_seconds": 0.5,
            **(storage or {}),
        },
        "environments": ["prod", "dev"],
        "teams": [
            {"name": "search", "projects": ["ranking", "qa"]},
            {"name": "ads", "projects": ["ctr"]},
            {"name": "research", "projects": ["lab"]},
        ],
        "deployments": deployments,
        "keys": [
            {
                "id": "search",
                "key": KEYS["search"],
                "team": "search",
                "project": "ranking",
                "environment": "prod",
                "allow_client_tags": True,
                "tags": {"tier": "gold"},
            },
            {"id": "ads", "key": KEYS["ads"], "team": "ads", "project": "ctr", "environment": "prod"},
            {
                "id": "research",
                "key": KEYS["research"],
                "team": "research",
                "project": "lab",
                "environment": "dev",
                "deployments": ["chat", "iris"] if up.iris else ["chat"],
            },
        ],
        **(extra or {}),  # top-level sections: governance, state, alerts
    }


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
