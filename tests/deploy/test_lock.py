"""The lock files pin, with hashes, a version inside pyproject's range for every dependency, on
every platform; the runtime lock (the image) and the test lock agree; the tests run on the lock."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
TEST_LOCK = ROOT / "requirements" / "test.lock"


def _env(sys_platform: str, system: str, machine: str, python: str, os_name: str) -> dict[str, str]:
    return {
        "sys_platform": sys_platform, "platform_system": system, "platform_machine": machine,
        "python_version": python.rpartition(".")[0], "python_full_version": python, "os_name": os_name,
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
    }  # fmt: skip


ENVIRONMENTS = {  # where the lock must hold: the image and CI, an ARM node, a Mac, a Windows laptop
    "linux-x86_64-3.11": _env("linux", "Linux", "x86_64", "3.11.14", "posix"),
    "linux-aarch64-3.12": _env("linux", "Linux", "aarch64", "3.12.12", "posix"),
    "darwin-arm64-3.13": _env("darwin", "Darwin", "arm64", "3.13.9", "posix"),
    "win32-amd64-3.11": _env("win32", "Windows", "AMD64", "3.11.9", "nt"),
}
HEADER = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)


@dataclass(frozen=True)
class Pin:
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, env: dict[str, str]) -> bool:
        return self.marker is None or self.marker.evaluate(env)


def read_lock(path: Path) -> dict[str, list[Pin]]:
    """name -> its pins (a universal lock may pin one name twice under exclusive markers)."""
    pins: dict[str, list[Pin]] = {}
    name: str | None = None
    version, marker, hashes = Version("0"), None, []
    lines = [*path.read_text().splitlines(), "end==0"]
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("--hash="):
            hashes.append(stripped.removeprefix("--hash=").rstrip(" \\"))
            continue
        match = HEADER.match(line)
        if match is None:
            continue
        if name is not None:
            pins.setdefault(name, []).append(Pin(version, marker, tuple(hashes)))
        name = canonicalize_name(match["name"])
        version = Version(match["version"])
        marker = Marker(match["marker"]) if match["marker"] else None
        hashes = []
    return pins


def project() -> dict[str, list[Requirement]]:
    """'' -> the runtime dependencies, and each extra -> its own requirements, self-references expanded."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    raw = {"": table["dependencies"], **table["optional-dependencies"]}

    def expand(group: str) -> list[Requirement]:
        out: list[Requirement] = []
        for text in raw[group]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "costwarden":
                for extra in sorted(req.extras):
                    out.extend(expand(extra))
            else:
                out.append(req)
        return out

    return {group: expand(group) for group in raw}


def check_pinned(lock: dict[str, list[Pin]], requirements: list[Requirement]) -> list[str]:
    problems = []
    for req in requirements:
        for env_name, env in ENVIRONMENTS.items():
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            pins = [p for p in lock.get(canonicalize_name(req.name), []) if p.applies(env)]
            if len(pins) != 1:
                problems.append(f"{req} on {env_name}: {len(pins)} pins apply")
            elif pins[0].version not in req.specifier:
                problems.append(f"{req} on {env_name}: locked at {pins[0].version}")
    return problems


def test_every_runtime_dependency_and_extra_is_locked_for_the_image_within_its_range() -> None:
    groups = project()
    assert check_pinned(read_lock(RUNTIME_LOCK), [*groups[""], *groups["all"]]) == []


# `semantic` (torch, sentence-transformers) is not in the lock: torch's CPU build is a local version
# (2.13.0+cpu) that a universal lock from PyPI would replace by the CUDA build, gigabytes of it.
# scripts/setup-semantic installs it under the test lock's pins as constraints, so it moves none of them.
UNLOCKED_EXTRAS = {"semantic"}


def test_every_dependency_with_every_extra_is_locked_for_the_tests_within_its_range() -> None:
    groups = project()
    locked = [r for group, reqs in groups.items() if group not in UNLOCKED_EXTRAS for r in reqs]
    assert check_pinned(read_lock(TEST_LOCK), locked) == []


def test_the_test_lock_holds_the_runtime_lock_at_the_same_versions() -> None:
    runtime, test = read_lock(RUNTIME_LOCK), read_lock(TEST_LOCK)
    differ = {name: (pins, test.get(name)) for name, pins in runtime.items() if test.get(name) != pins}
    assert differ == {}


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, TEST_LOCK], ids=lambda p: p.name)
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    pins = read_lock(lock)
    assert len(pins) > 20
    unhashed = [name for name, entries in pins.items() for pin in entries if not pin.hashes]
    assert unhashed == []
    assert all(h.startswith("sha256:") and len(h) == 71 for entries in pins.values() for p in entries for h in p.hashes)


def test_ranges_not_pins_clients_as_extras_and_posix_only_packages_marked() -> None:
    groups = project()
    runtime: dict[str, Requirement] = {canonicalize_name(r.name): r for r in groups[""]}
    # A range lets costwarden install beside other packages; the lock, not pyproject, pins.
    assert [str(r) for r in runtime.values() if any(s.operator == "==" for s in r.specifier)] == []
    assert [str(r) for r in runtime.values() if not r.specifier] == []
    assert {"asyncpg", "redis", "hiredis"}.isdisjoint(runtime)
    assert {canonicalize_name(r.name) for r in groups["postgres"]} == {"asyncpg"}
    assert {canonicalize_name(r.name) for r in groups["redis"]} == {"redis", "hiredis"}
    assert {canonicalize_name(r.name) for r in groups["grpc"]} == {"grpcio", "protobuf"}
    assert {"grpcio", "protobuf"}.isdisjoint(runtime)
    assert {canonicalize_name(r.name) for r in groups["all"]} == {"asyncpg", "redis", "hiredis", "grpcio", "protobuf"}
    assert runtime["uvloop"].marker is not None
    assert not runtime["uvloop"].marker.evaluate(ENVIRONMENTS["win32-amd64-3.11"])
    assert runtime["uvloop"].marker.evaluate(ENVIRONMENTS["linux-x86_64-3.11"])
    windows = [p for p in read_lock(RUNTIME_LOCK)["uvloop"] if p.applies(ENVIRONMENTS["win32-amd64-3.11"])]
    assert windows == []


def test_the_tests_run_on_exactly_the_test_lock() -> None:
    """scripts/bootstrap installed what the lock says (so the image, from the same pins, runs what CI ran)."""
    here = {key: str(value) for key, value in default_environment().items()}
    wrong = {}
    for name, pins in read_lock(TEST_LOCK).items():
        for pin in pins:
            if not pin.applies(here):
                continue
            try:
                installed = Version(metadata.version(name))
            except metadata.PackageNotFoundError:
                installed = None
            if installed != pin.version:
                wrong[name] = (str(pin.version), installed and str(installed))
    assert wrong == {}
