"""Test harness: lifespan driver, transaction-bound database, worker and server helpers."""
