"""Storage adapters (one per module) and the factory that picks one from config."""
