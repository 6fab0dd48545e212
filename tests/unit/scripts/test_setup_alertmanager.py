"""`scripts/test` installs the peers its tests start (Alertmanager) on a fresh machine, quietly,
and only when missing. Run with a PATH holding a stand-in `apt-get` and nothing else."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "setup-alertmanager"
BASH = "/bin/bash"

# A stand-in apt-get: logs its arguments; `install` puts an executable alertmanager on the PATH.
FAKE_APT = """#!/bin/bash
here="${0%/*}"
echo "$*" >> "$here/apt.log"
if [[ "$*" == *install* ]]; then printf '#!/bin/bash\\n' > "$here/prometheus-alertmanager"; fi
if [[ "$*" == *install* ]]; then /bin/chmod +x "$here/prometheus-alertmanager"; fi
echo "apt noise that must not reach the test output"
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    apt = folder / "apt-get"
    apt.write_text(FAKE_APT)
    apt.chmod(0o755)
    return folder


def run(fake_bin: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(fake_bin), "HOME": str(fake_bin.parent)}
    return subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, check=False, timeout=60)


def test_a_missing_alertmanager_is_installed_quietly(fake_bin: Path) -> None:
    need(os.geteuid() == 0, "root (the script installs a Debian package only as root)")
    result = run(fake_bin)
    assert result.returncode == 0, result.stderr
    log = (fake_bin / "apt.log").read_text().splitlines()
    assert any("install" in line and "prometheus-alertmanager" in line for line in log), log
    assert "apt noise" not in result.stdout + result.stderr
    assert (fake_bin / "prometheus-alertmanager").exists()


def test_nothing_is_installed_when_alertmanager_is_there(fake_bin: Path) -> None:
    present = fake_bin / "alertmanager"
    present.write_text("#!/bin/bash\n")
    present.chmod(0o755)
    started = time.monotonic()
    result = run(fake_bin)
    assert result.returncode == 0, result.stderr
    assert not (fake_bin / "apt.log").exists()
    assert time.monotonic() - started < 2.0  # scripts/test stays fast when everything is present


def test_scripts_test_and_ci_call_it() -> None:
    assert "scripts/setup-alertmanager" in (ROOT / "scripts" / "test").read_text()
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text()  # one home for the install
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
