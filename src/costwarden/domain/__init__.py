"""The pure domain: money, usage, pricing, records and keys. No I/O; the clock is passed in."""
