"""Unit tests of costwarden.domain."""
