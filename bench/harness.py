"""Shared pieces of bench/run.py and bench/choices.py.

Processes (nginx, gateways, wrk) started through `Procs` are pinned with `taskset`, run in their
own process group, and are always stopped again, also when the run fails or is interrupted.
Only loopback addresses are used.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MAIN_PY = ROOT / ".venv" / "bin" / "python"
COSTWARDEN = ROOT / ".venv" / "bin" / "costwarden"
LITELLM = BENCH / ".venv-litellm" / "bin" / "litellm"
TOOLS = BENCH / ".venv-tools" / "bin"
LUA = BENCH / "post.lua"
HOST = "127.0.0.1"

# Where the load generator (and the orchestrator, and the upstream) run, and where the system
# under test runs. On a 2-core machine: one core each.
LOAD_CPU = "0"
SERVER_CPU = "1" if (os.cpu_count() or 1) > 1 else "0"

CHAT_PATH = "/v1/chat/completions"
CHAT_BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
# The upstream's fixed answer: a complete chat.completion with a usage object.
UPSTREAM_ANSWER = (
    '{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model",'
    '"system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant",'
    '"content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'
)


class BenchError(RuntimeError):
    pass


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise BenchError(f"port {HOST}:{port} is in use; stop what holds it (or pick other ports)") from exc


def pin_self(cpu: str = LOAD_CPU) -> None:
    """Pin this process (and what it starts without taskset) to the load generator's core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpu.split(",")})


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Procs:
    """Starts processes and guarantees they are stopped (SIGTERM, then SIGKILL after a grace)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[Proc] = []

    def start(
        self, name: str, argv: Sequence[str | Path], cpu: str | None, env: dict[str, str | None] | None = None
    ) -> Proc:
        """Start `argv` pinned to `cpu`; `env` adds variables to ours (None removes one)."""
        cmd = [str(a) for a in argv]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        log = self.workdir / f"{name}.log"
        out = log.open("wb")
        full_env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        popen = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=self.workdir,
            start_new_session=True,
        )
        out.close()
        proc = Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 20.0) -> int | None:
        """Stop one process group: SIGTERM (a graceful shutdown), then SIGKILL after `grace`."""
        if proc in self._procs:
            self._procs.remove(proc)
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)
        # Whatever the leader left behind in its group (e.g. worker processes) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.popen.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc, grace=10.0)


@contextlib.contextmanager
def workspace(prefix: str, keep: bool = False) -> Iterator[tuple[Path, Procs]]:
    """A temp dir and a process set; SIGTERM/SIGHUP are turned into a clean stop."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)  # nginx workers drop to `nobody`
    procs = Procs(workdir)

    def _on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield workdir, procs
    finally:
        procs.stop_all()
        for s, handler in old.items():
            signal.signal(s, handler)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# --- waiting and probing ---------------------------------------------------------------------


