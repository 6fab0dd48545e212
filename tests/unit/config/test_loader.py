"""The config loader: valid files load; every error names file, line and dotted key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from costwarden.config import Config, ConfigError, load_config, parse_config

SOURCE = "costwarden.yaml"
KEY = "cw_k1_0123456789abcdefXYZ"
ENV = {"K1_SECRET": KEY}

# Line numbers matter: the tests below point at them.
VALID = """\
server:
  port: 8700
teams:
  - name: search
    projects: [ranker, indexer]
deployments:
  - name: gpt
    protocol: openai
    upstream: http://127.0.0.1:9000
    pricing:
      input_per_1m: 0.15
      output_per_1m: 0.60
      cached_input_per_1m: 0.075
  - name: iris
    protocol: v2
    upstreams: [http://127.0.0.1:9001, http://127.0.0.1:9002/]
    pricing:
      per_item: 0.0000001
      compute: {hourly_usd: 3.67, concurrency: 4}
keys:
  - id: k1
    key: ${K1_SECRET}
    team: search
    project: ranker
    environment: prod
    deployments: [gpt]
"""


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, SOURCE, ENV if env is None else env)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def only_problem(text: str, env: dict[str, str] | None = None) -> str:
    found = problems(text, env)
    assert len(found) == 1, found
    return found[0]


def test_a_valid_file_parses() -> None:
    config = parse(VALID)
    assert config.server.port == 8700
    assert [d.name for d in config.deployments] == ["gpt", "iris"]
    gpt = config.deployment("gpt")
    assert gpt is not None
    assert gpt.protocol == "openai"
    assert gpt.upstream_urls == ("http://127.0.0.1:9000",)
    iris = config.deployment("iris")
    assert iris is not None
    assert iris.upstream_urls == ("http://127.0.0.1:9001", "http://127.0.0.1:9002")
    assert config.keys[0].key == KEY
    assert config.keys[0].deployments == ("gpt",)
    assert config.deployment("nope") is None


def test_decimal_prices_stay_exact() -> None:
    config = parse(VALID)
    gpt, iris = config.deployments
    # Exactly the literal, never through a binary float (Decimal(0.15) != Decimal("0.15")).
    assert gpt.pricing.input_per_1m == Decimal("0.15")
    assert str(gpt.pricing.input_per_1m) == "0.15"
    assert str(gpt.pricing.output_per_1m) == "0.60"
    assert str(gpt.pricing.cached_input_per_1m) == "0.075"
    assert iris.pricing.per_item == Decimal("1E-7")
    assert iris.pricing.compute is not None
    assert str(iris.pricing.compute.hourly_usd) == "3.67"
    sheet = iris.pricing.sheet()
    assert sheet.compute is not None
    assert sheet.compute.concurrency == 4
    assert sheet.basis == "item+compute"
    assert gpt.pricing.sheet().basis == "tokens"


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("0.15", "0.15"),
        ("0.1", "0.1"),
        ('"0.1"', "0.1"),
        ("1.5e-7", "1.5E-7"),
        ("1_000.5", "1000.5"),
        (".5", "0.5"),
        ("3", "3"),
        ("0.000000123456789", "1.23456789E-7"),
    ],
)
def test_decimal_literals_are_exact(literal: str, value: str) -> None:
    config = parse(VALID.replace("input_per_1m: 0.15", f"input_per_1m: {literal}"))
    got = config.deployments[0].pricing.input_per_1m
    assert got == Decimal(value)
    assert str(got) == value


@pytest.mark.parametrize("literal", [".inf", "NaN", "Infinity", "-1"])
def test_non_finite_or_negative_prices_are_refused(literal: str) -> None:
    problem = only_problem(VALID.replace("input_per_1m: 0.15", f"input_per_1m: {literal}"))
    assert problem.startswith(f"{SOURCE}:11: deployments[0].pricing.input_per_1m: ")


def test_modal_prices_parse_exactly_and_bad_image_kinds_are_named() -> None:
    modal = "\n      ".join(
        ("input_per_1m: 0.15", "per_image: {1024x1024/hd: 0.08, 1024x1024: 0.04}", "per_audio_second: 0.0001",
         "per_search_unit: 0.002")
    )  # fmt: skip
    config = parse(VALID.replace("input_per_1m: 0.15", modal))
    sheet = config.deployments[0].pricing.sheet()
    assert sheet.image_price("1024x1024/hd") == Decimal("0.08")
    assert sheet.image_price("1024x1024/low") == Decimal("0.04")  # an unpriced quality: the size's price
    assert (sheet.per_audio_second, sheet.per_search_unit) == (Decimal("0.0001"), Decimal("0.002"))
    assert sheet.basis == "tokens+image+audio+search_unit"
    for bad in ("{'1024 x 1024': 0.04}", "{1024x1024: -1}", "{1024x1024: .inf}"):
        problem = only_problem(VALID.replace("input_per_1m: 0.15", f"per_image: {bad}"))
        assert problem.startswith(f"{SOURCE}:11: deployments[0].pricing.per_image"), problem


def test_load_config_reads_the_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "costwarden.yaml"
    path.write_text(VALID, encoding="utf-8")
    assert load_config(path, ENV).deployments[0].name == "gpt"
    path.write_text(VALID.replace("protocol: v2", "protocol: grpc"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV)
    assert info.value.problems[0].startswith(f"{path}:15: deployments[1].protocol:")


def test_a_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config("/nonexistent/costwarden.yaml", ENV)


def test_an_extra_key() -> None:
    text = VALID.replace("  port: 8700\n", "  port: 8700\n  colour: blue\n")
    problem = only_problem(text)
    assert problem.startswith(f"{SOURCE}:3: server.colour: ")
    assert "Extra inputs are not permitted" in problem


def test_an_extra_key_deep_inside_a_list() -> None:
    text = VALID.replace("      cached_input_per_1m: 0.075\n", "      cached_input_per_1m: 0.075\n      tip: 1\n")
    assert only_problem(text).startswith(f"{SOURCE}:14: deployments[0].pricing.tip: ")


def test_a_wrong_protocol_literal() -> None:
    problem = only_problem(VALID.replace("protocol: v2", "protocol: grpc"))
    assert problem.startswith(f"{SOURCE}:15: deployments[1].protocol: ")
    assert "'openai', 'v2' or 'http'" in problem


def test_a_missing_upstream() -> None:
    text = VALID.replace("    upstream: http://127.0.0.1:9000\n", "")
    problem = only_problem(text)
    assert problem.startswith(f"{SOURCE}:7: deployments[0]: ")
    assert "set `upstream` (a URL) or `upstreams`" in problem


def test_both_upstream_and_upstreams() -> None:
    text = VALID.replace("    upstream: http://127.0.0.1:9000\n", "    upstream: http://a\n    upstreams: [http://b]\n")
    assert "set only one of" in only_problem(text)


def test_a_bad_decimal() -> None:
    problem = only_problem(VALID.replace("output_per_1m: 0.60", "output_per_1m: cheap"))
    assert problem.startswith(f"{SOURCE}:12: deployments[0].pricing.output_per_1m: ")
    assert "decimal" in problem


def test_several_problems_are_all_reported() -> None:
    text = VALID.replace("  port: 8700\n", "  port: 8700\n  colour: blue\n").replace("protocol: v2", "protocol: x")
    found = problems(text)
    assert len(found) == 2
    assert found[0].startswith(f"{SOURCE}:3: server.colour: ")
    assert found[1].startswith(f"{SOURCE}:16: deployments[1].protocol: ")


@pytest.mark.parametrize(
    ("line", "replacement", "field", "message"),
    [
        ("    team: search\n", "    team: nobody\n", "team", "unknown team 'nobody'"),
        ("    project: ranker\n", "    project: crawler\n", "project", "has no project 'crawler'"),
        ("    environment: prod\n", "    environment: qa\n", "environment", "unknown environment 'qa'"),
    ],
    ids=["team", "project", "environment"],
)
def test_an_undeclared_attribution_in_a_key(line: str, replacement: str, field: str, message: str) -> None:
    problem = only_problem(VALID.replace(line, replacement))
    assert message in problem
    # The fault is in `keys[0].<field>`, on the line that sets it: that is where the reader must look.
    line_no = VALID.splitlines().index(line.rstrip("\n")) + 1
    assert problem.startswith(f"{SOURCE}:{line_no}: keys[0].{field}: "), problem


def test_a_key_naming_an_unknown_deployment() -> None:
    problem = only_problem(VALID.replace("deployments: [gpt]", "deployments: [gpt, llama]"))
    assert problem.startswith(f"{SOURCE}:26: keys[0].deployments[1]: "), problem
    assert "unknown deployment 'llama'" in problem


def test_duplicate_deployment_names() -> None:
    problem = only_problem(VALID.replace("name: iris", "name: gpt"))
    # The second `name: gpt` (line 14) is the one to rename.
    assert problem.startswith(f"{SOURCE}:14: deployments[1].name: "), problem
    assert "'gpt'" in problem


def test_duplicate_key_ids() -> None:
    second = "\n".join(VALID.splitlines()[20:26]) + "\n"  # the whole `- id: k1` entry again
    problem = only_problem(VALID + second)
    assert problem.startswith(f"{SOURCE}:27: keys[1].id: "), problem
    assert "'k1'" in problem


def test_a_missing_environment_variable_names_its_line() -> None:
    problem = only_problem(VALID, env={})
    assert problem.startswith(f"{SOURCE}:22: ")
    assert "K1_SECRET" in problem
    assert "not set" in problem


def test_an_environment_default_applies_when_unset() -> None:
    text = VALID.replace("${K1_SECRET}", "${K1_SECRET:-cw_k1_fallbackfallback00}")
    assert parse(text, env={}).keys[0].key == "cw_k1_fallbackfallback00"
    assert parse(text, env={"K1_SECRET": KEY}).keys[0].key == KEY


def test_interpolation_inside_a_longer_string() -> None:
    text = VALID.replace("http://127.0.0.1:9000", "http://${HOST}:${PORT:-9000}/v1")
    config = parse(text, env={**ENV, "HOST": "10.0.0.7"})
    assert config.deployments[0].upstream_urls == ("http://10.0.0.7:9000/v1",)


def test_an_environment_variable_into_a_number() -> None:
    config = parse(VALID.replace("port: 8700", "port: ${PORT}"), env={**ENV, "PORT": "9100"})
    assert config.server.port == 9100


def test_environment_values_are_not_re_interpolated() -> None:
    config = parse(VALID, env={"K1_SECRET": "cw_k1_${NOT_A_VAR}_secretsecret"})
    assert config.keys[0].key == "cw_k1_${NOT_A_VAR}_secretsecret"


def test_invalid_yaml_names_the_line() -> None:
    text = VALID.replace("    projects: [ranker, indexer]\n", "    projects: [ranker, indexer\n")
    problem = only_problem(text)
    assert problem.startswith(f"{SOURCE}:6: not valid YAML"), problem


def test_a_tab_indented_line() -> None:
    text = VALID.replace("    protocol: openai\n", "\tprotocol: openai\n")
    problem = only_problem(text)
    assert problem.startswith(f"{SOURCE}:8: not valid YAML"), problem


def test_a_repeated_key() -> None:
    text = VALID.replace("  port: 8700\n", "  port: 8700\n  port: 8701\n")
    assert only_problem(text) == f"{SOURCE}:3: key 'port' is repeated"


def test_an_empty_file() -> None:
    assert "the file is empty" in only_problem("")


def test_a_top_level_list() -> None:
    assert only_problem("- a\n- b\n") == f"{SOURCE}:1: expected a mapping at the top level"


def test_no_deployments() -> None:
    problem = only_problem("server:\n  port: 1\n")
    assert problem.startswith(f"{SOURCE}:1: deployments: ")


def test_monthly_partitions_need_a_postgresql_ledger() -> None:
    base = VALID.replace("server:\n  port: 8700\n", "storage:\n  ledger: LEDGER\n  partition: monthly\n")
    problem = only_problem(base.replace("LEDGER", "sqlite:///./costwarden.db"))
    assert problem.startswith(f"{SOURCE}:") and ": storage: " in problem
    assert "partition: monthly needs a PostgreSQL ledger" in problem
    assert parse(base.replace("LEDGER", "postgresql://db/costwarden")).storage.partition == "monthly"
    assert "'none' or 'monthly'" in only_problem(VALID + "storage:\n  partition: weekly\n")


def test_the_fast_engine_takes_an_optional_admin_port_of_its_own() -> None:
    valid = parse_config(
        VALID.replace("  port: 8700\n", "  port: 8700\n  engine: fast\n  admin_port: 8701\n"), SOURCE, ENV
    )
    assert (valid.server.engine, valid.server.admin_port) == ("fast", 8701)
    assert parse_config(VALID, SOURCE, ENV).server.engine == "fast"  # the default
    one_port = parse_config(VALID.replace("  port: 8700\n", "  port: 8700\n  engine: fast\n"), SOURCE, ENV)
    assert (one_port.server.engine, one_port.server.admin_port) == ("fast", None)
    same = only_problem(VALID.replace("  port: 8700\n", "  port: 8700\n  engine: fast\n  admin_port: 8700\n"))
    assert "admin_port must differ from port" in same
    unused = only_problem(VALID.replace("  port: 8700\n", "  port: 8700\n  engine: asgi\n  admin_port: 8701\n"))
    assert "admin_port is used only with engine: fast" in unused


def test_an_upstream_ca_file_that_does_not_load_is_named(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    for path in (tmp_path / "missing.pem", not_pem):
        tls = f"    upstream: https://a\n    tls:\n      ca_file: {path}\n"
        problem = only_problem(VALID.replace("    upstream: http://127.0.0.1:9000\n", tls))
        assert problem.startswith(f"{SOURCE}:11: deployments[0].tls.ca_file: "), problem
        assert f"cannot load the CA bundle {str(path)!r}" in problem
    text = VALID.replace("    upstream: http://127.0.0.1:9000\n", "    upstream: https://a\n    tls: {verify: no}\n")
    assert parse(text).deployments[0].tls.verify is False
