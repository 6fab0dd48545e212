"""The `costwarden` command: serve, config check, keys, report."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from costwarden.cli import budgets, keys
from costwarden.cli.common import ConfigOption, config_or_exit, console
from costwarden.cli.report import report

app = typer.Typer(help="costwarden: meter, price, attribute and record the cost of AI inference.", no_args_is_help=True)
config_app = typer.Typer(help="Work with the config file.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys.app, name="keys")
app.add_typer(budgets.app, name="budgets")
app.command()(report)
app.command()(budgets.alerts)


@config_app.command("check")
def check(file: Path = typer.Argument(..., help="The config file to validate.")) -> None:
    """Validate a config file without starting anything."""
    cfg = config_or_exit(file)
    console.print(
        f"[green]ok[/] {file}: {len(cfg.deployments)} deployments, {len(cfg.teams)} teams, "
        f"{len(cfg.keys)} keys in the file, ledger {cfg.storage.ledger.split('@')[-1]}"
    )


@app.command()
def serve(
    config: Path = ConfigOption,
    host: str | None = typer.Option(None, help="Override server.host."),
    port: int | None = typer.Option(None, help="Override server.port."),
    log_level: str = typer.Option("warning", help="debug | info | warning | error"),
) -> None:
    """Run the gateway."""
    import uvicorn

    from costwarden.app.asgi import CostwardenASGI
    from costwarden.app.http_guard import guarded_protocol

    cfg = config_or_exit(config)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bind_host = host or cfg.server.host
    bind_port = cfg.server.port if port is None else port
    console.print(
        f"costwarden gateway on [bold]http://{bind_host}:{bind_port}[/] (ledger {cfg.storage.ledger.split('@')[-1]})"
    )
    uvicorn.run(
        CostwardenASGI(cfg),
        host=bind_host,
        port=bind_port,
        loop="uvloop",
        # httptools plus a header deadline and a cap on buffered header bytes (see app/http_guard.py)
        http=guarded_protocol(cfg.server.header_timeout_seconds, 4 * cfg.server.max_header_bytes),
        lifespan="on",
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the gateway reads no forwarded-for headers; saves a middleware hop
        date_header=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    app()
