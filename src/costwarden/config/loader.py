"""Load `costwarden.yaml`: interpolate `${ENV_VAR}`, validate, and point errors at file:line key.

This is the only module of `config/` that does I/O.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from costwarden.config.models import Config
from costwarden.config.paths import Location, anchor_paths, config_paths

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; `str()` names the file, line, key and what to fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _interpolate(text: str, env: Mapping[str, str], where: str, problems: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{where}: environment variable {name} is not set (referenced as ${{{name}}})")
        return ""

    return _ENV_REF.sub(replace, text)


def _to_python(
    node: yaml.Node,
    path: Location,
    marks: dict[Location, int],
    env: Mapping[str, str],
    source: str,
    problems: list[str],
) -> Any:
    marks[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in result:
                problems.append(f"{source}:{key_node.start_mark.line + 1}: key {key!r} is repeated")
            result[key] = _to_python(value_node, (*path, key), marks, env, source, problems)
            marks.setdefault((*path, key), key_node.start_mark.line + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), marks, env, source, problems) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if node.tag == "tag:yaml.org,2002:str" and "${" in node.value:
        where = f"{source}:{node.start_mark.line + 1}: {_dotted(path)}"
        return _interpolate(node.value, env, where, problems)
    if node.tag == "tag:yaml.org,2002:float":
        # Keep decimal literals exact: prices must never pass through a binary float.
        return node.value
    return yaml.SafeLoader.construct_object(yaml.SafeLoader(""), node, deep=True)


def _line_for(loc: Location, marks: dict[Location, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        line = marks.get(loc[:end])
        if line is not None:
            return line
    return None


def _dotted(loc: Location) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(
    text: str, source: str = "<config>", env: Mapping[str, str] | None = None, folder: Path | None = None
) -> Config:
    """Validate YAML text into a `Config`, or raise ConfigError naming file:line and key. Relative
    paths in it are taken relative to `folder` (the config file's); kept as they are without one."""
    environ = os.environ if env is None else env
    problems: list[str] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{source}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if node is None:
        raise ConfigError([f"{source}: the file is empty; expected a mapping with `deployments`"])
    marks: dict[Location, int] = {}
    data = _to_python(node, (), marks, environ, source, problems)
    if problems:
        raise ConfigError(problems)
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: expected a mapping at the top level"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        deep = {tuple(e["loc"][:-1]) for e in errors if len(e["loc"]) > 1}
        for error in errors:
            if error["type"] == "too_short" and any(d[: len(error["loc"])] == tuple(error["loc"]) for d in deep):
                continue  # a list whose items were all invalid: the item errors say more
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line_no = _line_for(loc, marks)
            at = f"{source}:{line_no}" if line_no else source
            problems.append(f"{at}: {_dotted(loc)}: {error['msg']}")
        raise ConfigError(problems) from exc
    if folder is not None:
        config = anchor_paths(config, folder)
    for loc, message in [*config.reference_problems(), *_file_problems(config)]:
        line_no = _line_for(loc, marks)
        problems.append(f"{source}:{line_no}: {_dotted(loc)}: {message}")
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; its relative paths are taken relative to its folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read the config file: {exc.strerror}"]) from exc
    # absolute(), not resolve(): a symlinked file (a Kubernetes ConfigMap) keeps the folder it is seen in.
    return parse_config(text, str(file), env, file.absolute().parent)


def _file_problems(config: Config) -> list[tuple[Location, str]]:
    """The files that must load at start and do not (checked once their paths are anchored)."""
    problems: list[tuple[Location, str]] = []
    for loc, kind, path in config_paths(config):
        if kind == "ca_bundle":
            try:
                ssl.create_default_context(cafile=path)
            except (OSError, ssl.SSLError) as exc:
                problems.append((loc, f"cannot load the CA bundle {path!r}: {exc}"))
    return problems
