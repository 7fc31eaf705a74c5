"""Keel: a production FastAPI service template."""
