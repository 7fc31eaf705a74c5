"""Operational jobs that belong to no domain."""
