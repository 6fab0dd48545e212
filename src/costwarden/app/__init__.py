"""The composition root: builds everything from config, owns the lifespan; the ASGI apps."""
