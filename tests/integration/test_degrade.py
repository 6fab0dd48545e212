"""Closed loop, end to end: a `degrade` budget, driven by the official openai SDK through real
gateways to two real upstreams (the bundled text model on two ports, `markov-large` as the
original and `markov-small` as its cheaper variant).

Traffic pushes the budget past its threshold; requests move to the variant (streamed and not);
exempt teams and pinning keys keep the original; the switch is an alert and a metric; the savings
in `costwarden report --savings` equal the test's own sum from the usage the SDK received; and the
budget recovers once its rolling window forgets the spend and the hold passes. A budget with two
levels walks the deployment's ordered variants down and back up. With two replicas
sharing Redis, both switch together. A variant whose upstream is down falls back to the original.
The single-gateway tests run on both server engines (`engine`); the replicas test on the default one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from tests.conftest import drop_costwarden_tables
from tests.integration import ledger
from tests.integration.procs import VENV_BIN, Gateway, TextModel, free_port, wait_until
from tests.integration.redis_server import PrivateRedis
from tests.integration.setup_config import ADMIN_TOKEN, KEYS, Upstreams, config_dict, write_config

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MILLION = Decimal(1_000_000)
# Prices chosen so each request's cost is exact to the nano-dollar (no rounding to reason about).
ORIGINAL = {"input_per_1m": Decimal(1000), "output_per_1m": Decimal(2000)}
VARIANT = {"input_per_1m": Decimal(100), "output_per_1m": Decimal(200)}
LIMIT = Decimal("0.2")
WINDOW_S = 8


@pytest.fixture
def variant_model(tmp_path: Path) -> Iterator[TextModel]:
    """A second text model process: the cheaper variant's own upstream."""
    model = TextModel(tmp_path)
    model.start()
    yield model
    model.stop()


