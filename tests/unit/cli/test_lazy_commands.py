"""Subcommands load when called: `costwarden serve` (every gateway start) does not import the report,
bench or allocation modules, and `costwarden --help` still lists every command."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from costwarden.cli.lazy import SUBCOMMANDS, load
from costwarden.cli.main import app


def test_the_command_line_imports_no_subcommand_module_until_one_is_called() -> None:
    probe = (
        "import sys, costwarden.cli.main\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('costwarden.cli.', 'costwarden.bench', "
        "'costwarden.services.allocation', 'aiohttp')))\n"
        "print(' '.join(loaded))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert loaded <= {"costwarden.cli.main", "costwarden.cli.common", "costwarden.cli.lazy"}, loaded


def test_every_subcommand_loads_with_its_help() -> None:
    for name in SUBCOMMANDS:
        command = load(name)
        assert command.name == name
        assert command.get_short_help_str(), name


def test_help_lists_every_command() -> None:
    shown = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    for name in (*SUBCOMMANDS, "serve", "config"):
        assert f" {name} " in shown.output, name


def test_a_lazy_subcommand_runs_with_its_own_options() -> None:
    shown = CliRunner().invoke(app, ["report", "--help"], terminal_width=200)
    assert shown.exit_code == 0 and "--since" in shown.output, shown.output
    wrong = CliRunner().invoke(app, ["reprot"])
    assert wrong.exit_code == 2 and "No such command" in wrong.output, wrong.output


def test_a_gateway_process_imports_neither_rich_nor_aiohttp() -> None:
    """`costwarden serve` imports the command line, the runtime and the fast engine, and prints its banner
    with click: rich (tables, progress bars for the other commands) stays out of every worker's memory, and
    aiohttp (streamed uploads, the asgi engine, alerts, callbacks) is imported when first used."""
    probe = (
        "import sys, costwarden.cli.main, costwarden.app.runtime, costwarden.app.fast_serve\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'aiohttp')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_commands_consoles_still_print_with_rich() -> None:
    shown = CliRunner().invoke(app, ["config", "check", "/nonexistent/costwarden.yaml"], terminal_width=200)
    assert shown.exit_code == 2
    assert "/nonexistent/costwarden.yaml" in shown.output
