"""Test harness: lifespan driver, transaction-bound database, process and server helpers."""