def http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def wait_ready(
    proc: Proc, url: str, body: bytes | None, headers: dict[str, str], timeout: float
) -> tuple[int, dict[str, str], bytes]:
    """Poll `url` until it answers 200 (or time out / the process dies)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            status, hdrs, payload = http(url, body, headers, timeout=5.0)
            if status == 200:
                return status, hdrs, payload
            last = f"HTTP {status}: {payload[:300]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise BenchError(f"{proc.name} not ready after {timeout:.0f}s ({last}):\n{proc.tail()}")


# --- nginx -----------------------------------------------------------------------------------


def _nginx_conf(workdir: Path, name: str, http_block: str) -> Path:
    d = workdir / name
    d.mkdir(exist_ok=True)
    d.chmod(0o755)
    temp = "\n".join(
        f"    {kind}_temp_path {d}/{kind}_temp;" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = f"""daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    keepalive_requests 1000000;
    keepalive_timeout 120s;
{http_block}
}}
"""
    path = d / "nginx.conf"
    path.write_text(conf)
    return path


def start_nginx(procs: Procs, name: str, http_block: str, cpu: str) -> Proc:
    conf = _nginx_conf(procs.workdir, name, http_block)
    # -e: the error log from the very start (before the config is read), away from /var/log.
    return procs.start(name, ["nginx", "-c", conf, "-p", conf.parent, "-e", conf.parent / "error.log"], cpu)


def upstream_block(port: int) -> str:
    """The shared fixed upstream: a static chat.completion for POST /v1/chat/completions."""
    return f"""    server {{
        listen {HOST}:{port} backlog=4096;
        location = {CHAT_PATH} {{
            default_type application/json;
            return 200 '{UPSTREAM_ANSWER}';
        }}
        location / {{ return 404; }}
    }}"""


def reverse_proxy_block(port: int, upstream_port: int) -> str:
    return f"""    upstream bench_upstream {{
        server {HOST}:{upstream_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


# --- wrk -------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    non_2xx: int
    socket_errors: int
    p50_ms: float | None
    p99_ms: float | None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise BenchError(f"cannot read wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not rps:
        raise BenchError(f"unexpected wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return WrkResult(
        requests=int(m.group(1)),
        seconds=_ms(m.group(2) + m.group(3)) / 1e3,
        rps=float(rps.group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
        p50_ms=_ms(p50.group(1)) if p50 else None,
        p99_ms=_ms(p99.group(1)) if p99 else None,
    )


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    auth: str | None = None,
    body: bytes | None = CHAT_BODY,
    cpu: str = LOAD_CPU,
) -> WrkResult:
    """Closed-loop load with wrk (one thread), bounded by `seconds` and a hard timeout."""
    env = dict(os.environ)
    env["BENCH_BODY"] = body.decode() if body is not None else ""
    env["BENCH_AUTH"] = auth or ""
    cmd = [
        "taskset",
        "-c",
        cpu,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --- memory ----------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                kids.extend(int(x) for x in (task / "children").read_text().split())
    return kids


def process_tree(pid: int) -> list[int]:
    seen: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory_mib(pid: int, skip_leader: bool = False) -> dict[str, object]:
    """RSS (and peak RSS) summed over a process and its descendants, in MiB.

    `skip_leader` leaves out the first pid (a `taskset` exec'ed into the program keeps its pid,
    so this is only for wrappers that fork).
    """
    pids = process_tree(pid)
    if skip_leader:
        pids = pids[1:]
    names = []
    for p in pids:
        with contextlib.suppress(OSError):
            names.append(Path(f"/proc/{p}/comm").read_text().strip())
    rss = sum(_status_kib(p, "VmRSS") for p in pids)
    hwm = sum(_status_kib(p, "VmHWM") for p in pids)
    return {"rss_mib": round(rss / 1024, 1), "peak_rss_mib": round(hwm / 1024, 1), "processes": names}


# --- numbers ---------------------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (like numpy's default) of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(sorted(values), 0.5)


def versions() -> dict[str, str]:
    """Versions of everything measured, for the report."""
    out: dict[str, str] = {"python": sys.version.split()[0]}

    def run(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (done.stdout + done.stderr).strip()

    sha = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"])
    out["costwarden_git"] = sha + ("+uncommitted src changes" if dirty else "")
    out["nginx"] = run(["nginx", "-v"]).split("/")[-1]
    out["wrk"] = run(["wrk", "-v"]).split()[1] if run(["wrk", "-v"]) else "?"
    probe = "import importlib.metadata as m,sys;print(' '.join(f'{p}={m.version(p)}' for p in sys.argv[1:]))"
    for py, pkgs in (
        (MAIN_PY, ["costwarden", "uvicorn", "uvloop", "httptools", "aiohttp", "httpx", "orjson"]),
        (LITELLM.parent / "python", ["litellm", "uvicorn", "fastapi"]),
        (TOOLS / "python", ["granian"]),
    ):
        if not Path(py).exists():
            continue
        tag = "litellm-venv:" if "litellm" in str(py) else ""
        for pair in run([str(py), "-c", probe, *pkgs]).split():
            k, _, v = pair.partition("=")
            out[tag + k] = v
    return out


def machine() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = _meminfo_gib()
    return {
        "cpu": model,
        "cpus": str(os.cpu_count()),
        "memory_gib": f"{mem:.0f}",
        "kernel": os.uname().release,
        "os": _os_release(),
    }


def _meminfo_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _os_release() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return "?"
