"""Unit tests of costwarden.protocols."""
