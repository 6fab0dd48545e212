"""The file paths a config names, each with where it is in the file, and taking the relative ones
relative to the config file's folder (never the folder a command happens to run in)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from costwarden.config.models import Config

Location = tuple[str | int, ...]
# `file`: a plain path; `sqlite`: a `sqlite:///path` database URL (others are servers, kept as given);
# `ca_bundle`: a plain path to a PEM bundle, which the loader loads once anchored.
PathKind = Literal["file", "sqlite", "ca_bundle"]

SQLITE = "sqlite:///"


def config_paths(config: Config) -> list[tuple[Location, PathKind, str]]:
    """Every file path (or SQLite URL) the config names, with its location and kind."""
    storage = config.storage
    found: list[tuple[Location, PathKind, str | None]] = [
        (("storage", "ledger"), "sqlite", storage.ledger),
        (("storage", "spool_dir"), "file", storage.spool_dir),
        (("batch", "queue"), "sqlite", config.batch.queue),
        (("observability", "access_log", "path"), "file", config.observability.access_log.path),
    ]
    for i, dep in enumerate(config.deployments):
        found.append((("deployments", i, "tls", "ca_file"), "ca_bundle", dep.tls.ca_file))
    for i, collector in enumerate(config.compute.collectors):
        found.append((("compute", "collectors", i, "pid_file"), "file", getattr(collector, "pid_file", None)))
    return [(loc, kind, path) for loc, kind, path in found if path is not None]


def anchor_paths(config: Config, folder: Path) -> Config:
    """The config with each relative path (and relative `sqlite:///` file) made absolute under `folder`."""
    for loc, kind, path in config_paths(config):
        anchored = _anchor_sqlite(folder, path) if kind == "sqlite" else _under(folder, path)
        if anchored != path:
            config = _replace(config, loc, anchored)
    return config


def _anchor_sqlite(folder: Path, url: str) -> str:
    if not url.startswith(SQLITE):
        return url  # a server (postgresql://): no file here
    file = url.removeprefix(SQLITE) or "costwarden.db"
    if file == ":memory:" or file.startswith("file:"):
        return url
    return SQLITE + _under(folder, file)


def _under(folder: Path, path: str) -> str:
    return os.path.normpath(folder / Path(path).expanduser())


def _replace(node: Any, loc: Location, value: str) -> Any:
    """`node` (a frozen model, or a tuple of them) with the value at `loc` replaced."""
    head, rest = loc[0], loc[1:]
    if isinstance(head, int):
        items = list(node)
        items[head] = _replace(items[head], rest, value)
        return tuple(items)
    return node.model_copy(update={head: _replace(getattr(node, head), rest, value) if rest else value})
