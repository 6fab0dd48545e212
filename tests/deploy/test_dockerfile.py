"""The image definition, read statically (no container engine here): multi-stage on python:3.11-slim,
installed from the hashed runtime lock, run as a non-root user, a HEALTHCHECK on /healthz, signals
reaching the gateway, and nothing secret in the image or its build context."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"token|secret|passw|api_?key|credential|private", re.IGNORECASE)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return out


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with ${ARG} substituted in FROM."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        else:
            raise AssertionError(f"{keyword} before the first FROM")
    return args, stages


ARGS, STAGES = parse(ROOT / "Dockerfile")
FINAL = STAGES[-1]


def test_multi_stage_on_python_311_slim_and_the_final_stage_only_copies_the_built_venv() -> None:
    assert len(STAGES) >= 2
    assert all(re.fullmatch(r"python:3\.11-slim(-\w+)?", s.base) for s in STAGES), [s.base for s in STAGES]
    build_names = {s.name for s in STAGES[:-1]}
    copies = FINAL.all("COPY")
    assert copies and all(
        c.startswith("--from=") and c.split()[0].removeprefix("--from=") in build_names for c in copies
    )
    # No compiler, no pip run, no package cache in the final stage: everything comes built, and the
    # copied environment has no installer left in it.
    assert not any("pip install" in r or "apt-get install" in r for r in FINAL.all("RUN"))
    assert any("pip uninstall --quiet --yes pip setuptools" in r for r in STAGES[0].all("RUN"))
    # A VOLUME would put the spool in an anonymous volume that `docker rm -v` deletes, and inside a
    # named volume mounted on /var/lib/costwarden it would shadow that volume's spool folder.
    assert [v for s in STAGES for v in s.all("VOLUME")] == []


def test_dependencies_come_from_the_hashed_runtime_lock_without_resolving() -> None:
    build = STAGES[0]
    runs = build.all("RUN")
    from_lock = [r for r in runs if "-r requirements/runtime.lock" in r]
    assert from_lock and all("--require-hashes" in r and "--no-deps" in r for r in from_lock)
    assert "requirements/runtime.lock requirements/runtime.lock" in build.all("COPY")
    # The package itself adds no dependency the lock lacks, and pip check proves it.
    project = [r for r in runs if re.search(r"pip install [^&]*\s\.(\s|$)", r)]
    assert project and all("--no-deps" in r and "pip check" in r for r in project)
    lock_layer = runs.index(from_lock[0])
    source_copy = [i for i, (kw, a) in enumerate(build.instructions) if kw == "COPY" and a.startswith("src")]
    assert source_copy and build.instructions.index(("RUN", runs[lock_layer])) < source_copy[0]


def test_runs_as_a_fixed_non_root_user() -> None:
    users = FINAL.all("USER")
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and (not gid or int(gid) >= 1000)
    last_user = max(i for i, (kw, _) in enumerate(FINAL.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in FINAL.instructions[last_user:]), "RUN after USER would run as that user"
    assert any(f"--uid {uid}" in r for r in FINAL.all("RUN")), "the user is created with that uid"


def test_a_healthcheck_asks_healthz_and_signals_reach_the_gateway() -> None:
    (check,) = FINAL.all("HEALTHCHECK")
    assert re.search(r"--interval=\d+s", check) and re.search(r"--timeout=\d+s", check)
    command = " ".join(json.loads(check.split(" CMD ", 1)[1]))
    # The URL is in the command, or in an ENV the command reads (so a changed port can follow).
    env = dict(
        shlex.split(word)[0].split("=", 1) for line in FINAL.all("ENV") for word in line.split(" ") if "=" in word
    )
    assert "127.0.0.1:8700/healthz" in command or any(
        f"['{k}']" in command and v.endswith("127.0.0.1:8700/healthz") for k, v in env.items()
    )
    assert FINAL.all("STOPSIGNAL") in ([], ["SIGTERM"])
    # Exec form: the gateway is PID 1 and receives SIGTERM itself (a shell would swallow it).
    (entrypoint,) = FINAL.all("ENTRYPOINT")
    (cmd,) = FINAL.all("CMD")
    assert json.loads(entrypoint) == ["costwarden"]
    argv = json.loads(cmd)
    assert argv[0] == "serve" and "--config" in argv and "0.0.0.0" in argv and argv[argv.index("--port") + 1] == "8700"


def test_no_secret_in_the_image_definition() -> None:
    for stage in STAGES:
        for keyword in ("ENV", "ARG", "LABEL"):
            for line in stage.all(keyword):
                names = re.findall(r"([A-Za-z_][\w.-]*)=", line) or [line.split()[0]]
                assert not [n for n in names if SECRET_NAME.search(n)], f"{keyword} {line}"
        for copy in stage.all("COPY") + stage.all("ADD"):
            assert not re.search(r"\.env\b|\.ya?ml\b|\.db\b|\.pem\b|\.key\b", copy), copy
    assert all(ARGS), "every global ARG has a default"
    assert not [a for a in ARGS if SECRET_NAME.search(a)]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace("\0/", "(?:.*/)?").replace("\0", ".*")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def build_context() -> list[str]:
    """The files of this checkout (tracked, and untracked ones git does not ignore) sent to `docker build`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.lstrip().startswith("#")]
    local = [".venv/bin/python", "costwarden.db", ".costwarden-spool/1-a/lock", ".env", "costwarden.yaml"]
    return [p for p in [*listed, *local] if not dockerignore_excludes(patterns, p)]


def test_the_build_context_is_what_the_image_needs_and_nothing_else() -> None:
    context = build_context()
    assert "requirements/runtime.lock" in context and "pyproject.toml" in context and "README.md" in context
    assert "src/costwarden/cli/main.py" in context
    assert [p for p in context if not (p.startswith("src/") or p in ("requirements/runtime.lock", "pyproject.toml",
                                                                      "README.md"))] == []  # fmt: skip
    assert [p for p in context if "__pycache__" in p or p.endswith((".pyc", ".db", ".env"))] == []
    # Everything a COPY names is in the context.
    for stage in STAGES:
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert any(p == source or p.startswith(source.rstrip("/") + "/") for p in context), source
