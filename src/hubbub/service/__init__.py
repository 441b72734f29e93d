"""The rules: authorization, sequence numbers, idempotency. No HTTP, no SQL."""
