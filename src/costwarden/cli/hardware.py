"""`costwarden hardware`: the hardware profiles known (config and catalogue), and `recommend`: the
cheapest profile that meets an SLO at a required rate, read from bench results."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.table import Table

from costwarden.bench import plot_svg
from costwarden.bench.recommend import read_dir, recommend
from costwarden.bench.results import ResultsError
from costwarden.cli.common import ConfigOption, config_or_exit, console, errors
from costwarden.config import Config
from costwarden.config.hardware import CATALOGUE, CATALOGUE_SOURCE, known_names, resolve_profile
from costwarden.domain.hardware import HardwareProfile, Option
from costwarden.domain.money import format_usd
from costwarden.domain.slo import SloError, parse_slo

app = typer.Typer(help="Hardware profiles and the cheapest one that meets an SLO.", no_args_is_help=True)


def profile_or_exit(name: str, config: Config | None) -> HardwareProfile:
    """The named profile (the config's price wins over the catalogue's); exit 2 naming the known ones."""
    declared = config.hardware if config is not None else ()
    profile = resolve_profile(name, declared)
    if profile is None:
        errors.print(f"[bold red]unknown hardware profile {name!r}[/]; known: {', '.join(known_names(declared))}")
        raise typer.Exit(2)
    return profile


@app.command("list")
def list_profiles(config: Path | None = ConfigOption) -> None:
    """The profiles of the config file, then the bundled catalogue (indicative prices)."""
    declared = config_or_exit(config).hardware if config is not None else ()
    table = Table("profile", "accelerator", "vCPUs", "GiB", "$/h", "spot $/h", "price from")
    for entry in declared:
        p = entry.profile()
        spot = _opt(p.spot_hourly_usd)
        table.add_row(p.name, _accel(p), str(p.vcpus), f"{p.memory_gib}", f"{p.hourly_usd}", spot, "config")
    names = {e.name for e in declared}
    for entry in CATALOGUE:
        if entry.name not in names:
            p = entry.profile(CATALOGUE_SOURCE)
            table.add_row(p.name, _accel(p), str(p.vcpus), f"{p.memory_gib}", f"{p.hourly_usd}", "-", "catalogue")
    console.print(table)


@app.command("recommend")
def recommend_cmd(
    results_dir: Path = typer.Option(..., "--results", help="Folder of bench results (*.json), one per profile."),
    slo: str = typer.Option(..., help='The SLO, e.g. "p99<=250ms".'),
    rate: float | None = typer.Option(None, help="Requests/s to serve (default: each profile's own capacity)."),
    spot: bool = typer.Option(False, help="Use spot prices where a profile has one."),
    config: Path | None = ConfigOption,
    plot: Path | None = typer.Option(None, help="Write an SVG plot of cost per 1k requests vs rate here."),
    output: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """The cheapest hardware profile meeting the SLO at the rate, with cost per unit and headroom."""
    try:
        objective = parse_slo(slo)
    except SloError as exc:
        errors.print(f"[bold red]bad --slo:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    if rate is not None and rate <= 0:
        errors.print("[bold red]--rate must be above zero[/]")
        raise typer.Exit(2)
    declared = config_or_exit(config).hardware if config is not None else ()
    try:
        candidates = read_dir(results_dir, objective, lambda name: resolve_profile(name, declared))
    except ResultsError as exc:
        errors.print(f"[bold red]results error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    options = recommend(candidates, rate, spot)
    if plot is not None:
        plot.write_text(plot_svg.render(candidates, objective, rate), encoding="utf-8")
    missing = [c for c in candidates if c.capacity.requests_per_s <= 0]
    if output == "json":
        console.print_json(orjson.dumps({"slo": slo, "rate": rate, "options": [_json(o) for o in options],
                                         "cannot_meet": [c.capacity.label for c in missing]}).decode())  # fmt: skip
    else:
        _print(options, [(c.profile.name, c.capacity.label) for c in missing], slo, rate)
    raise typer.Exit(0 if options else 1)


def _print(options: list[Option], missing: list[tuple[str, str]], slo: str, rate: float | None) -> None:
    at = f"{rate:g} req/s" if rate is not None else "each profile's own capacity"
    if not options:
        errors.print(f"[bold red]no profile meets {slo}[/] (in any run measured)")
    else:
        best = options[0]
        p = best.capacity.profile
        console.print(
            f"[bold green]recommended: {p.name}[/] for {slo} at {at}: {best.replicas} x ${p.hourly(False)}/h "
            f"({p.price_source}), {format_usd(best.cost.per_1k_requests)} per 1k requests"
            + (f", {format_usd(best.cost.per_1m_tokens)} per 1M tokens" if best.cost.per_1m_tokens is not None else "")
            + f", headroom {best.headroom * 100:.0f}%",
            highlight=False,
            soft_wrap=True,
        )
    table = Table("rank", "profile", "capacity req/s", "replicas", "$/h", "$/1k req", "$/1M tok", "headroom", "from")
    for i, o in enumerate(options, start=1):
        c = o.cost
        table.add_row(
            str(i), o.capacity.profile.name, f"{o.capacity.requests_per_s:.3g}", str(o.replicas), f"{o.hourly_usd}",
            format_usd(c.per_1k_requests), format_usd(c.per_1m_tokens) if c.per_1m_tokens is not None else "-",
            f"{o.headroom * 100:.0f}%", o.capacity.label,
        )  # fmt: skip
    for name, label in missing:
        table.add_row("-", name, "0", "-", "-", "-", "-", "-", f"{label} (cannot meet the SLO)")
    console.print(table)


def _json(o: Option) -> dict[str, object]:
    p = o.capacity.profile
    return {
        "profile": p.name,
        "price_source": p.price_source,
        "capacity_rps": o.capacity.requests_per_s,
        "replicas": o.replicas,
        "hourly_usd": str(o.hourly_usd),
        "per_1k_requests": str(o.cost.per_1k_requests),
        "per_1m_tokens": None if o.cost.per_1m_tokens is None else str(o.cost.per_1m_tokens),
        "headroom": round(o.headroom, 4),
        "from": o.capacity.label,
    }


def _accel(p: HardwareProfile) -> str:
    return f"{p.accelerator_count} x {p.accelerator}" if p.accelerator else "-"


def _opt(value: object) -> str:
    return "-" if value is None else str(value)
