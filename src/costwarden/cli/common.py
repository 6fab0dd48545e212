"""What every command shares: loading the config with a readable error, running a store call, checking
--format and the report window, a progress line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import typer

from costwarden.config import Config, ConfigError, load_config
from costwarden.domain.report import QueryError
from costwarden.ports import Store
from costwarden.storage.factory import open_store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

T = TypeVar("T")


class _LazyConsole:
    """A rich Console made on first use: `costwarden serve` prints its banner without rich, so a
    gateway process never imports it (~7 MB of each worker's RSS)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __enter__(self) -> Console:  # `with console:` buffers output (special methods skip __getattr__)
        return self._made().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._made().__exit__(*exc)


# Piped output is read by scripts and logs: do not wrap tables at 80 columns there.
console = cast("Console", _LazyConsole(width=None if sys.stdout.isatty() else 240))
errors = cast("Console", _LazyConsole(stderr=True))
CONFIG_ENV = "COSTWARDEN_CONFIG"
DEFAULT_CONFIG = Path("costwarden.yaml")
ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    envvar=CONFIG_ENV,
    show_envvar=True,
    help="Path to costwarden.yaml [default: ./costwarden.yaml].",
)
HINT = f"pass --config FILE or set {CONFIG_ENV}=FILE"


def config_or_exit(path: Path | None) -> Config:
    """The config from --config, else $COSTWARDEN_CONFIG, else ./costwarden.yaml; exit 2 with a hint."""
    if path is None:
        if not DEFAULT_CONFIG.is_file():
            errors.print(
                f"[bold red]no config file:[/] {HINT} (there is no {DEFAULT_CONFIG} in {Path.cwd()})",
                soft_wrap=True,
            )
            raise typer.Exit(2)
        path = DEFAULT_CONFIG
    try:
        return load_config(path)
    except ConfigError as exc:
        errors.print(f"[bold red]config error[/] in {path}:", soft_wrap=True)
        for problem in exc.problems:
            errors.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
        if not path.is_file():
            errors.print(f"  ({HINT})", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def plural(count: int, noun: str) -> str:
    """`1 team`, `2 teams`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def with_store(config: Config, action: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = open_store(config.storage.ledger, config.storage.partition)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def parse_pairs(option: str, values: list[str], aliases: dict[str, str] | None = None) -> dict[str, str]:
    """`name=value` options (repeatable) as a dict; exits with a message naming the bad one."""
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, item = value.partition("=")
        if not sep:
            errors.print(f"[red]{option} {value!r}[/] must look like name=value")
            raise typer.Exit(2)
        pairs[(aliases or {}).get(name.strip(), name.strip())] = item.strip()
    return pairs


def format_or_exit(output: str, formats: tuple[str, ...] = ("table", "csv", "json")) -> None:
    """Exit 2 unless `output` (the --format given) is one of `formats`."""
    if output not in formats:
        errors.print(f"[red]--format {output!r}[/]: expected {', '.join(formats[:-1])} or {formats[-1]}")
        raise typer.Exit(2)


def query_or_exit(build: Callable[[], T]) -> T:
    """The query `build` makes of the options; options it refuses (a bad window, dimension) exit 2."""
    try:
        return build()
    except QueryError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


def progress(bar: bool = False) -> Progress:
    """A progress line on stderr, gone when done: a spinner, what is being done, (with `bar`) a bar
    that fills once the task is given a total, the time so far."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
    if bar:
        columns[2:2] = [BarColumn(), TaskProgressColumn()]
    return Progress(*columns, console=errors, transient=True)
