"""The I/O half of forwarding: the pooled upstream HTTP client and the streaming relay."""
