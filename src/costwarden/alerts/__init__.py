"""Alert sinks (webhook, Slack, Alertmanager), one per module, the dispatcher that feeds them, and
the factory that builds them from config."""
