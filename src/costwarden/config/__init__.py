"""Configuration: pydantic models of the YAML file and the one loader."""

from costwarden.config.loader import ConfigError, load_config, parse_config
from costwarden.config.models import Config

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]
