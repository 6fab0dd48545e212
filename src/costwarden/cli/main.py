"""The `costwarden` command: serve, config check, keys, report."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

import typer

from costwarden.cli import budgets, cache, compute, export, hardware, keys, ledger, queue
from costwarden.cli.allocation import allocation_command
from costwarden.cli.bench import bench
from costwarden.cli.check import check as check_gate
from costwarden.cli.common import DEFAULT_CONFIG, ConfigOption, config_or_exit, console, errors, plural
from costwarden.cli.report import report

app = typer.Typer(help="costwarden: meter, price, attribute and record the cost of AI inference.", no_args_is_help=True)
config_app = typer.Typer(help="Work with the config file.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys.app, name="keys")
app.add_typer(budgets.app, name="budgets")
app.add_typer(ledger.app, name="ledger")
app.add_typer(export.app, name="export")
app.add_typer(queue.app, name="queue")
app.add_typer(cache.app, name="cache")
app.command()(report)
app.command()(budgets.alerts)
app.command("bench")(bench)
app.command("check")(check_gate)
app.add_typer(hardware.app, name="hardware")
app.command("allocation")(allocation_command)
app.add_typer(compute.app, name="compute")


@config_app.command("check")
def check(
    file: Path | None = typer.Argument(None, help="The config file to validate (else --config)."),
    config: Path | None = ConfigOption,
) -> None:
    """Validate a config file without starting anything."""
    path = file or config
    cfg = config_or_exit(path)
    console.print(
        f"[green]ok[/] {path or DEFAULT_CONFIG}: {plural(len(cfg.deployments), 'deployment')}, "
        f"{plural(len(cfg.teams), 'team')}, {plural(len(cfg.keys), 'key')} in the file, "
        f"ledger {cfg.storage.ledger.split('@')[-1]}"
    )


@app.command()
def serve(
    config: Path | None = ConfigOption,
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
    problem = listen_problem(bind_host, bind_port)
    if problem is not None:
        errors.print(
            f"[bold red]cannot listen on {bind_host}:{bind_port}:[/] {problem} "
            "(choose another port with --port or server.port, or stop what holds it)",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    ledger = cfg.storage.ledger.split("@")[-1]
    if cfg.server.engine == "fast":
        from costwarden.app import fast_serve

        admin = cfg.server.admin_port
        problem = listen_problem(bind_host, admin) if admin is not None else None
        if problem is not None:
            errors.print(f"[bold red]cannot listen on {bind_host}:{admin} (server.admin_port):[/] {problem}")
            raise typer.Exit(1)
        console.print(
            f"costwarden gateway (engine fast) on [bold]http://{bind_host}:{bind_port}[/], "
            f"admin on http://{bind_host}:{admin} (ledger {ledger})"
        )
        fast_serve.run(cfg, bind_host, bind_port, log_level)
        return
    console.print(f"costwarden gateway on [bold]http://{bind_host}:{bind_port}[/] (ledger {ledger})")
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


def listen_problem(host: str, port: int) -> str | None:
    """Why the gateway could not listen on host:port, or None. Binds the way uvicorn does
    (SO_REUSEADDR), then lets go, so the banner is printed only for an address that works."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return "the address is already in use"
        return exc.strerror or str(exc)
    return None


if __name__ == "__main__":
    app()
