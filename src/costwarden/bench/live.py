"""The live view of a bench: a progress bar for the run under way and a table of finished runs."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from costwarden.bench.exchange import Sample
from costwarden.bench.markdown import HEADER, run_row
from costwarden.bench.results import Run


class LiveView:
    """An `Observer` (bench/runner.py) that draws on a rich console while the bench runs."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.runs: list[Run] = []
        self._task: TaskID | None = None
        self._ok = self._errors = 0
        self._latency_sum = 0.0
        self.live = Live(self, console=console, refresh_per_second=4, transient=False)

    def __rich__(self) -> RenderableType:
        return Group(self.table(), self.progress)

    def table(self) -> Table:
        table = Table(*HEADER, title="costwarden bench", show_lines=False)
        for run in self.runs:
            table.add_row(*run_row(run))
        return table

    def run_started(self, label: str, expected: int | None) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
        self._ok = self._errors = 0
        self._latency_sum = 0.0
        self._task = self.progress.add_task(label, total=expected, status="")

    def sample(self, sample: Sample) -> None:
        if sample.ok:
            self._ok += 1
            self._latency_sum += sample.latency_s
        else:
            self._errors += 1
        if self._task is not None:
            mean = self._latency_sum / self._ok * 1000 if self._ok else 0.0
            status = f"ok {self._ok}  errors {self._errors}  mean {mean:.1f} ms"
            self.progress.update(self._task, advance=1, status=status)

    def run_finished(self, run: Run) -> None:
        self.runs.append(run)
        if self._task is not None:
            self.progress.update(self._task, total=run.requests, completed=run.requests)
