"""Where shared state lives: the outbox, the dedup window and the per-bot rate limits."""
