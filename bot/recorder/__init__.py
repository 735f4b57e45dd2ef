"""Recording every tick to Atlas: datasets, the outbox (in the store) and the drain (outbox → Atlas)."""
