"""Real-time events: each user's domain events, live, over a WebSocket or SSE (docs/realtime.md).

Importing the package subscribes the event log to domain events (keel.realtime.log), in every
process that imports it: the API (its router) and the worker (its jobs and the relay).
"""

from keel.realtime import log as _subscription  # noqa: F401
