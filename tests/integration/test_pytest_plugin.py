"""The pytest plugin (`--costwarden-baseline`), run by pytester against the real text model behind
the gateway: the first run saves a baseline, an identical run passes, a token-hungrier run fails
on cost with the summary."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points

import pytest

from tests.integration.procs import ROOT, Gateway
from tests.integration.setup_config import KEYS

pytest_plugins = ("pytester",)
pytestmark = pytest.mark.integration

INNER = """
import os

def test_chat(costwarden_gate):
    results = costwarden_gate.bench(
        os.environ["GATEWAY_URL"], "chat", requests=15, repeats=3, api_key=os.environ["API_KEY"],
        max_tokens=int(os.environ["MAX_TOKENS"]),
    )
    assert results.runs[0].cost is not None and results.runs[0].cost.basis == "gateway"
    costwarden_gate.check(results)
"""


def plugin_args() -> list[str]:
    """Load the plugin by name unless this environment already has it through its entry point."""
    registered = {e.value for e in entry_points(group="pytest11")}
    return [] if "costwarden.bench.pytest_plugin" in registered else ["-p", "costwarden.bench.pytest_plugin"]


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"costwarden": "costwarden.bench.pytest_plugin"}


def test_baseline_saved_then_same_passes_and_token_hungrier_fails(
    pytester: pytest.Pytester, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_perf=INNER)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    monkeypatch.setenv("GATEWAY_URL", gateway.url)
    monkeypatch.setenv("API_KEY", KEYS["search"])
    baselines = pytester.path / "baselines"
    args = [*plugin_args(), "-p", "no:cacheprovider", "-W", "error"]

    monkeypatch.setenv("MAX_TOKENS", "8")
    pytester.runpytest_subprocess(*args, f"--costwarden-save={baselines}").assert_outcomes(passed=1)
    assert (baselines / "test_chat.json").is_file()

    gate = f"--costwarden-baseline={baselines}"
    same = pytester.runpytest_subprocess(*args, gate, "--costwarden-max-p99-increase=200%")
    same.assert_outcomes(passed=1)

    monkeypatch.setenv("MAX_TOKENS", "64")
    hungry = pytester.runpytest_subprocess(*args, gate, "--costwarden-max-p99-increase=1000%")
    hungry.assert_outcomes(failed=1)
    hungry.stdout.fnmatch_lines(["*costwarden check: **regression***", "*cost per 1k requests*fail*"])
