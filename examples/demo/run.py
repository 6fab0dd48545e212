"""The costwarden demo: a gateway on SQLite in front of two real example models, three teams of traffic.

Run through `./scripts/demo` (which installs everything first). Starts the text model (OpenAI API,
streaming) and MLServer with the iris classifier (V2), a gateway in front of both, drives traffic
as three teams for about 20 s with a live table of spend per team, prints the report, then keeps
the gateway running with its URLs shown until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
console = Console()


# The usual ports of the gateway, the text model and MLServer; taken ones are replaced by free ones.
DEFAULT_PORTS = (8700, 9101, 9201)


def _bind(port: int) -> socket.socket | None:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def pick_ports(gateway: int | None) -> tuple[int, ...]:
    """Free, distinct ports: the gateway (`--port`, else 8700 when free), the text model, MLServer's
    HTTP (9101, 9201 when free), then MLServer's gRPC and metrics. All are held until all are found."""
    held: list[socket.socket] = []
    try:
        for preferred in (*DEFAULT_PORTS, 0, 0):
            if not held and gateway is not None:
                sock = _bind(gateway)
                if sock is None:
                    raise SystemExit(f"--port {gateway}: the address is already in use; choose another or leave it out")
            else:
                sock = _bind(preferred) or _bind(0)
                if sock is None:
                    raise SystemExit("no free port on 127.0.0.1")
            held.append(sock)
        return tuple(int(sock.getsockname()[1]) for sock in held)
    finally:
        for sock in held:
            sock.close()


@dataclass
class Team:
    name: str
    project: str
    key: str
    workload: str  # "chat-stream", "iris", "chat-embed"
    sent: int = 0
    failed: int = 0


@dataclass
class Demo:
    work: Path
    gateway_port: int
    text_port: int
    iris_port: int
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.work / log).open("ab") as handle:
            proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def write_config(demo: Demo, teams: list[Team]) -> Path:
    config = {
        "server": {"host": "127.0.0.1", "port": demo.gateway_port, "admin_token": demo.admin_token},
        "storage": {"ledger": f"sqlite:///{demo.work / 'ledger.db'}", "spool_dir": str(demo.work / "spool")},
        "environments": ["prod", "dev"],
        "teams": [{"name": t.name, "projects": [t.project]} for t in teams],
        "deployments": [
            {
                "name": "markov-chat",
                "protocol": "openai",
                "upstream": f"http://127.0.0.1:{demo.text_port}",
                "model": "markov-small",
                "pricing": {"input_per_1m": "0.50", "output_per_1m": "1.50", "per_request": "0.00002"},
            },
            {
                "name": "markov-chat-large",
                "protocol": "openai",
                "upstream": f"http://127.0.0.1:{demo.text_port}",
                "model": "markov-large",
                "pricing": {"input_per_1m": "2.50", "output_per_1m": "10.00"},
            },
            {
                "name": "markov-embed",
                "protocol": "openai",
                "upstream": f"http://127.0.0.1:{demo.text_port}",
                "model": "markov-small",
                "pricing": {"input_per_1m": "0.02"},
            },
            {
                "name": "iris",
                "protocol": "v2",
                "upstream": f"http://127.0.0.1:{demo.iris_port}",
                "pricing": {"per_item": "0.00001", "compute": {"hourly_usd": "3.20", "concurrency": 4}},
            },
        ],
        "keys": [
            {"id": f"demo-{t.name}", "key": t.key, "team": t.name, "project": t.project, "environment": "prod"}
            for t in teams
        ],
    }
    path = demo.work / "costwarden.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def wait_ready(session: aiohttp.ClientSession, url: str, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early; see its log in .demo/")
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"{what} did not become ready in 120 s")


PROMPTS = [
    "Tell me about the river",
    "What did the old sailor say",
    "Describe the winter morning",
    "Write about the town square",
    "Why do the bells ring",
]
FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.8, 2.7, 5.1, 1.9]]


async def one_request(session: aiohttp.ClientSession, demo: Demo, team: Team, rng: random.Random) -> None:
    headers = {"Authorization": f"Bearer {team.key}"}
    url = demo.gateway
    body: dict[str, Any]
    if team.workload == "iris":
        rows = [rng.choice(FLOWERS) for _ in range(rng.randint(1, 32))]
        body = {
            "inputs": [
                {"name": "predict", "shape": [len(rows), 4], "datatype": "FP32", "data": [v for r in rows for v in r]}
            ]
        }
        async with session.post(url + "/v2/models/iris/infer", json=body, headers=headers) as response:
            await response.read()
            ok = response.status == 200
    elif team.workload == "chat-embed" and rng.random() < 0.4:
        body = {"model": "markov-embed", "input": [rng.choice(PROMPTS) for _ in range(rng.randint(1, 8))]}
        async with session.post(url + "/v1/embeddings", json=body, headers=headers) as response:
            await response.read()
            ok = response.status == 200
    else:
        model = "markov-chat-large" if team.workload == "chat-embed" else "markov-chat"
        body = {
            "model": model,
            "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
            "max_tokens": rng.randint(8, 64),
            "stream": team.workload == "chat-stream",
        }
        async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as response:
            async for _ in response.content.iter_any():
                pass
            ok = response.status == 200
    team.sent += 1
    team.failed += 0 if ok else 1


