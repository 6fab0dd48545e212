"""Prometheus collectors and logging."""
