"""Compute collectors: one module per source (process, nvml), each behind ports.ComputeCollector."""
