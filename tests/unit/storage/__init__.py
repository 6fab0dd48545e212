"""Unit tests of costwarden.storage."""
