"""Use cases shared by the admin API and the CLI: keys, reports."""
