"""The edge fixtures (the full app plus test routes) are shared with tests/middleware."""

from tests.middleware.conftest import edge, edge_settings, logs

__all__ = ["edge", "edge_settings", "logs"]
