"""`./scripts/demo` picks free ports when its usual ones are taken, and takes `--port`."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("costwarden_demo", ROOT / "examples" / "demo" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def listening(port: int) -> socket.socket | None:
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", port))
    except OSError:
        holder.close()
        return None  # already taken by something else: just as good for the test
    holder.listen()
    return holder


@pytest.fixture
def usual_ports_taken(demo: ModuleType) -> Iterator[tuple[int, ...]]:
    usual = tuple(demo.DEFAULT_PORTS)
    holders = [listening(p) for p in usual]
    yield usual
    for holder in holders:
        if holder is not None:
            holder.close()


def test_taken_usual_ports_are_replaced_by_free_distinct_ones(
    demo: ModuleType, usual_ports_taken: tuple[int, ...]
) -> None:
    assert usual_ports_taken == (8700, 9101, 9201)
    ports = demo.pick_ports(None)
    assert len(ports) == len(set(ports)) == 5  # gateway, text model, MLServer HTTP, gRPC, metrics
    assert not set(ports) & set(usual_ports_taken)
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # free indeed


def test_port_option_sets_the_gateway_port(demo: ModuleType) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        wanted = int(probe.getsockname()[1])
    assert demo.parse_args(["--port", str(wanted)]).port == wanted
    ports = demo.pick_ports(wanted)
    assert ports[0] == wanted and len(set(ports)) == 5


def test_a_taken_port_option_is_a_clear_error(demo: ModuleType) -> None:
    holder = listening(0)
    assert holder is not None
    with holder, pytest.raises(SystemExit, match="already in use"):
        demo.pick_ports(int(holder.getsockname()[1]))
