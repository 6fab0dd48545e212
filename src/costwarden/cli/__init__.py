"""The `costwarden` command line (typer + rich); commands call services/, never storage/ directly."""
