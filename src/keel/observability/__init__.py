"""Logs, metrics and the other signals the service gives about itself (docs/edge.md)."""
