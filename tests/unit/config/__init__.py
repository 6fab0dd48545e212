"""Unit tests of costwarden.config."""
