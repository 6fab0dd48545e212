"""Governance domain: budget windows, budgets and reservations, rate limits, spikes, forecasts, alerts."""
