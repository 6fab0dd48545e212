"""The request chain: one module per stage, in request order (see `chain.order`)."""
