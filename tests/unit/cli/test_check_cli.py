"""`costwarden check`: 0 pass, 1 regression, 2 for every input error with a message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app
from tests.unit.bench.sample import run, write

RUNNER = CliRunner()


def check(*args: str | Path) -> tuple[int, str]:
    result = RUNNER.invoke(app, ["check", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_pass_and_regression_exit_codes(tmp_path: Path) -> None:
    base = write(tmp_path / "base.json", [run(10.0), run(10.5), run(9.8)])
    same = write(tmp_path / "same.json", [run(10.1), run(9.9), run(10.4)])
    slow = write(tmp_path / "slow.json", [run(14.0), run(13.5), run(14.2)])
    dear = write(tmp_path / "dear.json", [run(10.0, "0.022"), run(10.0, "0.022"), run(10.0, "0.022")])
    assert check("--baseline", base, "--current", same)[0] == 0
    code, text = check("--baseline", base, "--current", slow)
    assert code == 1 and "latency p99" in text and "regression" in text
    assert check("--baseline", base, "--current", dear)[0] == 1  # +10% cost, 5% allowed
    assert check("--baseline", base, "--current", dear, "--max-cost-increase", "10%")[0] == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_cost_increase: 12%\nmax_p99_increase: 50%\n")
    assert check("--baseline", base, "--current", dear, "--policy", policy)[0] == 0
    assert check("--baseline", base, "--current", slow, "--policy", policy)[0] == 0
    failing = write(tmp_path / "errors.json", [run(10.0, ok=990, errors=10)])
    code, _ = check("--baseline", base, "--current", failing, "--json", tmp_path / "v.json")
    assert code == 1
    verdict = orjson.loads((tmp_path / "v.json").read_bytes())
    assert [c["verdict"] for c in verdict["checks"] if c["name"] == "error rate"] == ["fail"]


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    base = write(tmp_path / "base.json", [run(10.0)])
    other_dep = write(tmp_path / "other.json", [run(10.0)], deployment="other")
    other_proto = write(tmp_path / "proto.json", [run(10.0)], protocol="openai")
    newer = tmp_path / "newer.json"
    data = orjson.loads(base.read_bytes())
    newer.write_bytes(orjson.dumps({**data, "format_version": 99, "costwarden_version": "9.0"}))
    missing = tmp_path / "missing.json"
    del data["runs"][0]["latency_ms"]
    missing.write_bytes(orjson.dumps(data))
    negative = tmp_path / "negative.json"
    bad = orjson.loads(base.read_bytes())
    bad["runs"][0]["latency_ms"]["p99"] = -1.0
    negative.write_bytes(orjson.dumps(bad))
    not_json = tmp_path / "garbage.json"
    not_json.write_text("{not json")
    return {
        "deployment": (other_dep, "different deployments"),
        "protocol": (other_proto, "different protocols"),
        "newer": (newer, "newer costwarden"),
        "missing": (missing, "runs.0.latency_ms: Field required"),
        "not json": (not_json, "not JSON"),
        "negative": (negative, "runs.0.latency_ms.p99: Input should be greater than or equal to 0"),
        "absent": (tmp_path / "absent.json", "cannot read"),
    }


@pytest.mark.parametrize("case", ["deployment", "protocol", "newer", "missing", "not json", "negative", "absent"])
def test_input_errors_exit_2_with_a_clear_message(tmp_path: Path, case: str) -> None:
    current, message = bad_files(tmp_path)[case]
    code, text = check("--baseline", tmp_path / "base.json", "--current", current)
    assert code == 2 and message in " ".join(text.split()), text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-cost-increase", "five"], "not a percentage"),
        (["--max-error-rate", "-1%"], "between 0"),
        (["--policy", "POLICY"], "unknown key"),
    ],
)
def test_bad_thresholds_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    base = write(tmp_path / "base.json", [run(10.0)])
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_latency: 5%\n")
    code, text = check("--baseline", base, "--current", base, *[str(policy) if a == "POLICY" else a for a in args])
    assert code == 2 and message in text


def test_repeats_from_several_files_are_pooled_per_side(tmp_path: Path) -> None:
    bases = [write(tmp_path / f"b{i}.json", [run(10.0 + i / 10)]) for i in range(3)]
    same = [write(tmp_path / f"s{i}.json", [run(10.1 - i / 10)]) for i in range(3)]
    slow = [write(tmp_path / f"x{i}.json", [run(15.0 + i / 10)]) for i in range(3)]
    pairs = [a for pair in zip(["--baseline"] * 3, bases, strict=True) for a in pair]
    code, text = check(*pairs, *[a for p in zip(["--current"] * 3, same, strict=True) for a in p])
    assert code == 0 and "median of 3 run(s) vs 3" in " ".join(text.split())
    assert check(*pairs, *[a for p in zip(["--current"] * 3, slow, strict=True) for a in p])[0] == 1
    other = write(tmp_path / "other.json", [run(10.0)], deployment="other")
    code, text = check(*pairs, "--current", same[0], "--current", other)
    assert code == 2 and "different deployments" in " ".join(text.split())