async def team_loop(session: aiohttp.ClientSession, demo: Demo, team: Team, until: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        try:
            await one_request(session, demo, team, rng)
        except aiohttp.ClientError:
            team.failed += 1
        await asyncio.sleep(rng.expovariate(12.0))


async def spend_table(session: aiohttp.ClientSession, demo: Demo, teams: list[Team]) -> Table:
    headers = {"Authorization": f"Bearer {demo.admin_token}"}
    async with session.get(demo.gateway + "/admin/v1/spend", params={"group_by": "team"}, headers=headers) as r:
        report = await r.json()
    rows = {row["team"]: row for row in report["rows"]}
    # Seven columns fit 80 and the cost is never cut; the report afterwards shows every column.
    table = Table(
        "team",
        "sent",
        "in ledger",
        "tokens",
        "items",
        Column("cost USD", justify="right", no_wrap=True, min_width=13),
        "p50 ms",
        title="live spend per team",
    )
    for team in teams:
        row = rows.get(team.name, {})
        tokens = row.get("input_tokens", 0) + row.get("output_tokens", 0)
        table.add_row(
            team.name,
            f"{team.sent:,}",
            f"{row.get('requests', 0):,}",
            f"{tokens:,}",
            f"{row.get('items', 0):,}",
            row.get("cost_usd", "0.000000000"),
            f"{row.get('p50_latency_ms') or 0:.1f}",
        )
    total = report["total"]
    table.add_row(
        "[bold]total",
        f"{sum(t.sent for t in teams):,}",
        f"{total['requests']:,}",
        f"{total['input_tokens'] + total['output_tokens']:,}",
        f"{total['items']:,}",
        f"[bold]{total['cost_usd']}",
        "",
    )
    return table


async def drive(demo: Demo, teams: list[Team], seconds: float) -> None:
    progress = Progress(TextColumn("driving traffic"), BarColumn(), TimeRemainingColumn())
    task = progress.add_task("traffic", total=seconds)
    until = time.monotonic() + seconds
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        loops = [
            asyncio.create_task(team_loop(session, demo, t, until, i)) for i, t in enumerate(teams) for _ in range(2)
        ]
        with Live(console=console, refresh_per_second=4) as live:
            while not all(loop.done() for loop in loops):
                progress.update(task, completed=min(seconds, time.monotonic() - started))
                live.update(Group(await spend_table(session, demo, teams), progress))
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.4)  # the gateway flushes its ledger every 200 ms
            progress.update(task, completed=seconds)
            live.update(Group(await spend_table(session, demo, teams), progress))


async def main(seconds: float, keep_running: bool, port: int | None) -> None:
    work = ROOT / ".demo"
    work.mkdir(exist_ok=True)
    for stale in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (work / stale).unlink(missing_ok=True)
    gateway_port, text_port, iris_port, iris_grpc, iris_metrics = pick_ports(port)
    demo = Demo(work, gateway_port, text_port, iris_port)
    teams = [
        Team("search", "ranking", f"cw_demo-search_{secrets.token_hex(12)}", "chat-stream"),
        Team("fraud", "scoring", f"cw_demo-fraud_{secrets.token_hex(12)}", "iris"),
        Team("research", "summaries", f"cw_demo-research_{secrets.token_hex(12)}", "chat-embed"),
    ]
    config = write_config(demo, teams)
    try:
        async with aiohttp.ClientSession() as session:
            with console.status("starting the example models and the gateway..."):
                text = demo.start(
                    [
                        str(BIN / "python"),
                        str(ROOT / "examples/textmodel/server.py"),
                        "--port",
                        str(demo.text_port),
                        "--token-delay-ms",
                        "2",
                    ],
                    "textmodel.log",
                )
                iris = demo.start(
                    [
                        "bash",
                        str(ROOT / "examples/iris/serve.sh"),
                        str(demo.iris_port),
                        str(iris_grpc),
                        str(iris_metrics),
                    ],
                    "mlserver.log",
                )
                await wait_ready(session, f"http://127.0.0.1:{demo.text_port}/health", "the text model", text)
                await wait_ready(session, f"http://127.0.0.1:{demo.iris_port}/v2/models/iris/ready", "MLServer", iris)
                gateway = demo.start([str(BIN / "costwarden"), "serve", "--config", str(config)], "gateway.log")
                await wait_ready(session, demo.gateway + "/readyz", "the gateway", gateway)
        console.print(
            f"gateway [bold]{demo.gateway}[/] in front of the text model and MLServer (iris); "
            f"ledger {work / 'ledger.db'}"
        )
        await drive(demo, teams, seconds)
        console.print()
        console.rule("report: costwarden report --by team,deployment")
        report = await asyncio.create_subprocess_exec(
            str(BIN / "costwarden"), "report", "--by", "team,deployment", "--config", str(config)
        )
        await report.wait()
        if keep_running:
            key = teams[0].key
            console.print(
                f"\n[bold]The gateway keeps running.[/] Try it:\n"
                f"  OpenAI API   {demo.gateway}/v1  (key {key})\n"
                f"  V2 API       {demo.gateway}/v2/models/iris/infer\n"
                f"  metrics      {demo.gateway}/metrics\n"
                f"  dashboard    {demo.gateway}/dashboard  (sign in with the admin token, or a key for its team)\n"
                f"  admin docs   {demo.gateway}/admin/docs  (admin token {demo.admin_token})\n"
                f"  report       .venv/bin/costwarden report --by team,deployment --config {config}\n"
                f"  example      curl {demo.gateway}/v1/chat/completions -H 'Authorization: Bearer {key}' "
                f'-d \'{{"model":"markov-chat","messages":[{{"role":"user","content":"hi"}}]}}\'\n'
                "Press Ctrl-C to stop."
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        with console.status("stopping..."):
            demo.stop_all()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to drive traffic")
    parser.add_argument("--no-wait", action="store_true", help="exit after the report instead of serving")
    parser.add_argument(
        "--port", type=int, default=None, help="the gateway's port (default 8700, or a free one when it is taken)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    asyncio.run(main(args.seconds, not args.no_wait, args.port))