@pytest.fixture(params=["asgi", "fast"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Served:
    request_id: str
    model: str
    variant: str | None
    prompt_tokens: int
    completion_tokens: int

    def cost(self, prices: dict[str, Decimal]) -> Decimal:
        tokens = self.prompt_tokens * prices["input_per_1m"] + self.completion_tokens * prices["output_per_1m"]
        return tokens / MILLION


def gpt(original_url: str, variant_url: str) -> dict[str, Any]:
    return {
        "name": "gpt",
        "protocol": "openai",
        "upstream": original_url,
        "model": "markov-large",
        "pricing": {k: str(v) for k, v in ORIGINAL.items()},
        "variants": [
            {"name": "mini", "upstream": variant_url, "model": "markov-small",
             "pricing": {k: str(v) for k, v in VARIANT.items()}},
        ],
    }  # fmt: skip


def governance(hold_seconds: float = 1.0) -> dict[str, Any]:
    return {
        "evaluate_every_seconds": 0.25,
        "spikes": {"enabled": False},
        "budgets": [
            {
                "id": "all-rolling",
                "window": "rolling",
                "rolling_seconds": WINDOW_S,
                "limit_usd": str(LIMIT),
                "action": "degrade",
                "degrade": {
                    "at": "0.5",
                    "recover_below": "0.3",
                    "hold_seconds": hold_seconds,
                    "exempt_teams": ["ads"],
                    "pin_keys": ["search"],
                },
            }
        ],
    }


def start_gateway(
    tmp_path: Path,
    textmodel: TextModel,
    variant_url: str,
    name: str,
    ledger_url: str | None = None,
    engine: str = "asgi",
    more_variants: tuple[dict[str, Any], ...] = (),
    **extra: Any,
) -> Gateway:
    admin_port = free_port() if engine == "fast" else None
    server: dict[str, Any] = {"engine": "fast", "admin_port": admin_port} if admin_port else {"engine": "asgi"}
    spool = {"spool_dir": str(tmp_path / name)}
    data = config_dict(Upstreams(text=textmodel.url), tmp_path, ledger_url, spool, **server)
    deployment = gpt(textmodel.url, variant_url)
    deployment["variants"].extend(more_variants)
    data["deployments"].append(deployment)
    data["keys"][2]["deployments"] = ["chat", "gpt"]  # research may use gpt (and may not pin)
    data["governance"] = governance()
    data.update(extra)
    config = write_config(tmp_path / f"{name}.yaml", data)
    gateway = Gateway(config, free_port(), tmp_path, data["storage"]["ledger"], admin_port)
    gateway.start()
    return gateway


def chat(gateway: Gateway, key: str = "search", stream: bool = False, pin: bool = False) -> Served:
    """One chat completion through the official SDK, streamed or not, with its gateway headers."""
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=KEYS[key], max_retries=0)
    headers = {"X-Costwarden-Variant": "pin"} if pin else {}
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "the quick brown fox"}]
    options: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    raw = client.chat.completions.with_raw_response.create(
        model="gpt", messages=messages, max_tokens=8, extra_headers=headers, **options
    )
    parsed = raw.parse()
    if isinstance(parsed, ChatCompletion):
        usage, model = parsed.usage, parsed.model
    else:
        chunks = list(parsed)
        usage, model = chunks[-1].usage, chunks[0].model
    assert usage is not None
    return Served(
        raw.headers["x-costwarden-request-id"],
        model,
        raw.headers.get("x-costwarden-variant"),
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def metric(gateway: Gateway, series: str) -> float | None:
    """The value of one series (`name{labels}` as exposed), None when it is not exposed."""
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


def savings_report(gateway: Gateway) -> dict[str, Any]:
    out = subprocess.run(
        [str(VENV_BIN / "costwarden"), "report", "--savings", "--since", "1h", "--format", "json",
         "--config", str(gateway.config_path)],
        capture_output=True, check=True, timeout=60, cwd=gateway.config_path.parent,
    )  # fmt: skip
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_degrade_closes_the_loop_with_the_openai_sdk(
    tmp_path: Path, textmodel: TextModel, variant_model: TextModel, engine: str
) -> None:
    gateway = start_gateway(tmp_path, textmodel, variant_model.url, "one", engine=engine)
    try:
        served: list[Served] = []
        # Traffic on the original until the budget passes 50 % and the loop degrades it.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            request = chat(gateway)
            served.append(request)
            if request.variant is not None:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the budget never degraded")
        assert served[0].variant is None and served[0].model == "markov-large"
        assert served[-1].variant == "mini" and served[-1].model == "markov-small"
        for stream in (False, True, False, True):
            request = chat(gateway, stream=stream)
            assert (request.variant, request.model) == ("mini", "markov-small"), stream
            served.append(request)
        # An exempt team and a key allowed to pin keep the original; a key not allowed is refused.
        exempt = chat(gateway, key="ads")
        pinned = chat(gateway, pin=True)
        assert (exempt.variant, exempt.model) == (None, "markov-large")
        assert (pinned.variant, pinned.model) == (None, "markov-large")
        refused = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEYS['research']}", "X-Costwarden-Variant": "pin"},
            json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "variant_pin_not_allowed"
        # The switch is an alert and a metric.
        alerts = httpx.get(f"{gateway.admin_url}/admin/v1/alerts", headers=ADMIN).json()
        degraded = [a for a in alerts if a["kind"] == "variant_degraded"]
        assert degraded and degraded[0]["labels"] == {"budget": "all-rolling"}
        assert metric(gateway, 'costwarden_variant_degraded{budget="all-rolling"}') == 1.0
        assert metric(gateway, 'costwarden_variant_switches_total{budget="all-rolling",to="degraded"}') == 1.0

        # The ledger: the variant served and the original's cost; the report's savings equal ours.
        records = ledger.by_id(ledger.wait_for(gateway.ledger, len(served) + 3))
        moved = [s for s in served if s.variant == "mini"]
        for s in moved:
            record = records[s.request_id]
            assert (record.variant, record.cost_usd, record.original_cost_usd) == (
                "mini", s.cost(VARIANT), s.cost(ORIGINAL)
            )  # fmt: skip
        for s in (*[s for s in served if s.variant is None], exempt, pinned):
            assert (records[s.request_id].variant, records[s.request_id].original_cost_usd) == (None, None)
        expected = sum(s.cost(ORIGINAL) - s.cost(VARIANT) for s in moved)
        report = savings_report(gateway)
        assert Decimal(report["total"]["saved_usd"]) == expected > 0
        assert report["total"]["requests"] == len(moved)
        assert [(r["team"], r["action"], Decimal(r["saved_usd"])) for r in report["rows"]] == [
            ("search", "degrade", expected)
        ]
        api = httpx.get(f"{gateway.admin_url}/admin/v1/spend/savings", params={"since": "1h"}, headers=ADMIN).json()
        assert api == report

        # Recovery: the rolling window forgets the original's spend, utilisation falls below 30 %,
        # and after the hold the budget is back; the alert resolves and the original serves again.
        wait_until(lambda: metric(gateway, 'costwarden_variant_degraded{budget="all-rolling"}') is None, WINDOW_S + 10,
              "recovery")  # fmt: skip
        back = chat(gateway)
        assert (back.variant, back.model) == (None, "markov-large")
        alerts = httpx.get(f"{gateway.admin_url}/admin/v1/alerts", headers=ADMIN).json()
        [episode] = [a for a in alerts if a["kind"] == "variant_degraded"]
        assert episode["resolved_at"] is not None
        assert metric(gateway, 'costwarden_variant_switches_total{budget="all-rolling",to="recovered"}') == 1.0
    finally:
        gateway.stop()


