"""The `process` collector (psutil): the model-server process of one deployment on this host, found
by the port it listens on, a pid file or a command-line substring, and its children (MLServer's
inference workers). Each sample: CPU seconds (user + system, the tree summed), RSS and threads, and the
children's pids (the nvml collector's GPU processes are matched to deployments by any of them)."""

from __future__ import annotations

from pathlib import Path

import psutil

from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_sample import ProcessSample


class ProcessFinder:
    """How to find the process: the first of port, pid file, command line that is set."""

    def __init__(self, port: int | None = None, pid_file: str | None = None, cmdline: str | None = None) -> None:
        if port is None and pid_file is None and cmdline is None:
            raise ValueError("give a port, a pid file or a command-line match")
        self.port, self.pid_file, self.cmdline = port, pid_file, cmdline

    def find(self) -> psutil.Process:
        """The process, or LookupError saying what was looked for."""
        if self.port is not None:
            for conn in psutil.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self.port and conn.pid:
                    return psutil.Process(conn.pid)
            raise LookupError(f"no process listens on port {self.port}")
        if self.pid_file is not None:
            try:
                return psutil.Process(int(Path(self.pid_file).read_text().strip()))
            except (OSError, ValueError) as exc:
                raise LookupError(f"pid file {self.pid_file}: {exc}") from exc
        for proc in psutil.process_iter(["cmdline"]):
            if self.cmdline and self.cmdline in " ".join(proc.info.get("cmdline") or ()):
                return proc
        raise LookupError(f"no process has {self.cmdline!r} in its command line")


class ProcessCollector:
    def __init__(self, deployment: str, finder: ProcessFinder, name: str | None = None) -> None:
        self.deployment = deployment
        self.finder = finder
        self.status = CollectorStatus(name or f"process:{deployment}")
        self._proc: psutil.Process | None = None

    def start(self) -> bool:
        self.status.running = True
        return True

    def sample(self, now: float) -> list[ProcessSample]:
        """One sample of the process tree; a process that is gone is looked for again next time."""
        try:
            if self._proc is None or not self._proc.is_running():
                self._proc = self.finder.find()
            proc = self._proc
            with proc.oneshot():
                tree = [proc, *proc.children(recursive=True)]
                cpu = rss = threads = 0.0
                children: list[int] = []
                for member in tree:
                    try:
                        times = member.cpu_times()
                        cpu += times.user + times.system
                        rss += member.memory_info().rss
                        threads += member.num_threads()
                    except psutil.NoSuchProcess:
                        continue  # a worker that exited between listing and reading: skipped, not guessed
                    if member.pid != proc.pid:
                        children.append(member.pid)
        except (LookupError, psutil.Error) as exc:
            self._proc = None
            self.status.last_error = f"{type(exc).__name__}: {exc}"
            return []
        self.status.last_error = None
        return [ProcessSample(now, self.deployment, proc.pid, cpu, int(rss), int(threads), tuple(sorted(children)))]

    def stop(self) -> None:
        self.status.running = False
