"""Unit tests of costwarden.chain."""
