"""Versioned schema migrations: numbered SQL files per dialect, applied once, in order."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

SCHEMA_TABLE = "costwarden_schema"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: str) -> list[Migration]:
    folder = resources.files("costwarden.storage") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def statements(sql: str) -> list[str]:
    """Split a migration file into statements (our files hold no `;` inside literals)."""
    return [s.strip() for s in sql.split(";") if s.strip()]
