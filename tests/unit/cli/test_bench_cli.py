"""`costwarden bench` and `hardware recommend` refuse bad input with exit 2 and a message."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app
from tests.integration.procs import free_port
from tests.unit.bench.sample import run, write

RUNNER = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str]:
    result = RUNNER.invoke(app, list(map(str, args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.output.split())


def test_a_target_that_is_down_exits_2() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, text = invoke("bench", url, "-d", "chat", "--rate", "5", "--duration", "1")
    assert code == 2 and "the target is down" in text and "connect" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "5", "--slo", "p99<=fast"], "cannot read the SLO clause"),
        (["--rate", "5", "--concurrency", "2"], "give --rate (open loop) or --concurrency"),
        (["--search"], "--search needs --slo"),
        (["--rate", "5", "--protocol", "grpc"], "--protocol must be openai or v2"),
        (["--rate", "-5"], "duration and rate must be above zero"),
        (["--rate", "5", "--hardware", "no-such-box"], "unknown hardware profile"),
        (["--rate", "5", "--requests-file", "MISSING"], "cannot read the payload file"),
        (["--rate", "5", "--priced-as", "nope"], "--priced-as 'nope': no such deployment"),
    ],
)
def test_bad_bench_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    argv = [str(tmp_path / "nope.jsonl") if a == "MISSING" else a for a in args]
    code, text = invoke("bench", "http://127.0.0.1:9", "-d", "chat", *argv)
    assert code == 2 and message in text, text


def test_recommend_input_errors_exit_2(tmp_path: Path) -> None:
    code, text = invoke("hardware", "recommend", "--results", tmp_path, "--slo", "p99<=1ms")
    assert code == 2 and "no *.json results files" in text
    write(tmp_path / "a.json", [run(10.0)])  # benched without --hardware
    code, text = invoke("hardware", "recommend", "--results", tmp_path, "--slo", "p99<=100ms")
    assert code == 2 and "without --hardware" in text
    code, text = invoke("hardware", "recommend", "--results", tmp_path, "--slo", "p99 under 5")
    assert code == 2 and "cannot read the SLO clause" in text


def test_hardware_list_shows_the_catalogue() -> None:
    code, text = invoke("hardware", "list")
    assert code == 0 and "aws-c7i.large" in text and "catalogue" in text
