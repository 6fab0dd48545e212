"""`costwarden bench`, `hardware recommend` and `check` against a real MLServer serving two
scikit-learn ensembles of clearly different cost, through the real gateway."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree as ET

import orjson
import pytest
import yaml

from costwarden.bench.results import load
from costwarden.domain.money import ZERO
from tests.conftest import need
from tests.integration import ledger
from tests.integration.bench_cli import ITEM_PRICE, bench, costwarden, start_gateway
from tests.integration.ensembles import Ensembles
from tests.integration.procs import MLSERVER_BIN, Gateway, TextModel

pytestmark = pytest.mark.integration
REQUESTS = 60


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ensembles]:
    need(MLSERVER_BIN.exists(), "MLServer (run scripts/setup-mlserver)")
    server = Ensembles(tmp_path_factory.mktemp("ensembles"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, ensembles: Ensembles, textmodel: TextModel) -> Iterator[Gateway]:
    started = start_gateway(tmp_path_factory.mktemp("gw"), textmodel.url, ensembles.url, "small", "base")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def measured(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both ensembles benched through the gateway, each on its own hardware profile."""
    out = tmp_path_factory.mktemp("results")
    files = {"small": out / "small.json", "large": out / "large.json"}
    for name, profile in (("small", "cpu-fast"), ("large", "cpu-slow")):
        load = ["--protocol", "v2", "--concurrency", "1", "--requests", str(REQUESTS), "--duration", "120"]
        bench(gateway, name, files[name], *load, "--hardware", profile, "--slo", "p99<=10s")
    return files


def test_bench_measures_both_and_reconciles_with_the_ledger(gateway: Gateway, measured: dict[str, Path]) -> None:
    small, large = load(measured["small"]), load(measured["large"])
    for results in (small, large):
        (run,) = results.runs
        assert (run.requests, run.ok, run.errors, run.items) == (REQUESTS, REQUESTS, {}, REQUESTS)
        assert results.target.via_gateway and results.hardware is not None
        assert run.cost is not None and run.cost.basis == "gateway"
        assert run.cost.per_1k_requests == Decimal(ITEM_PRICE) * 1000  # one item per request
    assert small.runs[0].latency_ms is not None and large.runs[0].latency_ms is not None
    # Clearly different cost: ~20x the CPU per request alone. Other work on this shared machine (the suite
    # runs on two workers) queues both behind it, which has brought the ratio as low as 1.8x.
    assert large.runs[0].latency_ms.p50 > 1.3 * small.runs[0].latency_ms.p50
    records = ledger.wait_for(gateway.ledger, 2 * (REQUESTS + 1))
    for name, results in (("small", small), ("large", large)):
        mine = [r for r in records if r.deployment == name]
        assert len(mine) == REQUESTS + 1  # the probe, then the measured requests
        measured_cost = sum((r.cost_usd for r in mine[1:]), ZERO)
        assert results.runs[0].metered_usd == measured_cost
        assert results.runs[0].cost is not None and results.runs[0].cost.total_usd == measured_cost


def recommend(folder: Path, slo: str, config: Path, plot: Path) -> tuple[int, dict[str, object]]:
    done = costwarden("hardware", "recommend", "--results", folder, "--slo", slo, "--config", config,
                      "--plot", plot, "--format", "json")  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    parsed: dict[str, object] = orjson.loads(done.stdout)
    return done.returncode, parsed


def test_recommend_picks_the_cheap_slow_profile_for_a_loose_slo_and_the_fast_one_for_a_tight_slo(
    gateway: Gateway, measured: dict[str, Path], tmp_path: Path
) -> None:
    small, large = load(measured["small"]), load(measured["large"])
    assert small.runs[0].latency_ms is not None and large.runs[0].latency_ms is not None
    # Price the slow profile at a quarter of the fast one's cost per request at their measured
    # capacities (the user's price in the config wins over the one in the results files).
    slow_hourly = (Decimal("1.00") * Decimal(repr(large.runs[0].throughput_rps))
                   / Decimal(repr(small.runs[0].throughput_rps)) / 4).quantize(Decimal("0.000001"))  # fmt: skip
    config = gateway.config_path.read_text().replace("hourly_usd: '0.10'", f"hourly_usd: '{slow_hourly}'")
    assert config != gateway.config_path.read_text()
    priced = tmp_path / "priced.yaml"
    priced.write_text(config)
    loose_code, loose = recommend(measured["small"].parent, "p99<=10s", priced, tmp_path / "loose.svg")
    assert loose_code == 0
    options = loose["options"]
    assert isinstance(options, list) and [o["profile"] for o in options] == ["cpu-slow", "cpu-fast"]
    assert options[0]["hourly_usd"] == str(slow_hourly) and options[0]["price_source"] == "config"
    # A p50 bound between the two models' medians: only the fast profile's runs meet it.
    bound = math.sqrt(small.runs[0].latency_ms.p50 * large.runs[0].latency_ms.p50)
    tight_code, tight = recommend(measured["small"].parent, f"p50<={bound:.3f}ms", priced, tmp_path / "tight.svg")
    assert tight_code == 0
    tight_options = tight["options"]
    assert isinstance(tight_options, list) and [o["profile"] for o in tight_options] == ["cpu-fast"]
    assert tight["cannot_meet"] == ["large.json: large"]
    svg = ET.parse(tmp_path / "tight.svg").getroot()
    assert svg.tag.endswith("svg") and len([e for e in svg.iter() if e.tag.endswith("circle")]) == 2


