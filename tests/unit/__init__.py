"""Unit tests: mirror src/costwarden, no I/O beyond tmp_path, fast."""
