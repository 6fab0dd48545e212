"""Relative paths in a config file mean relative to that file, wherever the command runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from costwarden.config import ConfigError, load_config, parse_config
from costwarden.config.compute import ProcessCollector

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


# A self-signed CA (valid until 2126): a PEM bundle that loads.
CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBkjCCATegAwIBAgIUd7xubQ4a4tRaYhVSGkQx27sLYM8wCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSY29zdHdhcmRlbi10ZXN0LWNhMCAXDTI2MTIwNzEzMDcwNVoY
DzIxMjYxMTEzMTMwNzA1WjAdMRswGQYDVQQDDBJjb3N0d2FyZGVuLXRlc3QtY2Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARI/TocgwfY/lvAJwLmfaW6vEOIF+HN
ClUVMKMBck4g0uU3gdg21Ev3XBT26Sn3LnVCjmQohYURy1+OarsKTnPWo1MwUTAd
BgNVHQ4EFgQUSTavg9I/ZAKi62NkqZ4QtvJLI+YwHwYDVR0jBBgwFoAUSTavg9I/
ZAKi62NkqZ4QtvJLI+YwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBG
AiEAmK7bhDPpSoqspTzeSjA6aaaHVac3gzEsnGoTH3cZZr8CIQDG3u0GrNtXlES1
EqSwywsqbI+Rv1FMsR5c3zlh55HFUw==
-----END CERTIFICATE-----
"""

# Line numbers matter: the tests below point at them (ca_file is on line 6).
EVERY_PATH = """\
deployments:
  - name: gpt
    protocol: openai
    upstream: https://models.internal
    tls:
      ca_file: CA_FILE
    compute: {profile: aws-g5.xlarge}
compute:
  collectors:
    - {type: process, deployment: gpt, pid_file: run/model.pid}
observability:
  access_log: {enabled: true, path: logs/access.jsonl}
batch:
  queue: sqlite:///queue/batch.db
storage: {ledger: 'sqlite:///ledger.db', spool_dir: spool}
"""


def test_every_relative_path_is_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "etc" / "costwarden"
    (config_dir / "certs").mkdir(parents=True)
    (config_dir / "certs" / "ca.pem").write_text(CA_PEM)
    path = config_dir / "costwarden.yaml"
    path.write_text(EVERY_PATH.replace("CA_FILE", "certs/ca.pem"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.deployments[0].tls.ca_file == str(config_dir / "certs" / "ca.pem")
    collector = config.compute.collectors[0]
    assert isinstance(collector, ProcessCollector)
    assert collector.pid_file == str(config_dir / "run" / "model.pid")
    assert config.observability.access_log.path == str(config_dir / "logs" / "access.jsonl")
    assert config.batch.queue == f"sqlite:///{config_dir / 'queue' / 'batch.db'}"
    assert config.storage.ledger == f"sqlite:///{config_dir / 'ledger.db'}"
    assert config.storage.spool_dir == str(config_dir / "spool")


def test_a_ca_file_is_loaded_from_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    path = config_dir / "costwarden.yaml"
    path.write_text(EVERY_PATH.replace("CA_FILE", "ca.pem"))
    # The working folder has a loadable ca.pem; the config's folder has none: the file is missing.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text(CA_PEM)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    missing = str(config_dir / "ca.pem")
    assert problem.startswith(f"{path}:6: deployments[0].tls.ca_file: cannot load the CA bundle {missing!r}"), problem


def test_absolute_paths_and_servers_elsewhere_are_kept(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(CA_PEM)
    text = (
        EVERY_PATH.replace("CA_FILE", str(tmp_path / "ca.pem"))
        .replace("run/model.pid", "/run/model.pid")
        .replace("logs/access.jsonl", "/var/log/access.jsonl")
        .replace("sqlite:///queue/batch.db", "postgresql://db/queue")
    )
    path = tmp_path / "conf" / "costwarden.yaml"
    path.parent.mkdir()
    path.write_text(text)
    config = load_config(path)
    assert config.deployments[0].tls.ca_file == str(tmp_path / "ca.pem")
    assert config.observability.access_log.path == "/var/log/access.jsonl"
    assert config.batch.queue == "postgresql://db/queue"
    collector = config.compute.collectors[0]
    assert isinstance(collector, ProcessCollector) and collector.pid_file == "/run/model.pid"