def check(base: list[Path], current: list[Path], *args: str | Path) -> tuple[int, str]:
    sides = [a for p in base for a in ("--baseline", p)] + [a for p in current for a in ("--current", p)]
    done = costwarden("check", *sides, *args)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, done.stdout


def interleaved(base: Gateway, current: Gateway, folder: Path, pairs: int) -> tuple[list[Path], list[Path]]:
    """Bench base, current, base, current...: one run a file, so the machine's noise hits both sides."""
    load_args = ["--protocol", "v2", "--concurrency", "1", "--requests", "30", "--duration", "120"]
    sides: tuple[list[Path], list[Path]] = ([], [])
    for k in range(pairs):
        for side, gateway, name in ((sides[0], base, "base"), (sides[1], current, "current")):
            side.append(folder / f"{name}{k}.json")
            bench(gateway, "clf", side[-1], *load_args)
    return sides


def test_the_gate_passes_identical_runs_and_fails_a_slower_model_version(
    gateway: Gateway, ensembles: Ensembles, textmodel: TextModel, tmp_path: Path
) -> None:
    (tmp_path / "same").mkdir()
    # The same gateway against itself: only the machine's noise differs. With the suite on two workers that noise
    # has reached +147% in p99 (bootstrap CI of the ratio [1.5, 3.3]), so the limit here is wide; the slower
    # version below still has to fail the default +10%. Three runs a side, as for the slower version: fewer runs
    # widen the interval, so they can only make a false failure rarer.
    same = interleaved(gateway, gateway, tmp_path / "same", 3)
    code, text = check(*same, "--junit", tmp_path / "same.xml", "--max-p99-increase", "300%")
    assert code == 0, text
    (tmp_path / "pr-results").mkdir()
    slower = start_gateway(tmp_path, textmodel.url, ensembles.url, "large", "pr")  # clf -> the large ensemble
    try:
        # Five runs a side: with three, one run of the fresh-clone suite (three workers on two cores) saw the
        # large ensemble's p99 interval reach under +10 % and the gate pass it; more runs narrow the interval.
        base, pr = interleaved(gateway, slower, tmp_path / "pr-results", 5)
    finally:
        slower.stop()
    code, text = check(base, pr, "--junit", tmp_path / "pr.xml", "--markdown", tmp_path / "pr.md")
    assert code == 1 and "regression" in text, text
    suite = ET.parse(tmp_path / "pr.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["latency p99"]
    assert "❌ fail" in (tmp_path / "pr.md").read_text()


def test_the_gate_fails_a_token_hungrier_version_on_cost(gateway: Gateway, tmp_path: Path) -> None:
    args = ["--concurrency", "1", "--requests", "20", "--duration", "60", "--repeat", "3"]
    bench(gateway, "chat", tmp_path / "base.json", *args, "--max-tokens", "8")
    bench(gateway, "chat", tmp_path / "hungry.json", *args, "--max-tokens", "64")
    base, hungry = load(tmp_path / "base.json"), load(tmp_path / "hungry.json")
    assert sum(r.output_tokens for r in hungry.runs) > sum(r.output_tokens for r in base.runs)
    verdict_file = tmp_path / "verdict.json"
    code, text = check([tmp_path / "base.json"], [tmp_path / "hungry.json"], "--json", verdict_file,
                       "--max-p99-increase", "1000%")  # fmt: skip
    assert code == 1, text
    verdict = orjson.loads(verdict_file.read_bytes())
    cost = next(c for c in verdict["checks"] if c["name"] == "cost per 1k requests")
    assert cost["verdict"] == "fail" and verdict["verdict"] == "fail"




def test_prices_applied_by_the_bench_equal_what_the_gateway_meters(gateway: Gateway, tmp_path: Path) -> None:
    """Straight at the text model, priced from the config as `chat`, against the same requests
    through the gateway: the same usage, so the same cost to the nano-dollar."""
    args = ["--concurrency", "1", "--requests", "20", "--duration", "60", "--max-tokens", "16"]
    bench(gateway, "chat", tmp_path / "via.json", *args)
    config = yaml.safe_load(gateway.config_path.read_text())
    upstream = next(d for d in config["deployments"] if d["name"] == "chat")
    direct = costwarden("bench", upstream["upstream"], "-d", upstream["model"], "--config", gateway.config_path,
                        "--priced-as", "chat", "-o", tmp_path / "direct.json", *args)  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    (via,), (own,) = load(tmp_path / "via.json").runs, load(tmp_path / "direct.json").runs
    assert via.cost is not None and own.cost is not None
    assert (via.cost.basis, own.cost.basis) == ("gateway", "prices")
    assert (own.input_tokens, own.output_tokens) == (via.input_tokens, via.output_tokens)
    assert own.cost.total_usd == via.cost.total_usd == via.metered_usd
