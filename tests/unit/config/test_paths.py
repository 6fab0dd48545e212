"""Relative paths in a config file mean relative to that file, wherever the command runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from costwarden.config import load_config, parse_config

MINIMAL = "deployments:\n  - {name: gpt, protocol: openai, upstream: 'http://127.0.0.1:9000'}\n"


def write(folder: Path, storage: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "costwarden.yaml"
    path.write_text(MINIMAL + (f"storage: {storage}\n" if storage is not None else ""))
    return path


@pytest.mark.parametrize(
    ("ledger", "expected"),
    [
        ("sqlite:///./ledger.db", "ledger.db"),
        ("sqlite:///ledger.db", "ledger.db"),
        ("sqlite:///data/../books/ledger.db", "books/ledger.db"),
        ("sqlite:///", "costwarden.db"),
    ],
)
def test_a_relative_sqlite_path_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger: str, expected: str
) -> None:
    config_dir = tmp_path / "etc" / "costwarden"
    path = write(config_dir, f"{{ledger: '{ledger}', spool_dir: spool}}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.storage.ledger == f"sqlite:///{config_dir / expected}"
    assert config.storage.spool_dir == str(config_dir / "spool")


def test_a_config_path_given_relative_to_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "conf", "{ledger: 'sqlite:///ledger.db'}")
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/costwarden.yaml")
    assert config.storage.ledger == f"sqlite:///{tmp_path / 'conf' / 'ledger.db'}"


def test_the_defaults_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "conf", None)
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert config.storage.ledger == f"sqlite:///{tmp_path / 'conf' / 'costwarden.db'}"
    assert config.storage.spool_dir == str(tmp_path / "conf" / ".costwarden-spool")


def test_a_symlinked_config_keeps_its_own_folder(tmp_path: Path) -> None:
    # Kubernetes mounts a ConfigMap as symlinks into a hidden timestamped folder.
    real = write(tmp_path / "mount" / "..2026_12_01", "{ledger: 'sqlite:///ledger.db'}")
    (tmp_path / "etc").mkdir()
    link = tmp_path / "etc" / "costwarden.yaml"
    link.symlink_to(real)
    assert load_config(link).storage.ledger == f"sqlite:///{tmp_path / 'etc' / 'ledger.db'}"


@pytest.mark.parametrize(
    "ledger", ["sqlite:////var/lib/costwarden/ledger.db", "sqlite:///:memory:", "postgresql://u@db:5432/costwarden"]
)
def test_absolute_paths_memory_and_servers_are_kept(tmp_path: Path, ledger: str) -> None:
    path = write(tmp_path, f"{{ledger: '{ledger}', spool_dir: /var/spool/costwarden}}")
    config = load_config(path)
    assert config.storage.ledger == ledger
    assert config.storage.spool_dir == "/var/spool/costwarden"


def test_text_without_a_file_keeps_its_paths() -> None:
    config = parse_config(MINIMAL + "storage: {ledger: 'sqlite:///./ledger.db'}\n")
    assert config.storage.ledger == "sqlite:///./ledger.db"
