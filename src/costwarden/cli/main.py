"""The `costwarden` command: serve, config check, keys, report."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from costwarden.cli.common import DEFAULT_CONFIG, ConfigOption, config_or_exit, console, errors, plural
from costwarden.cli.lazy import LazyGroup
from costwarden.config.models import Config, workers_problem

if TYPE_CHECKING:
    from uvicorn import Server

    from costwarden.app.worker_metrics import WorkerSlot

# serve and config here; the other subcommands load when called (cli/lazy.py: SUBCOMMANDS).
app = typer.Typer(
    cls=LazyGroup, help="costwarden: meter, price, attribute and record the cost of AI inference.", no_args_is_help=True
)
config_app = typer.Typer(help="Work with the config file.", no_args_is_help=True)
app.add_typer(config_app, name="config")


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
    workers: int | None = typer.Option(None, min=1, max=64, help="Override server.workers (worker processes)."),
    log_level: str = typer.Option("warning", help="debug | info | warning | error"),
    worker_of: str | None = typer.Option(None, hidden=True, help="Internal: run as a worker of a master."),
) -> None:
    """Run the gateway."""
    cfg = config_or_exit(config)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if worker_of is not None:
        _serve_worker(cfg, log_level, worker_of)
        return
    bind_host = host or cfg.server.host
    bind_port = cfg.server.port if port is None else port
    count = cfg.server.workers if workers is None else workers
    problem = workers_problem(count, cfg.state)
    if problem is not None:
        errors.print(f"[bold red]cannot serve --workers {count}:[/] {problem}", soft_wrap=True)
        raise typer.Exit(1)
    problem = listen_problem(bind_host, bind_port)
    if problem is not None:
        errors.print(
            f"[bold red]cannot listen on {bind_host}:{bind_port}:[/] {problem} "
            "(choose another port with --port or server.port, or stop what holds it)",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    ledger = cfg.storage.ledger.split("@")[-1]
    admin = cfg.server.admin_port if cfg.server.engine == "fast" else None
    if admin is not None:
        problem = listen_problem(bind_host, admin)
        if problem is not None:
            errors.print(f"[bold red]cannot listen on {bind_host}:{admin} (server.admin_port):[/] {problem}")
            raise typer.Exit(1)
    url = typer.style(f"http://{bind_host}:{bind_port}", bold=True)
    where = f"costwarden gateway (engine {cfg.server.engine}) on {url}"
    where += f", admin on http://{bind_host}:{admin}" if admin is not None else ""
    typer.echo(f"{where}, {plural(count, 'worker')} (ledger {ledger})")  # not rich: a gateway never imports it
    if count > 1:
        raise typer.Exit(_serve_workers(config or DEFAULT_CONFIG, log_level, count, bind_host, (bind_port, admin)))
    if cfg.server.engine == "fast":
        from costwarden.app import fast_serve

        fast_serve.run(cfg, bind_host, bind_port, log_level)
        return
    _asgi_server(cfg, bind_host, bind_port, log_level).run()


def _asgi_server(cfg: Config, host: str, port: int, log_level: str, worker: WorkerSlot | None = None) -> Server:
    import uvicorn

    from costwarden.app.asgi import CostwardenASGI
    from costwarden.app.fast_serve import uvicorn_config

    return uvicorn.Server(uvicorn_config(CostwardenASGI(cfg, worker, freeze_heap=True), cfg, host, port, log_level))


def _serve_workers(config: Path, log_level: str, count: int, host: str, ports: tuple[int, int | None]) -> int:
    """The master of `count` workers (app/supervisor.py): bind once, supervise, return the exit code."""
    from costwarden.app.supervisor import Supervisor, listen, worker_argv

    sockets = [listen(host, p) for p in ports if p is not None]
    try:
        argv = worker_argv(config.resolve(), log_level, [s.fileno() for s in sockets])
        return Supervisor(count, sockets, argv).run()
    finally:
        for sock in sockets:
            sock.close()


def _serve_worker(cfg: Config, log_level: str, spec: str) -> None:
    """A worker: `index:master_pid:fd[,admin_fd]:metrics_dir` (written by supervisor.worker_argv)."""
    from costwarden.app.supervisor import watch_parent
    from costwarden.app.worker_metrics import WorkerSlot

    index, master, fds, metrics_dir = spec.split(":", 3)
    watch_parent(int(master))
    slot = WorkerSlot(int(index), Path(metrics_dir))
    sockets = [socket.socket(fileno=int(fd)) for fd in fds.split(",")]
    if cfg.server.engine == "fast":
        from costwarden.app import fast_serve

        fast_serve.run_worker(cfg, log_level, slot, sockets[0], sockets[1] if len(sockets) > 1 else None)
        return
    _asgi_server(cfg, cfg.server.host, 0, log_level, slot).run(sockets[:1])


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