def test_a_variant_whose_upstream_is_down_falls_back_to_the_original(
    tmp_path: Path, textmodel: TextModel, engine: str
) -> None:
    gateway = start_gateway(tmp_path, textmodel, "http://127.0.0.1:9", "down", engine=engine)  # nothing listens on 9
    try:
        sent = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            request = chat(gateway)
            sent += 1
            if request.variant is not None:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the budget never degraded")
        # Degraded, but its variant refuses connections: the original served, and says so.
        assert (request.variant, request.model) == ("original", "markov-large")
        record = ledger.by_id(ledger.wait_for(gateway.ledger, sent))[request.request_id]
        assert record.status == 200 and record.variant is None
        assert record.original_cost_usd == record.cost_usd == request.cost(ORIGINAL)
        assert metric(gateway, 'costwarden_variant_fallbacks_total{deployment="gpt",variant="mini"}') == 1.0
    finally:
        gateway.stop()


def test_two_replicas_sharing_redis_switch_together(
    tmp_path: Path, textmodel: TextModel, variant_model: TextModel, postgres_url: str, redis: PrivateRedis
) -> None:
    asyncio.run(drop_costwarden_tables(postgres_url))
    first = start_gateway(tmp_path, textmodel, variant_model.url, "a", postgres_url, state=redis.url)
    second = start_gateway(tmp_path, textmodel, variant_model.url, "b", postgres_url, state=redis.url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # all the spend goes through the first replica
            request = chat(first)
            if request.variant is not None:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the budget never degraded")
        # The second replica served nothing, yet it moves requests too, within one tick.
        wait_until(lambda: metric(second, 'costwarden_variant_degraded{budget="all-rolling"}') == 1.0, 3, "replica b")
        other = chat(second)
        assert (other.variant, other.model) == ("mini", "markov-small")
        wait_until(lambda: metric(first, 'costwarden_variant_degraded{budget="all-rolling"}') is None, WINDOW_S + 10,
              "recovery on a")  # fmt: skip
        recovered = 'costwarden_variant_degraded{budget="all-rolling"}'
        wait_until(lambda: metric(second, recovered) is None, 3, "recovery on b")
        assert chat(second).variant is None
    finally:
        first.stop()
        second.stop()


def test_levels_walk_the_ordered_variants_and_back(
    tmp_path: Path, textmodel: TextModel, variant_model: TextModel
) -> None:
    micro = {"name": "micro", "upstream": variant_model.url, "model": "markov-small",
             "pricing": {k: str(v) for k, v in VARIANT.items()}}  # fmt: skip
    levels = governance()
    levels["budgets"][0]["degrade"] |= {"at": ["0.5", "0.8"], "recover_below": ["0.3", "0.6"]}
    gateway = start_gateway(tmp_path, textmodel, variant_model.url, "levels", more_variants=(micro,), governance=levels)
    try:
        served: list[Served] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # on the original, then the first variant, then the second
            request = chat(gateway, stream=len(served) % 2 == 1)
            served.append(request)
            if request.variant == "micro":
                break
            # On the original a request is ~10 % of the limit, so several between two governor ticks (0.25 s) could
            # carry utilisation past both thresholds at once (straight to the second level, as designed): one a tick
            # there. On the first variant (a tenth of the price) as fast as it answers.
            time.sleep(0.35 if request.variant is None else 0.02)
        else:
            pytest.fail(f"the budget never reached its second level: {[s.variant for s in served][-5:]}")
        order = [s.variant for s in served]
        assert order[0] is None and "mini" in order, order
        assert order.index("mini") < order.index("micro") and all(v is None for v in order[: order.index("mini")])
        assert metric(gateway, 'costwarden_variant_degraded{budget="all-rolling"}') == 2.0
        # The ledger: each moved request records the variant that served and the original's cost.
        records = ledger.by_id(ledger.wait_for(gateway.ledger, len(served)))
        for s in served:
            assert (records[s.request_id].variant, records[s.request_id].original_cost_usd) == (
                s.variant, None if s.variant is None else s.cost(ORIGINAL)
            )  # fmt: skip
        # Back up the list as the rolling window forgets the spend: micro -> mini -> the original.
        wait_until(lambda: metric(gateway, 'costwarden_variant_degraded{budget="all-rolling"}') is None, WINDOW_S + 10,
              "recovery")  # fmt: skip
        assert chat(gateway).variant is None
        for to in ("degraded", "deeper", "shallower", "recovered"):
            assert metric(gateway, f'costwarden_variant_switches_total{{budget="all-rolling",to="{to}"}}') == 1.0, to
        alerts = httpx.get(f"{gateway.admin_url}/admin/v1/alerts", headers=ADMIN).json()
        [episode] = [a for a in alerts if a["kind"] == "variant_degraded"]  # one episode across both levels
        assert episode["resolved_at"] is not None
    finally:
        gateway.stop()
